//! The Llama family on the GPU (`LlamaForCausalLM`: SmolLM2, Llama 3.2; `Qwen2ForCausalLM`:
//! Qwen2.5), built from the same kernels as GPT-2: its weights, loading, and the forward
//! pass to logits.
//!
//! ```text
//! x = embed_tokens[ids]                                              (B,T,C)
//! for each layer:  h = rmsnorm(x)                                    input_layernorm
//!                  qkv = rope_pack(q_proj(h), k_proj(h), v_proj(h))  (B,T,C+2KV)
//!                  x += o_proj(attention(qkv))                       grouped-query
//!                  h = rmsnorm(x)                                    post_attention_layernorm
//!                  x += down_proj(silu(gate_proj(h)) * up_proj(h))
//! logits = rmsnorm(x) · lm_headᵀ                                     (or embed_tokensᵀ, tied)
//! ```
//! The nn.Linear weights `(out,in)` are stored as GPT-2's Conv1D `(in,out)` (transposed when
//! loaded) in f32 / f16, or as bitsandbytes NF4 of the nn.Linear layout; the embedding and
//! head in f32 with an f32 base, else f16; norms and biases f32.

use crate::error::Result;
use crate::gpu::{Gpu, Tensor};
use crate::kernels::matmul::Weight;
use crate::model::AdapterRef;
use crate::model::acts::Keep;
use crate::model::block::{Linear, Module};
use crate::model::forward::{AttnSource, KvCache};
use crate::model::gpt2::{Quant, check_binding, check_shape};
use crate::model::llama_config::LlamaConfig;
pub use crate::model::llama_config::{module_dims, module_has_bias};
use crate::model::lm_head::{record_head_logits, record_position_losses};
use crate::model::load::{
    Parts, frobenius, random_values, to_f32, upload_from_file, upload_table, upload_weight,
};
use crate::model::safetensors_file::SafetensorsFile;
use crate::{bail, cpu, err};

/// One decoder layer's weights.
pub struct LlamaBlock {
    pub input_norm: Tensor,
    pub post_norm: Tensor,
    /// Indexed by [`Module::index`] of [`Module::LLAMA`].
    pub linears: Vec<Linear>,
}

impl LlamaBlock {
    pub fn linear(&self, m: Module) -> &Linear {
        &self.linears[m.index()]
    }
}

pub struct Llama {
    pub config: LlamaConfig,
    pub quant: Quant,
    /// `embed_tokens (V,C)`: f32 with an f32 base, else f16.
    pub embed: Weight,
    /// `lm_head (V,C)`; `None` when tied to the embedding.
    pub lm_head: Option<Weight>,
    pub blocks: Vec<LlamaBlock>,
    pub norm: Tensor,
    /// RoPE's (cos, sin) per position and frequency, `(positions, head_dim/2, 2)`.
    pub rope: Tensor,
    /// Positions the RoPE table covers: the longest sequence a pass may run.
    pub positions: usize,
}

/// Most positions the RoPE table is built for (Llama 3.2 declares 131072; a 128k-token table
/// would take 32 MB for nothing a browser can train on).
pub const MAX_ROPE_POSITIONS: usize = 32768;

impl Llama {
    /// Every weight a checkpoint of `cfg` holds, with its shape (Hugging Face names).
    pub fn expected_weights(cfg: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
        let (c, v) = (cfg.hidden_size, cfg.vocab_size);
        let mut w = vec![("model.embed_tokens.weight".to_string(), vec![v, c])];
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            w.push((format!("{p}.input_layernorm.weight"), vec![c]));
            w.push((format!("{p}.post_attention_layernorm.weight"), vec![c]));
            for m in Module::LLAMA {
                let (k_in, n_out) = module_dims(cfg, m);
                w.push((format!("{p}.{}.weight", m.path()), vec![n_out, k_in]));
                if module_has_bias(cfg, m) {
                    w.push((format!("{p}.{}.bias", m.path()), vec![n_out]));
                }
            }
        }
        w.push(("model.norm.weight".to_string(), vec![c]));
        if !cfg.tie_word_embeddings {
            w.push(("lm_head.weight".to_string(), vec![v, c]));
        }
        w
    }

    /// Bytes of GPU memory a model of `config` takes in `quant` ([`Self::weight_bytes`] once
    /// loaded), computed on the host: the weights as `load::Parts` stores them, and the RoPE
    /// table.
    pub fn weight_bytes_of(config: &LlamaConfig, quant: Quant) -> u64 {
        let positions = config.max_position_embeddings.min(MAX_ROPE_POSITIONS);
        let rope = 4 * (positions * config.head_dim) as u64;
        crate::model::load::weight_bytes_of(&Self::expected_weights(config), quant) + rope
    }

    /// Check that a checkpoint holds every weight `config` needs, in its shape and a float
    /// dtype; `info` looks a tensor up by name (a mapped file, or a streamed header).
    pub fn check_tensors<'a>(
        config: &LlamaConfig,
        path: &std::path::Path,
        info: impl Fn(&str) -> Option<(safetensors::Dtype, &'a [usize])>,
    ) -> Result<()> {
        use safetensors::Dtype;
        let p = path.display();
        for (name, shape) in &Self::expected_weights(config) {
            let Some((dtype, got)) = info(name) else {
                bail!(
                    "{p}: missing tensor {name} (config.json has {} layers): the weights and config.json do not match, or the file is incomplete",
                    config.num_hidden_layers
                );
            };
            if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                bail!("{p}: tensor {name} has dtype {dtype:?}; expected F32, F16 or BF16");
            }
            if got != shape.as_slice() {
                bail!(
                    "{p}: tensor {name} has shape {got:?}, config.json implies {shape:?}: the weights and config.json belong to different models"
                );
            }
        }
        Ok(())
    }

    /// [`Self::check_tensors`] for a file already open.
    pub fn check_weights(config: &LlamaConfig, file: &SafetensorsFile) -> Result<()> {
        Self::check_tensors(config, file.path(), |n| {
            file.info(n).map(|i| (i.dtype, i.shape.as_slice()))
        })
    }

    /// Load `cfg` + `model.safetensors` one tensor at a time, quantizing the Linears as asked.
    pub fn load(
        gpu: &Gpu,
        config: LlamaConfig,
        file: &SafetensorsFile,
        quant: Quant,
    ) -> Result<Self> {
        Self::check_weights(&config, file)?;
        let mut parts = Parts::new(quant);
        upload_from_file(gpu, file, "", &Self::expected_weights(&config), &mut parts)?;
        Self::from_parts(gpu, parts, config, file.path())
    }

    /// Assemble the model from its uploaded tensors (every one of
    /// [`Self::expected_weights`]); `path` names the file if a weight never arrived.
    pub(crate) fn from_parts(
        gpu: &Gpu,
        mut parts: Parts,
        config: LlamaConfig,
        path: &std::path::Path,
    ) -> Result<Self> {
        let mut blocks = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let pre = format!("model.layers.{l}");
            let linears = Module::LLAMA
                .iter()
                .map(|&m| {
                    let name = format!("{pre}.{}", m.path());
                    let bias = module_has_bias(&config, m);
                    parts.linear(&name, module_dims(&config, m), bias, path)
                })
                .collect::<Result<Vec<_>>>()?;
            blocks.push(LlamaBlock {
                input_norm: parts.vector(&format!("{pre}.input_layernorm.weight"), path)?,
                post_norm: parts.vector(&format!("{pre}.post_attention_layernorm.weight"), path)?,
                linears,
            });
        }
        let embed = parts.table("model.embed_tokens.weight", path)?;
        let lm_head = match config.tie_word_embeddings {
            true => None,
            false => Some(parts.table("lm_head.weight", path)?),
        };
        let positions = config.max_position_embeddings.min(MAX_ROPE_POSITIONS);
        let rope = gpu.upload_f32(&cpu::rope::cos_sin_table(&config.inv_freq(), positions));
        Ok(Self {
            norm: parts.vector("model.norm.weight", path)?,
            quant: parts.quant(),
            config,
            embed,
            lm_head,
            blocks,
            rope,
            positions,
        })
    }

    /// A model of the given shape with random weights (benchmarks): uniform values of
    /// scale 0.035 from a fixed seed, norms at 1, biases small.
    pub fn random(gpu: &Gpu, config: LlamaConfig, quant: Quant, seed: u64) -> Self {
        let mut state = seed;
        let mut rand = |n: usize, scale: f32| random_values(&mut state, n, scale);
        let c = config.hidden_size;
        let ones = |gpu: &Gpu| gpu.upload_f32(&vec![1.0; c]);
        let mut blocks = Vec::with_capacity(config.num_hidden_layers);
        for _ in 0..config.num_hidden_layers {
            let linears = Module::LLAMA
                .iter()
                .map(|&m| {
                    let (k_in, n_out) = module_dims(&config, m);
                    let w = rand(k_in * n_out, 0.035);
                    let bias =
                        module_has_bias(&config, m).then(|| gpu.upload_f32(&rand(n_out, 0.01)));
                    Linear {
                        weight: upload_weight(gpu, &w, k_in, n_out, quant),
                        bias,
                        k_in,
                        n_out,
                        weight_norm: frobenius(&w),
                    }
                })
                .collect();
            blocks.push(LlamaBlock {
                input_norm: ones(gpu),
                post_norm: ones(gpu),
                linears,
            });
        }
        let v = config.vocab_size;
        let embed = upload_table(gpu, &rand(v * c, 0.035), quant);
        let lm_head =
            (!config.tie_word_embeddings).then(|| upload_table(gpu, &rand(v * c, 0.035), quant));
        let positions = config.max_position_embeddings.min(MAX_ROPE_POSITIONS);
        let rope = gpu.upload_f32(&cpu::rope::cos_sin_table(&config.inv_freq(), positions));
        Self {
            norm: ones(gpu),
            config,
            quant,
            embed,
            lm_head,
            blocks,
            rope,
            positions,
        }
    }

    /// Bytes of GPU memory the weights occupy.
    pub fn weight_bytes(&self) -> u64 {
        let linears: u64 = self
            .blocks
            .iter()
            .flat_map(|b| &b.linears)
            .map(Linear::size_bytes)
            .sum();
        let norms = (2 * self.blocks.len() as u64 + 1) * self.norm.size_bytes();
        let head = self.lm_head.as_ref().map_or(0, Weight::size_bytes);
        linears + norms + self.embed.size_bytes() + head + self.rope.size_bytes()
    }

    /// Re-upload the embedding and lm_head in f32 from `file` (the checkpoint the model was
    /// loaded from), for comparisons against references that keep them f32 (bitsandbytes
    /// with an f32 compute dtype), as `Gpt2::use_f32_wte`.
    pub fn use_f32_tables(&mut self, gpu: &Gpu, file: &SafetensorsFile) -> Result<()> {
        let read = |name: &str| {
            Ok::<_, crate::error::Error>(Weight::F32(gpu.upload_f32(&read_f32(file, name)?)))
        };
        self.embed = read("model.embed_tokens.weight")?;
        if self.lm_head.is_some() {
            self.lm_head = Some(read("lm_head.weight")?);
        }
        Ok(())
    }

    /// Its config.json as the family-independent layers read it.
    pub fn model_config(&self) -> crate::model::ModelConfig {
        crate::model::ModelConfig::Llama(self.config.clone())
    }

    /// The output head: lm_head, or the embedding when tied.
    pub fn head(&self) -> &Weight {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// The one check of the tokens a pass runs: every id inside the vocabulary, and the last
    /// position (`end` tokens from the start) within the RoPE table.
    pub fn check_input(&self, ids: &[u32], end: usize) -> Result<()> {
        let (v, p) = (self.config.vocab_size, self.positions);
        if end > p {
            bail!("a sequence of {end} tokens exceeds the {p} positions this model runs");
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= v) {
            bail!(
                "token id {bad} is outside the vocabulary of {v} tokens (tokenizer and model do not match)"
            );
        }
        Ok(())
    }

    /// Check that a batch of `b`×`t` tokens fits the GPU's binding limit: the largest
    /// activation is the (B·T, FF) MLP state, or the packed (B·T, C+2KV) q|k|v (and a
    /// 128-wide LM-head chunk).
    pub fn check_fits(&self, gpu: &Gpu, b: usize, t: usize) -> Result<()> {
        let cfg = &self.config;
        let width = cfg
            .intermediate_size
            .max(cfg.hidden_size + 2 * cfg.kv_dim())
            .max(128);
        check_binding(gpu, (b, t), width)
    }

    /// A batch of `b` sequences of `t` tokens: its shape, its tokens and that it fits.
    pub fn check_batch(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        b: usize,
        t: usize,
    ) -> Result<()> {
        check_shape(ids, mask, b, t)?;
        self.check_input(ids, t)?;
        self.check_fits(gpu, b, t)
    }

    /// Per-position losses (B·T) of predicting `targets (B,T)` (−100 = not trained) from
    /// `ids`, through the chunked LM head + cross-entropy, with `adapter` applied if given.
    #[allow(clippy::too_many_arguments)] // the batch (ids, mask, targets, b, t) as its parts
    pub async fn position_losses(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        targets: &[i32],
        b: usize,
        t: usize,
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        self.check_batch(gpu, ids, mask, b, t)?;
        let (ids_t, mask_t) = (gpu.upload_u32(ids), gpu.upload_u32(mask));
        let mut cmd = gpu.commands();
        let src = AttnSource::Batch { mask: &mask_t };
        let hidden = self
            .record_forward(&mut cmd, &ids_t, src, (b, t), adapter, Keep::Nothing)
            .hidden;
        let (c, v) = (self.config.hidden_size, self.config.vocab_size);
        let loss = record_position_losses(&mut cmd, &hidden, self.head(), targets, c, v);
        cmd.submit();
        Ok(gpu.read_f32(&loss).await?)
    }

    /// Logits `(B,T,V)` of `ids (B,T)` with `mask (B,T)`, positions 0..T in every row
    /// (transformers' default position ids, whatever the padding), with `adapter` applied if
    /// given (no dropout).
    pub async fn logits(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        (b, t): (usize, usize),
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        check_shape(ids, mask, b, t)?;
        self.check_input(ids, t)?;
        let (c, v) = (self.config.hidden_size, self.config.vocab_size);
        if b * t * v > gpu.max_binding_words() {
            bail!(
                "{b} x {t} positions of full logits do not fit one GPU binding; use fewer positions"
            );
        }
        let (ids_t, mask_t) = (gpu.upload_u32(ids), gpu.upload_u32(mask));
        let logits = gpu.tensor(b * t * v);
        let mut cmd = gpu.commands();
        let src = AttnSource::Batch { mask: &mask_t };
        let hidden = self
            .record_forward(&mut cmd, &ids_t, src, (b, t), adapter, Keep::Nothing)
            .hidden;
        record_head_logits(&mut cmd, &logits, &hidden, self.head(), b * t, c, v);
        cmd.submit();
        Ok(gpu.read_f32(&logits).await?)
    }
}

/// Tensor `name` of `file` in f32.
fn read_f32(file: &SafetensorsFile, name: &str) -> Result<Vec<f32>> {
    let info = file
        .info(name)
        .ok_or_else(|| err!("{}: missing tensor {name}", file.path().display()))?;
    Ok(to_f32(file.bytes(name)?, info.dtype, file.path(), name)?.into_owned())
}

impl Llama {
    /// An empty KV cache for sequences of up to `positions` tokens (at most the RoPE table's).
    pub fn kv_cache(&self, gpu: &Gpu, positions: usize) -> KvCache {
        let cfg = &self.config;
        let width = cfg.hidden_size + 2 * cfg.kv_dim();
        KvCache::with_rows(
            gpu,
            cfg.num_hidden_layers,
            positions.min(self.positions),
            width,
        )
    }

    /// Run `ids` at the next positions of `cache`, with `adapter` applied if given (no
    /// dropout), and return the logits (V) of the last one (as `Gpt2::step`).
    pub async fn step(
        &self,
        gpu: &Gpu,
        cache: &mut KvCache,
        ids: &[u32],
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        let (c, v, n) = (self.config.hidden_size, self.config.vocab_size, ids.len());
        cache.check_room(n)?;
        self.check_input(ids, cache.len() + n)?;
        let ids_t = gpu.upload_u32(ids);
        let (last, logits) = (gpu.tensor(c), gpu.tensor(v));
        let mut cmd = gpu.commands();
        let acts = self.record_forward(
            &mut cmd,
            &ids_t,
            AttnSource::Cache(cache),
            (1, n),
            adapter,
            Keep::Nothing,
        );
        // The last row's hidden state, copied: its offset need not be binding-aligned.
        cmd.copy(&acts.hidden.slice((n - 1) * c, c), &last);
        record_head_logits(&mut cmd, &logits, &last, self.head(), 1, c, v);
        cmd.submit();
        cache.advance(n);
        Ok(gpu.read_f32(&logits).await?)
    }
}

//! Text generation with a KV cache: the prompt is run once (prefill), then each new token
//! runs only its own position, attending to the cached q/k/v rows of the earlier ones.

use crate::bail;
use crate::error::Result;
use crate::gpu::{Commands, Gpu, Tensor};
use crate::kernels::attention::{AttnDims, attention_forward};
use crate::kernels::elementwise::gelu_forward;
use crate::kernels::embedding::embedding_forward;
use crate::kernels::layernorm::layernorm_forward;
use crate::kernels::lora::{LoraDims, lora_linear_forward};
use crate::lora::Module;
use crate::model::forward::AdapterRef;
use crate::model::gpt2::{Gpt2, Linear, run_linear};

/// Per layer, the c_attn output (q|k|v) of every position so far: (n_positions, 3C).
pub struct KvCache {
    layers: Vec<Tensor>,
    /// All-ones mask over the cache rows (generation has no padding).
    mask: Tensor,
    len: usize,
}

impl KvCache {
    pub fn new(gpu: &Gpu, model: &Gpt2) -> Self {
        let cfg = &model.config;
        let p = cfg.n_positions;
        Self {
            layers: (0..cfg.n_layer)
                .map(|_| gpu.tensor(p * 3 * cfg.n_embd))
                .collect(),
            mask: gpu.upload_u32(&vec![1; p]),
            len: 0,
        }
    }

    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Gpt2 {
    /// Run `ids` at the next positions of `cache` and return the logits (V) of the last one.
    pub async fn step(&self, gpu: &Gpu, cache: &mut KvCache, ids: &[u32]) -> Result<Vec<f32>> {
        self.step_with(gpu, cache, ids, None).await
    }

    /// [`Self::step`] with LoRA adapters applied (no dropout).
    pub async fn step_with(
        &self,
        gpu: &Gpu,
        cache: &mut KvCache,
        ids: &[u32],
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        let cfg = &self.config;
        let (c, n, pos0, p) = (cfg.n_embd, ids.len(), cache.len, cfg.n_positions);
        if n == 0 {
            bail!("nothing to run: the prompt is empty");
        }
        if pos0 + n > p {
            bail!(
                "sequence of {} tokens exceeds the model's n_positions {p}",
                pos0 + n
            );
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            bail!(
                "token id {bad} is outside the vocabulary of {}",
                cfg.vocab_size
            );
        }
        let eps = cfg.layer_norm_epsilon as f32;
        let ids_t = gpu.upload_u32(ids);
        let x = gpu.tensor(n * c);
        let ln = gpu.tensor(n * c);
        let (mean, rstd) = (gpu.tensor(n), gpu.tensor(n));
        let qkv = gpu.tensor(n * 3 * c);
        let att = gpu.tensor(n * c);
        let lse = gpu.tensor(cfg.n_head * n);
        let h = gpu.tensor(n * 4 * c);
        let g = gpu.tensor(n * 4 * c);
        let last = gpu.tensor(c);
        let logits = gpu.tensor(cfg.vocab_size);
        let dims = AttnDims {
            b: 1,
            t: p,
            c,
            n_head: cfg.n_head,
        };
        let u = adapter.map(|a| gpu.tensor(n * a.rank));
        // Conv1D `lin` (module `m` of block `l`), with its LoRA (no dropout) if adapted:
        // y (+)= x·W + bias + scale · x·Aᵀ·Bᵀ.
        let linear = |cmd: &mut Commands,
                      l: usize,
                      m: Module,
                      y: &Tensor,
                      x: &Tensor,
                      lin: &Linear,
                      acc: bool| {
            if let (Some(a), Some(u)) = (adapter, &u)
                && let Some(slot) = a.layout.slot(l, m)
            {
                let d = LoraDims {
                    p_drop: 0.0,
                    ..a.dims(slot, n)
                };
                let (w, bias) = (&lin.weight, Some(&lin.bias));
                lora_linear_forward(cmd, y, u, x, x, w, bias, &a.a(slot), &a.b(slot), &d, acc);
            } else {
                run_linear(cmd, y, x, lin, n, acc);
            }
        };
        let mut cmd = gpu.commands();
        embedding_forward(
            &mut cmd,
            &x,
            &ids_t,
            &self.wte,
            &self.wpe,
            self.config.vocab_size,
            1,
            n,
            c,
            pos0,
        );
        for (l, (blk, kv)) in self.blocks.iter().zip(&cache.layers).enumerate() {
            layernorm_forward(
                &mut cmd,
                &ln,
                &mean,
                &rstd,
                &x,
                &blk.ln_1.0,
                &blk.ln_1.1,
                n,
                c,
                eps,
            );
            linear(&mut cmd, l, Module::CAttn, &qkv, &ln, &blk.c_attn, false);
            // Append this step's q/k/v rows to the cache (a copy: row offsets need not be
            // binding-aligned).
            cmd.copy(&qkv, &kv.slice(pos0 * 3 * c, n * 3 * c));
            attention_forward(&mut cmd, &att, &lse, kv, &cache.mask, &dims, pos0, n);
            linear(
                &mut cmd,
                l,
                Module::AttnProj,
                &x,
                &att,
                &blk.attn_proj,
                true,
            );
            layernorm_forward(
                &mut cmd,
                &ln,
                &mean,
                &rstd,
                &x,
                &blk.ln_2.0,
                &blk.ln_2.1,
                n,
                c,
                eps,
            );
            linear(&mut cmd, l, Module::CFc, &h, &ln, &blk.c_fc, false);
            gelu_forward(&mut cmd, &g, &h, n * 4 * c);
            linear(&mut cmd, l, Module::MlpProj, &x, &g, &blk.mlp_proj, true);
        }
        cmd.copy(&x.slice((n - 1) * c, c), &last);
        let (m1, r1) = (gpu.tensor(1), gpu.tensor(1));
        layernorm_forward(
            &mut cmd,
            &ln,
            &m1,
            &r1,
            &last,
            &self.ln_f.0,
            &self.ln_f.1,
            1,
            c,
            eps,
        );
        self.record_logits(&mut cmd, &logits, &ln, 1);
        cmd.submit();
        cache.len += n;
        Ok(gpu.read_f32(&logits).await?)
    }
}

/// What to generate: how many tokens and how to pick them.
#[derive(Clone, Copy, Debug)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    pub sampling: crate::sample::Sampling,
    pub seed: u64,
}

/// Continue `prompt` token by token through a KV cache, stopping at EOS, `max_new_tokens` or
/// the model's context. `on_text` receives each newly completed piece of text (never half a
/// UTF-8 character) as it is decoded; the whole continuation is returned.
pub async fn generate(
    gpu: &Gpu,
    model: &Gpt2,
    tok: &crate::tokenizer::Tokenizer,
    adapter: Option<&AdapterRef<'_>>,
    prompt: &str,
    cfg: &GenerateConfig,
    mut on_text: impl FnMut(&str),
) -> Result<String> {
    let eos = tok.eos_id().unwrap_or(model.config.eos());
    let mut ids = tok.encode(prompt)?;
    if ids.is_empty() {
        ids.push(eos); // GPT-2 starts unconditioned text from <|endoftext|>
    }
    if ids.len() >= model.config.n_positions {
        bail!(
            "the prompt has {} tokens; the model sees at most {}",
            ids.len(),
            model.config.n_positions
        );
    }
    let mut rng = crate::sample::Rng::new(cfg.seed);
    let mut cache = KvCache::new(gpu, model);
    let prompt_len = ids.len();
    let mut next = ids.clone();
    let mut shown = 0;
    let mut text = String::new();
    for _ in 0..cfg.max_new_tokens {
        if cache.len() + next.len() > model.config.n_positions {
            break;
        }
        let logits = model.step_with(gpu, &mut cache, &next, adapter).await?;
        let id = crate::sample::sample(&logits, &cfg.sampling, &mut rng);
        if id == eos {
            break;
        }
        ids.push(id);
        // Decode all new tokens together and emit what is new, so multi-token characters
        // appear whole.
        text = tok.decode(&ids[prompt_len..])?;
        if text.len() > shown && !text.ends_with('\u{FFFD}') {
            on_text(&text[shown..]);
            shown = text.len();
        }
        next = vec![id];
    }
    if text.len() > shown {
        on_text(&text[shown..]);
    }
    Ok(text)
}

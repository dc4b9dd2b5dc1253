//! Building a model on the GPU from checkpoint tensors, one tensor at a time.
//!
//! Two front ends share everything here: [`Gpt2::load`] and `Llama::load` read a whole
//! (memory-mapped) `model.safetensors` by name, and [`super::stream_load::StreamLoader`] is
//! fed the file's bytes in order (the browser, where a 3 GB checkpoint cannot sit in wasm
//! memory). Both check every tensor's name, dtype and shape first ([`check_tensors`]),
//! convert each tensor to f32 ([`to_f32`]), upload it in its GPU format ([`Parts::upload`]:
//! the blocks' weights quantized as asked, GPT-2's Conv1D as stored, the Llama family's
//! nn.Linear transposed to that layout first; the rest f32) and assemble the model
//! ([`Parts::build`], `Llama::from_parts`).

use std::collections::HashMap;
use std::path::Path;

use safetensors::Dtype;

use crate::error::Result;
use crate::gpu::{Gpu, Tensor};
use crate::kernels::layernorm::LayerNorm;
use crate::kernels::matmul::Weight;
use crate::model::config::Gpt2Config;
use crate::model::gpt2::{Gpt2, Quant};
use crate::model::safetensors_file::SafetensorsFile;
pub use crate::model::safetensors_file::to_f32;
use crate::model::{Block, Linear, Module};
use crate::{bail, err, nf4};

/// The weights outside the transformer blocks: embeddings and the final LayerNorm.
pub fn head_weights(config: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let c = config.n_embd;
    vec![
        ("wte.weight".to_string(), vec![config.vocab_size, c]),
        ("wpe.weight".to_string(), vec![config.n_positions, c]),
        ("ln_f.weight".to_string(), vec![c]),
        ("ln_f.bias".to_string(), vec![c]),
    ]
}

/// The weights of transformer block `i`, with their shapes.
pub fn block_weights(config: &Gpt2Config, i: usize) -> Vec<(String, Vec<usize>)> {
    let (h, c) = (format!("h.{i}"), config.n_embd);
    let mut v = Vec::with_capacity(12);
    for ln in ["ln_1", "ln_2"] {
        v.push((format!("{h}.{ln}.weight"), vec![c]));
        v.push((format!("{h}.{ln}.bias"), vec![c]));
    }
    for m in Module::GPT2 {
        let (k_in, n_out) = m.dims(c);
        v.push((format!("{h}.{}.weight", m.path()), vec![k_in, n_out]));
        v.push((format!("{h}.{}.bias", m.path()), vec![n_out]));
    }
    v
}

/// Every weight a GPT-2 checkpoint of `config` holds, with its shape (Hugging Face names
/// without the optional `transformer.` prefix).
pub fn expected_weights(config: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let mut v = head_weights(config);
    for i in 0..config.n_layer {
        v.extend(block_weights(config, i));
    }
    v
}

/// The name prefix a checkpoint uses: `transformer.` (GPT2LMHeadModel) or none (GPT2Model).
pub fn name_prefix(has: impl Fn(&str) -> bool) -> &'static str {
    if has("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    }
}

/// Check that a checkpoint's tensor table (`info(full name) -> (dtype, shape)`) holds every
/// weight `config` needs, in a float dtype and the right shape: a wrong checkpoint is
/// reported by tensor name before anything is uploaded. `path` names the file in errors.
pub fn check_tensors<'a>(
    config: &Gpt2Config,
    path: &Path,
    info: impl Fn(&str) -> Option<(Dtype, &'a [usize])>,
) -> Result<()> {
    let p = path.display();
    let prefix = name_prefix(|n| info(n).is_some());
    if info(&format!("{prefix}wte.weight")).is_none() {
        bail!(
            "{p}: no wte.weight (or transformer.wte.weight): not a GPT-2 checkpoint; pass a Hugging Face GPT-2 model directory"
        );
    }
    for (name, shape) in expected_weights(config) {
        let full = format!("{prefix}{name}");
        let Some((dtype, got)) = info(&full) else {
            bail!(
                "{p}: missing tensor {full} (config.json has n_layer {}): the weights and config.json do not match, or the file is incomplete",
                config.n_layer
            );
        };
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            bail!("{p}: tensor {full} has dtype {dtype:?}; expected F32, F16 or BF16");
        }
        if got != shape.as_slice() {
            bail!(
                "{p}: tensor {full} has shape {got:?}, config.json implies {shape:?}: the weights and config.json belong to different models"
            );
        }
    }
    Ok(())
}

/// [`check_tensors`] for a file already open.
pub fn check_weights(config: &Gpt2Config, file: &SafetensorsFile) -> Result<()> {
    check_tensors(config, file.path(), |n| {
        file.info(n).map(|i| (i.dtype, i.shape.as_slice()))
    })
}

/// ‖w‖_F, summed in f64 (a Conv1D weight's norm, kept beside its GPU copy).
pub fn frobenius(w: &[f32]) -> f64 {
    w.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

/// Bytes of GPU memory a model with the weights `expected` (name, shape) takes in `quant`,
/// as [`Parts::upload`] stores each weight (the blocks' weights in `quant`, the embedding and
/// head as [`upload_table`] keeps them, the rest f32; every tensor in whole 32-bit words);
/// computed on the host, without a GPU. `Llama::expected_weights` gives that family's list.
pub fn weight_bytes_of(expected: &[(String, Vec<usize>)], quant: Quant) -> u64 {
    let words = |name: &str, shape: &[usize]| -> usize {
        let n: usize = shape.iter().product();
        match (stored_as(name, shape), quant) {
            (Stored::Table, _) if f16_table(quant) => n.div_ceil(2),
            (Stored::Conv1d | Stored::Linear, Quant::F16) => n.div_ceil(2),
            // Packed nibbles, and an f32 absmax per block (double quantization's is kept
            // reconstructed in f32 too).
            (Stored::Conv1d | Stored::Linear, Quant::Nf4 { .. }) => {
                n.div_ceil(8) + n.div_ceil(nf4::BLOCK)
            }
            _ => n,
        }
    };
    expected
        .iter()
        .map(|(name, shape)| 4 * words(name, shape) as u64)
        .sum()
}

/// [`weight_bytes_of`] a GPT-2 of `config`.
pub fn weight_bytes(config: &Gpt2Config, quant: Quant) -> u64 {
    weight_bytes_of(&expected_weights(config), quant)
}

/// How a checkpoint tensor sits on the GPU: the rule [`Parts::upload`] and [`weight_bytes`]
/// share.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// The token embedding (and the Llama family's untied head): f32 or f16
    /// ([`upload_table`]).
    Table,
    /// A GPT-2 block's 2-D weight, a Conv1D matrix `(in,out)` in the base format.
    Conv1d,
    /// A Llama-family layer's nn.Linear weight `(out,in)`, stored transposed as a Conv1D
    /// matrix in the base format.
    Linear,
    /// Everything else, f32.
    F32,
}

fn stored_as(name: &str, shape: &[usize]) -> Stored {
    match shape {
        _ if matches!(
            name,
            "wte.weight" | "model.embed_tokens.weight" | "lm_head.weight"
        ) =>
        {
            Stored::Table
        }
        [_, _] if name.starts_with("h.") => Stored::Conv1d,
        [_, _] if name.starts_with("model.layers.") => Stored::Linear,
        _ => Stored::F32,
    }
}

/// Upload a Conv1D weight `(in,out)` in the requested format.
pub(crate) fn upload_weight(
    gpu: &Gpu,
    w: &[f32],
    k_in: usize,
    n_out: usize,
    quant: Quant,
) -> Weight {
    match quant {
        Quant::F32 => Weight::F32(gpu.upload_f32(w)),
        Quant::F16 => {
            let h: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
            Weight::F16(gpu.upload_bytes(bytemuck::cast_slice(&h)))
        }
        Quant::Nf4 { double_quant } => {
            let mut q = nf4::quantize_conv1d(w, k_in, n_out);
            if double_quant {
                q.absmax = nf4::double_quantize(&q.absmax).dequantize();
            }
            crate::kernels::nf4::upload(gpu, &q)
        }
    }
}

/// Whether the token embedding is kept in f16 (every base format but f32).
pub(crate) fn f16_table(quant: Quant) -> bool {
    !matches!(quant, Quant::F32)
}

/// Upload the token embedding `(V,C)`: f32 with an f32 base, f16 otherwise (as QLoRA keeps
/// the modules it does not quantize in a 16-bit dtype).
pub(crate) fn upload_table(gpu: &Gpu, w: &[f32], quant: Quant) -> Weight {
    match quant {
        _ if !f16_table(quant) => Weight::F32(gpu.upload_f32(w)),
        _ => {
            // Converted straight into the upload's words (two f16 per word): the host holds
            // the f32 table plus half of it, not a second f16 copy (wte is the largest tensor).
            let mut words = vec![0u32; w.len().div_ceil(2)];
            let h = &mut bytemuck::cast_slice_mut::<u32, half::f16>(&mut words)[..w.len()];
            for (h, &v) in h.iter_mut().zip(w) {
                *h = half::f16::from_f32(v);
            }
            Weight::F16(gpu.upload_u32(&words))
        }
    }
}

/// One uploaded tensor: a block weight in the base format (as a Conv1D matrix), the token
/// embedding or head (f32 or f16), or an f32 vector/matrix.
pub(crate) enum Part {
    F32(Tensor),
    Conv1d(Weight),
    Table(Weight),
}

/// The tensors uploaded so far, by name without prefix, until [`Parts::build`] assembles them.
pub(crate) struct Parts {
    quant: Quant,
    got: HashMap<String, Part>,
    /// ‖W‖_F of each Conv1D weight uploaded, by name.
    norms: HashMap<String, f64>,
}

impl Parts {
    pub(crate) fn new(quant: Quant) -> Self {
        Self {
            quant,
            got: HashMap::new(),
            norms: HashMap::new(),
        }
    }

    /// Upload the checked tensor `name` (no prefix) of `shape`: the blocks' 2-D weights are
    /// Conv1D matrices `(in,out)` (an nn.Linear `(out,in)` transposed first) stored as
    /// [`Quant`] says, the embedding and head as [`upload_table`] says; everything else
    /// stays f32.
    pub(crate) fn upload(&mut self, gpu: &Gpu, name: &str, shape: &[usize], values: &[f32]) {
        let part = match (stored_as(name, shape), shape) {
            (Stored::Table, _) => Part::Table(upload_table(gpu, values, self.quant)),
            (Stored::Conv1d, &[k_in, n_out]) => {
                self.norms.insert(name.to_string(), frobenius(values));
                Part::Conv1d(upload_weight(gpu, values, k_in, n_out, self.quant))
            }
            (Stored::Linear, &[n_out, k_in]) => {
                // The norm of the checkpoint's values in their order (as the host figures
                // read them from the file), before the transpose.
                self.norms.insert(name.to_string(), frobenius(values));
                let w = transpose(values, n_out, k_in);
                Part::Conv1d(upload_weight(gpu, &w, k_in, n_out, self.quant))
            }
            _ => Part::F32(gpu.upload_f32(values)),
        };
        self.got.insert(name.to_string(), part);
    }

    /// Whether tensor `name` is a table that [`upload_table`] keeps in f16 (what the stream
    /// loader converts as it arrives rather than holding it in f32).
    pub(crate) fn f16_table(&self, name: &str, shape: &[usize]) -> bool {
        stored_as(name, shape) == Stored::Table && f16_table(self.quant)
    }

    /// The base format the blocks' weights are stored in.
    pub(crate) fn quant(&self) -> Quant {
        self.quant
    }

    /// The token embedding already converted to f16 (two per word).
    pub(crate) fn insert_f16_table(&mut self, gpu: &Gpu, name: &str, words: &[u32]) {
        let table = Weight::F16(gpu.upload_u32(words));
        self.got.insert(name.to_string(), Part::Table(table));
    }

    pub(crate) fn take(&mut self, name: &str, path: &Path) -> Result<Part> {
        self.got
            .remove(name)
            .ok_or_else(|| err!("{}: missing tensor {name}", path.display()))
    }

    pub(crate) fn vector(&mut self, name: &str, path: &Path) -> Result<Tensor> {
        match self.take(name, path)? {
            Part::F32(t) => Ok(t),
            _ => bail!("{}: tensor {name} is not a vector", path.display()),
        }
    }

    fn layer_norm(&mut self, name: &str, path: &Path) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{name}.weight"), path)?,
            bias: self.vector(&format!("{name}.bias"), path)?,
        })
    }

    /// The Linear `name` (`{name}.weight`, and `{name}.bias` when `bias`).
    pub(crate) fn linear(
        &mut self,
        name: &str,
        (k_in, n_out): (usize, usize),
        bias: bool,
        path: &Path,
    ) -> Result<Linear> {
        let weight_name = format!("{name}.weight");
        let weight_norm = self.norms.get(&weight_name).copied().unwrap_or(0.0);
        let Part::Conv1d(weight) = self.take(&weight_name, path)? else {
            bail!(
                "{}: tensor {name}.weight is not a Linear weight",
                path.display()
            );
        };
        let bias = match bias {
            true => Some(self.vector(&format!("{name}.bias"), path)?),
            false => None,
        };
        Ok(Linear {
            weight,
            bias,
            k_in,
            n_out,
            weight_norm,
        })
    }

    /// The embedding or head `name`, as [`upload_table`] stored it.
    pub(crate) fn table(&mut self, name: &str, path: &Path) -> Result<Weight> {
        match self.take(name, path)? {
            Part::Table(w) => Ok(w),
            _ => bail!("{}: tensor {name} is not a table", path.display()),
        }
    }

    /// Assemble the model; `path` names the file if a weight never arrived.
    pub(crate) fn build(mut self, config: Gpt2Config, path: &Path) -> Result<Gpt2> {
        let c = config.n_embd;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let h = format!("h.{i}");
            let ln_1 = self.layer_norm(&format!("{h}.ln_1"), path)?;
            let ln_2 = self.layer_norm(&format!("{h}.ln_2"), path)?;
            let mut linears = Vec::with_capacity(4);
            for m in Module::GPT2 {
                let name = format!("{h}.{}", m.path());
                linears.push(self.linear(&name, m.dims(c), true, path)?);
            }
            let linears = linears.try_into().ok().expect("one Linear per module");
            blocks.push(Block {
                ln_1,
                ln_2,
                linears,
            });
        }
        Ok(Gpt2 {
            wte: self.table("wte.weight", path)?,
            wpe: self.vector("wpe.weight", path)?,
            ln_f: self.layer_norm("ln_f", path)?,
            blocks,
            quant: self.quant,
            config,
        })
    }
}

/// Upload the listed weights of an open file (already checked) into `parts`.
pub(crate) fn upload_from_file(
    gpu: &Gpu,
    file: &SafetensorsFile,
    prefix: &str,
    weights: &[(String, Vec<usize>)],
    parts: &mut Parts,
) -> Result<()> {
    for (name, shape) in weights {
        let full = format!("{prefix}{name}");
        let info = file
            .info(&full)
            .ok_or_else(|| err!("{}: missing tensor {full}", file.path().display()))?;
        let values = to_f32(file.bytes(&full)?, info.dtype, file.path(), &full)?;
        parts.upload(gpu, name, shape, &values);
    }
    Ok(())
}

impl Gpt2 {
    /// Load `config` + `model.safetensors`, one tensor at a time, quantizing as asked.
    pub fn load(
        gpu: &Gpu,
        config: Gpt2Config,
        file: &SafetensorsFile,
        quant: Quant,
    ) -> Result<Self> {
        check_weights(&config, file)?;
        let prefix = name_prefix(|n| file.info(n).is_some());
        let mut parts = Parts::new(quant);
        upload_from_file(gpu, file, prefix, &expected_weights(&config), &mut parts)?;
        parts.build(config, file.path())
    }
}

/// `n` uniform values in `(-scale, scale)` from an LCG at `state` (benchmark weights: fast,
/// and the same on every machine).
pub(crate) fn random_values(state: &mut u64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
        })
        .collect()
}

impl Gpt2 {
    /// A model of the given shape with random weights (benchmarks, tests): N(0, 0.02)-like
    /// values from a fixed seed, LayerNorms at 1/0.
    pub fn random(gpu: &Gpu, config: Gpt2Config, quant: Quant, seed: u64) -> Self {
        let mut state = seed;
        let mut rand = |n: usize, scale: f32| random_values(&mut state, n, scale);
        let c = config.n_embd;
        let unit_ln = |gpu: &Gpu| LayerNorm {
            weight: gpu.upload_f32(&vec![1.0; c]),
            bias: gpu.zeros(c),
        };
        let mut blocks = Vec::new();
        for _ in 0..config.n_layer {
            let ln_1 = unit_ln(gpu);
            let ln_2 = unit_ln(gpu);
            let linears = Module::GPT2.map(|m| {
                let (k_in, n_out) = m.dims(c);
                let w = rand(k_in * n_out, 0.035);
                Linear {
                    weight: upload_weight(gpu, &w, k_in, n_out, quant),
                    bias: Some(gpu.upload_f32(&rand(n_out, 0.01))),
                    k_in,
                    n_out,
                    weight_norm: frobenius(&w),
                }
            });
            blocks.push(Block {
                ln_1,
                ln_2,
                linears,
            });
        }
        let wte = upload_table(gpu, &rand(config.vocab_size * c, 0.035), quant);
        let wpe = gpu.upload_f32(&rand(config.n_positions * c, 0.035));
        Self {
            ln_f: unit_ln(gpu),
            config,
            quant,
            wte,
            wpe,
            blocks,
        }
    }

    /// Re-upload the token embedding in f32 from `file` (the checkpoint the model was loaded
    /// from). For comparisons against references that keep it f32 (bitsandbytes + PEFT with
    /// an f32 compute dtype), where the f16 table's rounding (logits ~1e-3 apart on the tiny
    /// fixture) would hide the 1e-4 differences those tests look for.
    pub fn use_f32_wte(&mut self, gpu: &Gpu, file: &SafetensorsFile) -> Result<()> {
        let name = format!("{}wte.weight", name_prefix(|n| file.info(n).is_some()));
        let p = file.path().display();
        let info = file
            .info(&name)
            .ok_or_else(|| err!("{p}: missing tensor {name}"))?;
        let shape = [self.config.vocab_size, self.config.n_embd];
        if info.shape != shape {
            bail!(
                "{p}: tensor {name} has shape {:?}, expected {shape:?}",
                info.shape
            );
        }
        let values = to_f32(file.bytes(&name)?, info.dtype, file.path(), &name)?;
        self.wte = Weight::F32(gpu.upload_f32(&values));
        Ok(())
    }
}

/// `(rows, cols)` row-major → `(cols, rows)`: an nn.Linear weight `(out,in)` as Conv1D `(in,out)`.
pub(crate) fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

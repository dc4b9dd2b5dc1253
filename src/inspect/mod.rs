//! What a LoRA adapter learned, from its PEFT files: for each adapted module the update
//! `ΔW = scale·B·A`'s Frobenius norm (and its ratio to the base weight's), its singular
//! values and effective rank ([`svd`], from the r×r core, never the dense matrix); for the
//! whole adapter the trainable share of the parameters and the memory of a full fine-tune
//! against this adapter's. `wgtune inspect` prints it; the page draws it. [`compare`] puts
//! the base model's answers beside the tuned one's.
//!
//! ```no_run
//! # fn main() -> wgtune::error::Result<()> {
//! let dir = std::path::Path::new("wgtune-out");
//! let i = wgtune::inspect::Inspection::read_dir(dir)?;
//! for m in &i.modules {
//!     println!("{} ‖ΔW‖={:.3e} σ={:?}", m.name, m.norm, m.singular_values);
//! }
//! # Ok(()) }
//! ```

pub mod compare;
pub mod svd;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::adapter::{lora_values, parse_config};
use crate::error::Result;
use crate::lora::LoraConfig;
use crate::model::llama::Llama;
use crate::model::safetensors_file::SafetensorsFile;
use crate::model::{ModelConfig, ModelRef, Quant, load};
use crate::{bail, err};

/// One adapted module's update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleUpdate {
    /// The module's full name in the base model, as PEFT saves it
    /// (`transformer.h.0.attn.c_attn`).
    pub name: String,
    /// Its block, when the name has one (`.h.{i}.` or `.layers.{i}.`).
    pub layer: Option<usize>,
    /// The name within the block (`attn.c_attn`).
    pub module: String,
    pub in_features: usize,
    pub out_features: usize,
    pub rank: usize,
    /// ‖ΔW‖_F = sqrt(Σσ²).
    pub norm: f64,
    /// ‖W‖_F of the base weight, when the base model was given.
    pub base_norm: Option<f64>,
    /// The singular values of ΔW, largest first (`min(r, in, out)` of them).
    pub singular_values: Vec<f64>,
    /// exp of the entropy of the normalised singular values ([`svd::effective_rank`]).
    pub effective_rank: f64,
}

impl ModuleUpdate {
    /// ‖ΔW‖_F / ‖W‖_F.
    pub fn relative_norm(&self) -> Option<f64> {
        self.base_norm.filter(|&n| n > 0.0).map(|n| self.norm / n)
    }
}

/// The bytes a training run keeps for the weights, their gradients and the AdamW moments
/// (activations, the same for both, are left out), all f32 as PyTorch keeps them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryComparison {
    /// The base format of the adapter's run (`nf4`, `f16`, `f32`).
    pub quant: String,
    /// Full fine-tune: every parameter with its gradient and two moments (16 B each).
    pub full_finetune: u64,
    /// The frozen base in `quant`, as the GPU holds it.
    pub base_weights: u64,
    /// The adapter's parameters with their gradients and two moments (16 B each).
    pub adapter_state: u64,
}

impl MemoryComparison {
    /// Bytes of a full fine-tune against this adapter's run, for a model of `config`.
    pub fn of(config: &ModelConfig, quant: Quant, trainable: usize) -> Self {
        const STATE: u64 = 4 * 4; // weight, gradient, AdamW m and v
        let base_weights = match config {
            ModelConfig::Gpt2(c) => load::weight_bytes(c, quant),
            ModelConfig::Llama(c) => Llama::weight_bytes_of(c, quant),
        };
        Self {
            quant: quant.to_string(),
            full_finetune: STATE * config.num_params() as u64,
            base_weights,
            adapter_state: STATE * trainable as u64,
        }
    }

    pub fn lora_total(&self) -> u64 {
        self.base_weights + self.adapter_state
    }
}

/// The figures that need the base model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseFigures {
    /// The base model's parameters (PEFT's "all params" adds the trainable ones).
    pub base_params: usize,
    pub memory: MemoryComparison,
}

/// A whole adapter, inspected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    pub r: usize,
    pub lora_alpha: f32,
    pub use_rslora: bool,
    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub scale: f32,
    pub target_modules: Vec<String>,
    /// Sorted by block, then by module name.
    pub modules: Vec<ModuleUpdate>,
    /// LoRA parameters: Σ r·(in + out).
    pub trainable: usize,
    pub base: Option<BaseFigures>,
}

/// One module's A (r, in) and B (out, r) as PEFT stores them.
struct LoraPair {
    a: Option<(Vec<f32>, [usize; 2])>,
    b: Option<(Vec<f32>, [usize; 2])>,
}

/// `base_model.model.X.lora_A.weight` (or PEFT's older `.lora_A.default.weight`) → (X, true).
fn split_key(key: &str) -> Option<(&str, bool)> {
    let rest = key.strip_prefix("base_model.model.")?;
    for (suffix, is_a) in [
        (".lora_A.weight", true),
        (".lora_B.weight", false),
        (".lora_A.default.weight", true),
        (".lora_B.default.weight", false),
    ] {
        if let Some(name) = rest.strip_suffix(suffix) {
            return Some((name, is_a));
        }
    }
    None
}

/// The block index and in-block name of a module's full name.
fn layer_of(name: &str) -> (Option<usize>, String) {
    let parts: Vec<&str> = name.split('.').collect();
    for (i, w) in parts.windows(2).enumerate() {
        if matches!(w[0], "h" | "layers")
            && let Ok(l) = w[1].parse::<usize>()
        {
            return (Some(l), parts[i + 2..].join("."));
        }
    }
    (None, name.to_string())
}

impl Inspection {
    /// Inspect an adapter directory (`adapter_config.json` + `adapter_model.safetensors`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: &Path) -> Result<Self> {
        use crate::adapter::{CONFIG_FILE, WEIGHTS_FILE};
        let (cpath, wpath) = (dir.join(CONFIG_FILE), dir.join(WEIGHTS_FILE));
        let config = std::fs::read_to_string(&cpath).map_err(|e| {
            err!(
                "{}: cannot read ({e}); a PEFT adapter directory holds {CONFIG_FILE} and {WEIGHTS_FILE}",
                cpath.display()
            )
        })?;
        let weights =
            std::fs::read(&wpath).map_err(|e| err!("{}: cannot read: {e}", wpath.display()))?;
        Self::of_files(&config, &cpath, &weights, &wpath)
    }

    /// Inspect an adapter from its two files' contents (paths label errors).
    pub fn of_files(
        config_text: &str,
        config_path: &Path,
        weights: &[u8],
        weights_path: &Path,
    ) -> Result<Self> {
        let cfg = parse_config(config_text, config_path)?;
        let p = weights_path.display();
        let st = safetensors::SafeTensors::deserialize(weights)
            .map_err(|e| err!("{p}: not a valid safetensors file ({e}): truncated or corrupt?"))?;
        let mut pairs: BTreeMap<String, LoraPair> = BTreeMap::new();
        for (key, view) in st.tensors() {
            let Some((name, is_a)) = split_key(&key) else {
                bail!("{p}: unexpected tensor {key} (not a LoRA A or B weight)");
            };
            let shape: [usize; 2] = view.shape().try_into().map_err(|_| {
                err!(
                    "{p}: tensor {key} has shape {:?}; expected 2-D",
                    view.shape()
                )
            })?;
            let values = lora_values(&view, weights_path, &key)?;
            let pair = pairs
                .entry(name.to_string())
                .or_insert(LoraPair { a: None, b: None });
            *(if is_a { &mut pair.a } else { &mut pair.b }) = Some((values, shape));
        }
        if pairs.is_empty() {
            bail!("{p}: no LoRA weights");
        }
        let scale = cfg.scale();
        let mut modules = Vec::with_capacity(pairs.len());
        for (name, pair) in pairs {
            let (Some((a, [ra, k_in])), Some((b, [n_out, rb]))) = (pair.a, pair.b) else {
                bail!("{p}: module {name} has only one of lora_A and lora_B");
            };
            if ra != cfg.r || rb != cfg.r {
                bail!(
                    "{p}: module {name} has lora_A {:?} and lora_B {:?}, but adapter_config.json says r={}",
                    [ra, k_in],
                    [n_out, rb],
                    cfg.r
                );
            }
            modules.push(module_update(name, &a, &b, cfg.r, k_in, n_out, scale));
        }
        modules.sort_by(|x, y| (x.layer, &x.module).cmp(&(y.layer, &y.module)));
        Ok(Self::new(&cfg, modules))
    }

    fn new(cfg: &LoraConfig, modules: Vec<ModuleUpdate>) -> Self {
        Self {
            r: cfg.r,
            lora_alpha: cfg.lora_alpha,
            use_rslora: cfg.use_rslora,
            scale: cfg.scale(),
            target_modules: cfg.target_modules.clone(),
            trainable: modules
                .iter()
                .map(|m| m.rank * (m.in_features + m.out_features))
                .sum(),
            modules,
            base: None,
        }
    }

    /// Add what the base model tells: each base weight's norm (`base_norm(full name)`), the
    /// parameter count and the memory comparison for a run in `quant`. Fails when a module's
    /// shape is not the base's (an adapter for another model).
    pub fn with_base(
        mut self,
        config: &ModelConfig,
        quant: Quant,
        base_norm: impl Fn(&str) -> Option<BaseNorm>,
    ) -> Result<Self> {
        for m in &mut self.modules {
            let Some((norm, shape)) = base_norm(&m.name) else {
                bail!(
                    "adapter module {} is not a Linear of the base model",
                    m.name
                );
            };
            if shape != [m.in_features, m.out_features] {
                bail!(
                    "adapter module {} is {}x{} (in x out), the base model's is {}x{}: an adapter for another model",
                    m.name,
                    m.in_features,
                    m.out_features,
                    shape[0],
                    shape[1]
                );
            }
            m.base_norm = Some(norm);
        }
        self.base = Some(BaseFigures {
            base_params: config.num_params(),
            memory: MemoryComparison::of(config, quant, self.trainable),
        });
        Ok(self)
    }
}

/// A base weight's norm and Conv1D shape `(in, out)` by module full name
/// (`transformer.h.0.attn.c_attn`), as [`Inspection::with_base`] asks.
pub type BaseNorm = (f64, [usize; 2]);

/// The base norms of a loaded model, from the checkpoint's weights as it read them (the GPU
/// copy may be quantized).
pub fn base_norms_of(model: ModelRef<'_>) -> impl Fn(&str) -> Option<BaseNorm> + '_ {
    let config = model.config();
    move |name| {
        let (l, m) = config.linear_of(name)?;
        let lin = match model {
            ModelRef::Gpt2(g) => g.blocks[l].linear(m),
            ModelRef::Llama(g) => g.blocks[l].linear(m),
        };
        Some((lin.weight_norm, [lin.k_in, lin.n_out]))
    }
}

/// The base norms read from a checkpoint file on the host (no GPU).
pub fn base_norms_in(file: &SafetensorsFile) -> impl Fn(&str) -> Option<BaseNorm> + '_ {
    let prefix = load::name_prefix(|n| file.info(n).is_some());
    move |name| {
        // The Llama family's nn.Linear weights are (out, in), under their own names;
        // GPT-2's Conv1D (in, out), with or without the `transformer.` prefix.
        let (key, linear) = match name.strip_prefix("transformer.") {
            _ if name.starts_with("model.layers.") => (format!("{name}.weight"), true),
            short => (format!("{prefix}{}.weight", short.unwrap_or(name)), false),
        };
        let info = file.info(&key)?;
        let [a, b]: [usize; 2] = info.shape.as_slice().try_into().ok()?;
        let shape = if linear { [b, a] } else { [a, b] };
        let (values, _) = file.f32(&key).ok()?;
        Some((load::frobenius(&values), shape))
    }
}

fn module_update(
    name: String,
    a: &[f32],
    b: &[f32],
    r: usize,
    k_in: usize,
    n_out: usize,
    scale: f32,
) -> ModuleUpdate {
    let sv = svd::low_rank_singular_values(a, b, r, k_in, n_out, scale as f64);
    let (layer, module) = layer_of(&name);
    ModuleUpdate {
        layer,
        module,
        in_features: k_in,
        out_features: n_out,
        rank: r,
        norm: sv.iter().map(|s| s * s).sum::<f64>().sqrt(),
        base_norm: None,
        effective_rank: svd::effective_rank(&sv),
        singular_values: sv,
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_split_into_block_and_path() {
        assert_eq!(
            layer_of("transformer.h.11.mlp.c_proj"),
            (Some(11), "mlp.c_proj".to_string())
        );
        assert_eq!(
            layer_of("model.layers.3.self_attn.q_proj"),
            (Some(3), "self_attn.q_proj".to_string())
        );
        assert_eq!(layer_of("lm_head"), (None, "lm_head".to_string()));
        assert_eq!(
            split_key("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"),
            Some(("transformer.h.0.attn.c_attn", false))
        );
        assert_eq!(split_key("transformer.wte.weight"), None);
    }
}

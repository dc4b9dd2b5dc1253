//! LoRA adapters with PEFT semantics: which modules of a model (GPT-2's Conv1D, the Llama
//! family's nn.Linear) are adapted, scale, initialisation,
//! PEFT's tensor names, the flat parameter layout the GPU trains, and an adapter held on the
//! GPU for inference.
//!
//! Every A (r,in) and B (out,r) lives in one flat f32 buffer (as do their gradients and AdamW
//! moments), each starting on a 64-float boundary so any of them can be bound on its own.
//! Of the model, LoRA knows the module paths and shapes ([`Module`]); the passes read an
//! adapter through [`AdapterRef`].

use crate::bail;
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};
use crate::model::config::MAX_LAYERS;
use crate::model::model_config::{GPT2_TARGETS, LLAMA_TARGETS};
use crate::model::{AdapterRef, LoraSlot, ModelConfig, Module};

/// The valid `--targets` names of both families, for messages (PEFT also accepts, and saves
/// for all-linear, full module names such as `transformer.h.0.attn.c_attn`: any suffix of a
/// module name after a dot matches).
pub fn valid_targets_line() -> String {
    format!(
        "GPT-2: {}; Llama, Qwen2: {}",
        GPT2_TARGETS.join(", "),
        LLAMA_TARGETS.join(", ")
    )
}

/// The largest LoRA rank accepted (GPT-2 XL's width is 1600; a larger rank adds nothing).
pub const MAX_RANK: usize = 4096;

/// LoRA hyper-parameters (PEFT's LoraConfig fields of the same names).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f32,
    pub lora_dropout: f32,
    /// As given by the user (PEFT's `target_modules`), e.g. ["c_attn"] or ["all-linear"].
    pub target_modules: Vec<String>,
    pub use_rslora: bool,
}

impl LoraConfig {
    /// Check the values and the target names.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            bail!("LoRA rank (--rank, r) must be at least 1, got 0");
        }
        if self.r > MAX_RANK {
            bail!("LoRA rank {} is too large (at most {MAX_RANK})", self.r);
        }
        if !self.lora_alpha.is_finite() || self.lora_alpha <= 0.0 {
            bail!(
                "LoRA alpha (--alpha, lora_alpha) must be positive and finite, got {}",
                self.lora_alpha
            );
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            bail!(
                "LoRA dropout (--dropout, lora_dropout) must be in [0, 1), got {}",
                self.lora_dropout
            );
        }
        if self.target_modules.is_empty() {
            bail!("no LoRA target modules; valid: {}", valid_targets_line());
        }
        let families = [&Module::GPT2[..], &Module::LLAMA[..]];
        for t in &self.target_modules {
            let known = families
                .iter()
                .any(|modules| (0..MAX_LAYERS).any(|l| modules.iter().any(|&m| matches(t, l, m))));
            if !known {
                bail!(
                    "unknown LoRA target module {t:?}; valid: {}",
                    valid_targets_line()
                );
            }
        }
        Ok(())
    }

    /// Check that every target matches a module of `model`.
    pub fn validate_for(&self, model: &ModelConfig) -> Result<()> {
        self.validate()?;
        let n_layer = model.n_layer();
        for t in &self.target_modules {
            if !(0..n_layer).any(|l| model.modules().iter().any(|&m| matches(t, l, m))) {
                bail!(
                    "LoRA target module {t:?} is not in this model ({}, {n_layer} layers); valid: {}",
                    model.family(),
                    model.target_names().join(", ")
                );
            }
        }
        Ok(())
    }

    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub fn scale(&self) -> f32 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f32).sqrt()
        } else {
            self.lora_alpha / self.r as f32
        }
    }

    /// Whether module `m` of block `layer` is adapted.
    pub fn targets(&self, layer: usize, m: Module) -> bool {
        self.target_modules.iter().any(|t| matches(t, layer, m))
    }

    /// The adapted modules' full names, sorted (what PEFT saves for `all-linear`).
    pub fn full_target_names(&self, model: &ModelConfig) -> Vec<String> {
        let mut v: Vec<String> = (0..model.n_layer())
            .flat_map(|l| {
                model
                    .modules()
                    .iter()
                    .filter(move |&&m| self.targets(l, m))
                    .map(move |m| m.full_name(l))
            })
            .collect();
        v.sort();
        v
    }
}

/// PEFT's rule: a target matches a module whose full name equals it or ends with "." + it;
/// `all-linear` matches every Linear of the blocks (the LM head is excluded as output layer).
fn matches(target: &str, layer: usize, m: Module) -> bool {
    if target == "all-linear" {
        return true;
    }
    let full = m.full_name(layer);
    full == target || full.ends_with(&format!(".{target}"))
}

/// PEFT's key prefix of an adapted module: `base_model.model.transformer.h.{i}.attn.c_attn`,
/// `base_model.model.model.layers.{i}.self_attn.q_proj`.
pub fn peft_prefix(s: &LoraSlot) -> String {
    format!("base_model.model.{}", s.module.full_name(s.layer))
}

/// The flat layout of all adapted modules.
#[derive(Clone, Debug)]
pub struct Layout {
    pub slots: Vec<LoraSlot>,
    /// Floats in the buffer (with alignment padding).
    pub len: usize,
    /// Trainable parameters (without padding).
    pub trainable: usize,
}

const ALIGN: usize = 64;

impl Layout {
    pub fn new(model: &ModelConfig, lora: &LoraConfig) -> Self {
        let mut slots = Vec::new();
        let mut off = 0;
        let mut trainable = 0;
        let align = |x: usize| x.div_ceil(ALIGN) * ALIGN;
        for layer in 0..model.n_layer() {
            for &module in model.modules() {
                if !lora.targets(layer, module) {
                    continue;
                }
                let (k_in, n_out) = model.module_dims(module);
                let a = off;
                let b = align(a + lora.r * k_in);
                off = align(b + n_out * lora.r);
                trainable += lora.r * (k_in + n_out);
                slots.push(LoraSlot {
                    layer,
                    module,
                    k_in,
                    n_out,
                    a,
                    b,
                });
            }
        }
        Self {
            slots,
            len: off.max(ALIGN),
            trainable,
        }
    }

    pub fn slot(&self, layer: usize, module: Module) -> Option<&LoraSlot> {
        self.slots
            .iter()
            .find(|s| s.layer == layer && s.module == module)
    }
}

/// A LoRA adapter held on the GPU for inference (eval, generate, the web app's Try tab).
pub struct GpuAdapter {
    pub config: LoraConfig,
    pub layout: Layout,
    pub params: Tensor,
}

impl GpuAdapter {
    /// Upload flat parameters (PEFT's tensors laid out by [`Layout`]).
    pub fn new(gpu: &Gpu, model: &ModelConfig, config: LoraConfig, params: &[f32]) -> Self {
        Self {
            layout: Layout::new(model, &config),
            params: gpu.upload_f32(params),
            config,
        }
    }

    /// The adapter as the forward passes take it (no dropout).
    pub fn as_ref(&self) -> AdapterRef<'_> {
        AdapterRef {
            slots: &self.layout.slots,
            params: &self.params,
            rank: self.config.r,
            scale: self.config.scale(),
            p_drop: 0.0,
            seed: 0,
        }
    }
}

/// PEFT's `print_trainable_parameters` line.
pub fn trainable_line(trainable: usize, base: usize) -> String {
    let all = trainable + base;
    format!(
        "trainable params: {} || all params: {} || trainable%: {:.4}",
        thousands(trainable),
        thousands(all),
        100.0 * trainable as f64 / all as f64
    )
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// PEFT's initialisation: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0, from `seed`.
pub fn init_params(layout: &Layout, r: usize, seed: u64) -> Vec<f32> {
    let mut p = vec![0.0f32; layout.len];
    let mut rng = crate::sample::Rng::new(seed);
    for s in &layout.slots {
        let bound = 1.0 / (s.k_in as f64).sqrt();
        for v in &mut p[s.a..s.a + r * s.k_in] {
            *v = ((rng.next_f64() * 2.0 - 1.0) * bound) as f32;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_small_c_attn_r8_prints_pefts_line() {
        let cfg = crate::model::Gpt2Config::preset_shape("gpt2").unwrap();
        let cfg = ModelConfig::from(cfg);
        let lora = LoraConfig {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            target_modules: vec!["c_attn".into()],
            use_rslora: false,
        };
        let layout = Layout::new(&cfg, &lora);
        assert_eq!(
            trainable_line(layout.trainable, cfg.num_params()),
            "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364"
        );
    }

    /// PEFT's lines for the Llama family with its default targets (q_proj, v_proj, r 8),
    /// as `print_trainable_parameters` prints them on the hub's configs.
    #[test]
    fn llama_family_defaults_print_pefts_line() {
        use crate::model::llama_config::LlamaConfig;
        let cases = [
            (
                "smollm2-135m",
                "trainable params: 460,800 || all params: 134,975,808 || trainable%: 0.3414",
            ),
            (
                "qwen2.5-0.5b",
                "trainable params: 540,672 || all params: 494,573,440 || trainable%: 0.1093",
            ),
        ];
        for (name, line) in cases {
            let cfg = ModelConfig::from(LlamaConfig::preset_shape(name).unwrap());
            let lora = LoraConfig {
                r: 8,
                lora_alpha: 16.0,
                lora_dropout: 0.0,
                target_modules: cfg.default_targets(),
                use_rslora: false,
            };
            lora.validate_for(&cfg).unwrap();
            let layout = Layout::new(&cfg, &lora);
            assert_eq!(
                trainable_line(layout.trainable, cfg.num_params()),
                line,
                "{name}"
            );
        }
    }

    #[test]
    fn c_proj_matches_attention_and_mlp_and_unknown_targets_list_valid_names() {
        let lora = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: vec!["c_proj".into()],
            use_rslora: false,
        };
        assert!(lora.targets(0, Module::AttnProj) && lora.targets(3, Module::MlpProj));
        assert!(!lora.targets(0, Module::CAttn));
        let full = LoraConfig {
            target_modules: vec!["transformer.h.1.mlp.c_fc".into()],
            ..lora.clone()
        };
        assert!(full.targets(1, Module::CFc) && !full.targets(0, Module::CFc));
        let model = |n_layer| {
            let c = crate::model::Gpt2Config::preset_shape("distilgpt2").unwrap();
            ModelConfig::from(crate::model::Gpt2Config { n_layer, ..c })
        };
        assert!(full.validate_for(&model(2)).is_ok() && full.validate_for(&model(1)).is_err());
        let bad = LoraConfig {
            target_modules: vec!["qproj".into()],
            ..lora.clone()
        };
        let e = bad.validate().unwrap_err().0;
        assert!(
            e.contains("qproj") && e.contains("c_attn, c_proj, c_fc, all-linear"),
            "{e}"
        );
        // A Llama name is a name, but not one of GPT-2's.
        let llama_name = LoraConfig {
            target_modules: vec!["q_proj".into()],
            ..lora
        };
        assert!(llama_name.validate().is_ok());
        let e = llama_name.validate_for(&model(2)).unwrap_err().0;
        assert!(e.contains("GPT-2") && e.contains("c_attn, c_proj"), "{e}");
    }
}

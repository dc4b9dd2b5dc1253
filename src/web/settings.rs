//! The training and sampling settings the page edits: the CLI's `train` flags with the same
//! defaults, parsed and checked in one place.

use wgtune::lora::LoraConfig;
use wgtune::train::schedule::Scheduler;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub rank: usize,
    pub alpha: f32,
    pub dropout: f32,
    pub targets: String,
    pub rslora: bool,
    pub lr: f32,
    pub scheduler: String,
    pub warmup_steps: usize,
    /// 0: run `epochs` epochs instead.
    pub max_steps: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub seq_len: usize,
    pub seed: u64,
    pub val_split: f32,
    /// Evaluate on the validation split every N steps (0: ten times per run).
    pub eval_every: usize,
    pub weight_decay: f32,
    pub max_grad_norm: f32,
    pub grad_checkpoint: bool,
    pub train_on_prompt: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: "c_attn".into(),
            rslora: false,
            lr: 2e-4,
            scheduler: "linear".into(),
            warmup_steps: 0,
            max_steps: 0,
            epochs: 3,
            batch_size: 4,
            grad_accum: 1,
            seq_len: 512,
            seed: 42,
            val_split: 0.1,
            eval_every: 0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            grad_checkpoint: false,
            train_on_prompt: false,
        }
    }
}

impl Settings {
    pub fn lora(&self) -> LoraConfig {
        LoraConfig {
            r: self.rank,
            lora_alpha: self.alpha,
            lora_dropout: self.dropout,
            target_modules: self
                .targets
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            use_rslora: self.rslora,
        }
    }

    pub fn scheduler(&self) -> Result<Scheduler, String> {
        self.scheduler.parse()
    }

    /// The sequence length used with a model of `n_positions` (the setting, capped).
    pub fn seq_len_for(&self, n_positions: usize) -> usize {
        self.seq_len.clamp(1, n_positions)
    }

    /// Everything a run needs that is wrong, as one message per problem.
    pub fn problems(&self, n_layer: usize) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = self.lora().validate_for(n_layer) {
            out.push(e.to_string());
        }
        if let Err(e) = self.scheduler() {
            out.push(e);
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            out.push(format!("learning rate {} must be in (0, 1]", self.lr));
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.seq_len == 0 {
            out.push(
                "batch size, gradient accumulation and sequence length must be at least 1".into(),
            );
        }
        if self.max_steps == 0 && self.epochs == 0 {
            out.push("set max steps or epochs above 0".into());
        }
        if !(0.0..1.0).contains(&self.val_split) {
            out.push(format!(
                "validation split {} must be in [0, 1)",
                self.val_split
            ));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            out.push("weight decay must be >= 0".into());
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm < 0.0 {
            out.push("max grad norm must be >= 0 (0 = no clipping)".into());
        }
        out
    }
}

/// Sampling settings of the Try section.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleSettings {
    pub max_new_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SampleSettings {
    fn default() -> Self {
        Self {
            max_new_tokens: 48,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 42,
        }
    }
}

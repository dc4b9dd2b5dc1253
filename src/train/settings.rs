//! The settings of a training run: one type with the `wgtune train` flags' names and
//! defaults. clap builds it from the command line (natively), the page's Settings section
//! edits it, and a checkpoint stores it, so that a resumed run can tell what changed.
//! Every check of a setting, and its error message, is written here once.

use serde::{Deserialize, Serialize};

use crate::bail;
use crate::data::Format;
use crate::error::Result;
use crate::lora::LoraConfig;
use crate::model::{ModelConfig, Quant};
use crate::train::OptimConfig;
use crate::train::schedule::Scheduler;

/// The sequence length used when `--seq-len` is not given (capped by the model's
/// n_positions).
pub const DEFAULT_SEQ_LEN: usize = 512;

/// How many validation batches an evaluation runs: a number, or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct BatchCap(pub Option<usize>);

impl BatchCap {
    pub const ALL: BatchCap = BatchCap(None);

    /// The first batches of `items` (in chunks of `batch`) this cap keeps.
    pub fn take<'a, T>(&self, items: &'a [T], batch: usize) -> &'a [T] {
        match self.0 {
            Some(n) => &items[..items.len().min(n.saturating_mul(batch))],
            None => items,
        }
    }
}

impl std::fmt::Display for BatchCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("all"),
        }
    }
}

impl std::str::FromStr for BatchCap {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(BatchCap::ALL),
            _ => match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(BatchCap(Some(n))),
                _ => Err(format!(
                    "{s:?} is not a number of batches (1 or more) or \"all\""
                )),
            },
        }
    }
}

impl From<BatchCap> for String {
    fn from(c: BatchCap) -> String {
        c.to_string()
    }
}

impl TryFrom<String> for BatchCap {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

/// Every `wgtune train` setting that is not a file or folder (those belong to the front
/// end: paths natively, picked files in the page). Field names are the flags' names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::Args))]
#[serde(default)]
pub struct TrainSettings {
    /// Base weight format: nf4 (QLoRA), nf4-dq, f16 or f32.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().quant))]
    #[serde(with = "as_text")]
    pub quant: Quant,
    /// Data format: auto, text, prompt-completion, messages or alpaca.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().format))]
    pub format: String,
    /// Fraction of the training data held out for validation.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, allow_negative_numbers = true))]
    pub val_split: Option<f32>,
    /// Tokens per sequence (longer examples are truncated); default min(512, n_positions).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, allow_negative_numbers = true, value_parser = count("seq_len")))]
    pub seq_len: Option<usize>,
    /// Concatenate examples into full --seq-len rows.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub packing: bool,
    /// Keep the file order.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub no_shuffle: bool,
    /// Include prompt tokens in the loss.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub train_on_prompt: bool,
    /// LoRA rank r.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().rank, allow_negative_numbers = true, value_parser = count("rank")))]
    pub rank: usize,
    /// LoRA alpha (scale alpha/r).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().alpha, allow_negative_numbers = true))]
    pub alpha: f32,
    /// LoRA dropout probability.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().dropout, allow_negative_numbers = true))]
    pub dropout: f32,
    /// LoRA targets (comma-separated): GPT-2 c_attn, c_proj, c_fc; Llama / Qwen2 q_proj, k_proj,
    /// v_proj, o_proj, gate_proj, up_proj, down_proj; all-linear, or full module names. Left
    /// out: the model's PEFT default (c_attn; q_proj,v_proj).
    #[cfg_attr(
        not(target_arch = "wasm32"),
        arg(long, value_delimiter = ',', default_value = "c_attn")
    )]
    pub targets: Vec<String>,
    /// Scale by alpha/sqrt(r) instead of alpha/r.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub rslora: bool,
    /// Peak learning rate.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().lr, allow_negative_numbers = true))]
    pub lr: f32,
    /// Learning-rate schedule after warmup: linear, cosine or constant.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().scheduler))]
    #[serde(with = "as_text")]
    pub scheduler: Scheduler,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().warmup_steps, allow_negative_numbers = true, value_parser = count("warmup_steps")))]
    pub warmup_steps: usize,
    /// AdamW's decoupled weight decay.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().weight_decay, allow_negative_numbers = true))]
    pub weight_decay: f32,
    /// Global gradient-norm clip (0 = off).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().max_grad_norm, allow_negative_numbers = true))]
    pub max_grad_norm: f32,
    /// Passes over the data (ignored when --max-steps is given).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().epochs, allow_negative_numbers = true, value_parser = count("epochs")))]
    pub epochs: usize,
    /// Optimizer steps to run.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, allow_negative_numbers = true, value_parser = count("max_steps")))]
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().batch_size, allow_negative_numbers = true, value_parser = count("batch_size")))]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().grad_accum, allow_negative_numbers = true, value_parser = count("grad_accum")))]
    pub grad_accum: usize,
    /// Keep only each layer's input and recompute activations in the backward pass.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub grad_checkpoint: bool,
    /// Seed of the LoRA init, the shuffle, the validation split and dropout.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().seed, allow_negative_numbers = true, value_parser = count_u64("seed")))]
    pub seed: u64,
    /// Validate every N steps and at the end (0: only at the end).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().eval_every, allow_negative_numbers = true, value_parser = count("eval_every")))]
    pub eval_every: usize,
    /// Validation batches per evaluation (of --batch-size sequences), or "all".
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().val_batches, allow_negative_numbers = true))]
    pub val_batches: BatchCap,
    /// Save a resumable checkpoint every N steps (0: never).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = defaults().save_every, allow_negative_numbers = true, value_parser = count("save_every")))]
    pub save_every: usize,
}

#[cfg(not(target_arch = "wasm32"))]
fn defaults() -> TrainSettings {
    TrainSettings::default()
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            quant: Quant::Nf4 {
                double_quant: false,
            },
            format: "auto".into(),
            val_split: None,
            seq_len: None,
            packing: false,
            no_shuffle: false,
            train_on_prompt: false,
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: vec!["c_attn".into()],
            rslora: false,
            lr: 2e-4,
            scheduler: Scheduler::Linear,
            warmup_steps: 0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            epochs: 3,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            grad_checkpoint: false,
            seed: 42,
            eval_every: 0,
            val_batches: BatchCap(Some(25)),
            save_every: 0,
        }
    }
}

/// The settings that only change how long a run is, how often it reports or saves, or how
/// much memory it takes: a resumed run may change them and still continue exactly.
pub const RESUMABLE_CHANGES: [&str; 6] = [
    "max_steps",
    "epochs",
    "eval_every",
    "val_batches",
    "save_every",
    "grad_checkpoint",
];

/// The LoRA settings, which an adapter to continue from fixes.
pub const LORA_SETTINGS: [&str; 5] = ["rank", "alpha", "dropout", "targets", "rslora"];

/// The flag of a setting, for messages: `batch_size` → `--batch-size`.
pub fn flag(name: &str) -> String {
    format!("--{}", name.replace('_', "-"))
}

/// Which settings the user gave explicitly (the others hold defaults, which an adapter or
/// checkpoint to continue from may replace).
#[derive(Clone, Debug)]
pub enum Given {
    /// Every setting is the user's choice (the page shows them all).
    All,
    /// These settings, by field name (the flags on the command line).
    Only(Vec<String>),
}

impl Given {
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Given::All => true,
            Given::Only(v) => v.iter().any(|n| n == name),
        }
    }
}

/// The smallest value of a whole-number setting (`rank`'s is LoRA's, checked there too).
fn count_min(name: &str) -> i128 {
    match name {
        "batch_size" | "grad_accum" | "seq_len" | "max_steps" | "rank" => 1,
        _ => 0,
    }
}

/// The range error of a whole-number setting below its minimum: the same words for a 0
/// that [`TrainSettings::check`] finds and a negative number on the command line.
fn below_min(name: &str, got: impl std::fmt::Display) -> String {
    match count_min(name) {
        0 => format!("{} must be 0 or more, got {got}", flag(name)),
        min => format!("{} must be at least {min}, got {got}", flag(name)),
    }
}

/// A whole-number setting from its text: a number below the setting's minimum (a negative one
/// included, which clap would otherwise take for a flag: "unexpected argument '-1'") gets
/// the setting's own range error.
pub fn parse_count(name: &str, text: &str) -> std::result::Result<u64, String> {
    let v: i128 = text
        .trim()
        .parse()
        .map_err(|_| format!("{} {text:?} is not a whole number", flag(name)))?;
    if v < count_min(name) {
        return Err(below_min(name, v));
    }
    u64::try_from(v).map_err(|_| format!("{} {v} is too large", flag(name)))
}

/// clap's parser for a `usize` setting (see [`parse_count`]).
#[cfg(not(target_arch = "wasm32"))]
fn count(name: &'static str) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone {
    move |text| {
        let v = parse_count(name, text)?;
        usize::try_from(v).map_err(|_| format!("{} {v} is too large", flag(name)))
    }
}

/// clap's parser for a `u64` setting (see [`parse_count`]).
#[cfg(not(target_arch = "wasm32"))]
fn count_u64(name: &'static str) -> impl Fn(&str) -> std::result::Result<u64, String> + Clone {
    move |text| parse_count(name, text)
}

impl TrainSettings {
    /// Check every setting on its own (no model or data needed yet).
    pub fn check(&self) -> Result<()> {
        self.data_format()?;
        for (name, v) in [
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("seq_len", self.seq_len.unwrap_or(1)),
            ("max_steps", self.max_steps.unwrap_or(1)),
        ] {
            if v == 0 {
                bail!("{}", below_min(name, 0));
            }
        }
        if self.max_steps.is_none() && self.epochs == 0 {
            bail!("--epochs must be at least 1 (or give --max-steps)");
        }
        if self.lr.is_nan() || self.lr <= 0.0 || self.lr > 1.0 {
            bail!("--lr {} is out of range (0, 1]", self.lr);
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            bail!("--weight-decay must be >= 0, got {}", self.weight_decay);
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm < 0.0 {
            bail!(
                "--max-grad-norm must be a number >= 0 (0 turns clipping off), got {}",
                self.max_grad_norm
            );
        }
        if let Some(s) = self.val_split
            && !(s > 0.0 && s < 1.0)
        {
            bail!("--val-split must be between 0 and 1 (exclusive), got {s}");
        }
        self.lora().validate()
    }

    /// The data format to parse with (`None`: detect it).
    pub fn data_format(&self) -> Result<Option<Format>> {
        match self.format.as_str() {
            "auto" => Ok(None),
            f => Ok(Some(
                f.parse::<Format>()
                    .map_err(|e| crate::err!("--format: {e}"))?,
            )),
        }
    }

    /// The sequence length for a model: `--seq-len`, or min(512, its context length).
    pub fn seq_len_for(&self, cfg: &ModelConfig) -> Result<usize> {
        let n = cfg.n_positions();
        match self.seq_len {
            Some(t) if t > n => bail!(
                "--seq-len {t} exceeds the model's context of {n} positions: use --seq-len {n} or less"
            ),
            Some(t) => Ok(t),
            None => Ok(DEFAULT_SEQ_LEN.min(n)),
        }
    }

    /// A fresh adapter's targets on `model`: `--targets` as given, else the family's default
    /// (PEFT's: `c_attn` for GPT-2, `q_proj,v_proj` for Llama and Qwen2).
    pub fn default_targets_for(&mut self, model: &ModelConfig, given: &Given) {
        if !given.contains("targets") {
            self.targets = model.default_targets();
        }
    }

    /// The LoRA configuration of a fresh adapter.
    pub fn lora(&self) -> LoraConfig {
        LoraConfig {
            r: self.rank,
            lora_alpha: self.alpha,
            lora_dropout: self.dropout,
            target_modules: self.targets.clone(),
            use_rslora: self.rslora,
        }
    }

    /// Take the LoRA settings of an adapter to continue from. A LoRA setting the user gave
    /// that the adapter contradicts is an error naming the flag.
    pub fn adopt_lora(
        &mut self,
        lora: &LoraConfig,
        given: &Given,
        model: &ModelConfig,
        what: &str,
    ) -> Result<()> {
        let mine = self.lora();
        let same_targets = mine.full_target_names(model) == lora.full_target_names(model);
        let differs = [
            ("rank", mine.r != lora.r, lora.r.to_string()),
            (
                "alpha",
                mine.lora_alpha != lora.lora_alpha,
                lora.lora_alpha.to_string(),
            ),
            (
                "dropout",
                mine.lora_dropout != lora.lora_dropout,
                lora.lora_dropout.to_string(),
            ),
            ("targets", !same_targets, lora.target_modules.join(",")),
            (
                "rslora",
                mine.use_rslora != lora.use_rslora,
                lora.use_rslora.to_string(),
            ),
        ];
        let clash: Vec<String> = differs
            .iter()
            .filter(|(name, d, _)| *d && given.contains(name))
            .map(|(name, _, theirs)| format!("{} (it has {theirs})", flag(name)))
            .collect();
        if !clash.is_empty() {
            bail!(
                "{what} fixes the LoRA settings, and it contradicts {}: drop {} or start a fresh adapter",
                clash.join(", "),
                if clash.len() == 1 {
                    "that flag"
                } else {
                    "those flags"
                }
            );
        }
        self.rank = lora.r;
        self.alpha = lora.lora_alpha;
        self.dropout = lora.lora_dropout;
        self.targets = lora.target_modules.clone();
        self.rslora = lora.use_rslora;
        Ok(())
    }

    /// Take a checkpoint's settings for a resumed run. A setting that would break exact
    /// continuation and that the user changed is an error naming it; the settings of
    /// [`RESUMABLE_CHANGES`] the user gave are kept, all others come from the checkpoint.
    pub fn adopt_checkpoint(
        &mut self,
        saved: &TrainSettings,
        given: &Given,
        what: &str,
    ) -> Result<()> {
        let (mine, theirs) = (as_map(self), as_map(saved));
        let mut clash = Vec::new();
        for (name, v) in &mine {
            let old = theirs.get(name).unwrap_or(&serde_json::Value::Null);
            if v != old && given.contains(name) && !RESUMABLE_CHANGES.contains(&name.as_str()) {
                clash.push(format!(
                    "{} {} (the run used {})",
                    flag(name),
                    show(v),
                    show(old)
                ));
            }
        }
        if !clash.is_empty() {
            bail!(
                "{what}: resuming needs the settings the run started with, and {} changed: drop {} or start a fresh run",
                clash.join(", "),
                if clash.len() == 1 {
                    "that flag"
                } else {
                    "those flags"
                }
            );
        }
        let mut merged = theirs;
        for name in RESUMABLE_CHANGES {
            if given.contains(name) {
                merged.insert(name.to_string(), mine[name].clone());
            }
        }
        *self = serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| crate::err!("{what}: the saved settings cannot be read: {e}"))?;
        Ok(())
    }

    /// AdamW and clipping as these settings say.
    pub fn optim(&self) -> OptimConfig {
        OptimConfig {
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
            ..OptimConfig::default()
        }
    }
}

fn as_map(s: &TrainSettings) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(s).expect("settings serialize") {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("settings are a struct"),
    }
}

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(not set)".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.iter().map(show).collect::<Vec<_>>().join(","),
        // An f32 setting, as typed (0.001, not 0.0010000000474974513).
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f as f32 as f64 == f {
                (f as f32).to_string()
            } else {
                f.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// Serde through a type's text form (`Display` / `FromStr`), as on the command line.
mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: std::str::FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    /// A GPT-2 of two blocks.
    fn two_blocks() -> ModelConfig {
        let c = crate::model::Gpt2Config::preset_shape("distilgpt2").unwrap();
        ModelConfig::from(crate::model::Gpt2Config { n_layer: 2, ..c })
    }

    use super::*;

    #[test]
    fn settings_round_trip_through_json_with_the_flag_names() {
        let s = TrainSettings {
            val_batches: BatchCap::ALL,
            scheduler: Scheduler::Cosine,
            ..Default::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["val_batches"], "all");
        assert_eq!(json["scheduler"], "cosine");
        assert_eq!(json["quant"], "nf4");
        assert_eq!(serde_json::from_value::<TrainSettings>(json).unwrap(), s);
        // Missing fields take the defaults (a page's stored settings from an older version).
        let partial: TrainSettings = serde_json::from_str(r#"{"rank": 4}"#).unwrap();
        assert_eq!(
            partial,
            TrainSettings {
                rank: 4,
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_resumed_run_refuses_breaking_changes_and_keeps_harmless_ones() {
        let saved = TrainSettings {
            lr: 1e-3,
            ..Default::default()
        };
        // Not given on the command line: taken from the checkpoint.
        let mut s = TrainSettings::default();
        s.adopt_checkpoint(&saved, &Given::Only(vec![]), "ck")
            .unwrap();
        assert_eq!(s.lr, 1e-3);
        // Given and different: refused, naming the flag.
        let mut s = TrainSettings {
            lr: 2e-3,
            batch_size: 2,
            ..Default::default()
        };
        let e = s.adopt_checkpoint(&saved, &Given::All, "ck").unwrap_err().0;
        assert!(e.contains("--lr 0.002 (the run used 0.001)"), "{e}");
        assert!(e.contains("--batch-size 2 (the run used 4)"), "{e}");
        // Harmless changes are kept.
        let mut s = TrainSettings {
            lr: 1e-3,
            max_steps: Some(99),
            save_every: 5,
            ..Default::default()
        };
        s.adopt_checkpoint(&saved, &Given::All, "ck").unwrap();
        assert_eq!((s.max_steps, s.save_every, s.lr), (Some(99), 5, 1e-3));
    }

    /// Every setting, changed on its own: a resume refuses it, naming its flag, unless it is
    /// one of [`RESUMABLE_CHANGES`], which it keeps. A new setting must be added here.
    #[test]
    fn a_resume_refuses_each_breaking_setting_by_name_and_keeps_each_harmless_one() {
        let changed: &[(&str, serde_json::Value)] = &[
            ("quant", "f32".into()),
            ("format", "text".into()),
            ("val_split", 0.2.into()),
            ("seq_len", 64.into()),
            ("packing", true.into()),
            ("no_shuffle", true.into()),
            ("train_on_prompt", true.into()),
            ("rank", 4.into()),
            ("alpha", 8.0.into()),
            ("dropout", 0.1.into()),
            ("targets", serde_json::json!(["c_fc"])),
            ("rslora", true.into()),
            ("lr", 1e-3.into()),
            ("scheduler", "cosine".into()),
            ("warmup_steps", 5.into()),
            ("weight_decay", 0.01.into()),
            ("max_grad_norm", 0.5.into()),
            ("epochs", 5.into()),
            ("max_steps", 100.into()),
            ("batch_size", 2.into()),
            ("grad_accum", 2.into()),
            ("grad_checkpoint", true.into()),
            ("seed", 7.into()),
            ("eval_every", 10.into()),
            ("val_batches", "all".into()),
            ("save_every", 10.into()),
        ];
        let saved = TrainSettings::default();
        let keys = as_map(&saved).keys().cloned().collect::<Vec<_>>();
        for key in &keys {
            assert!(
                changed.iter().any(|(k, _)| k == key),
                "setting {key} has no case here"
            );
        }
        for (key, value) in changed {
            let mut m = as_map(&saved);
            assert!(m.insert(key.to_string(), value.clone()).is_some(), "{key}");
            let mine: TrainSettings = serde_json::from_value(serde_json::Value::Object(m)).unwrap();
            assert_ne!(mine, saved, "{key} did not change");
            let mut s = mine.clone();
            let r = s.adopt_checkpoint(&saved, &Given::All, "ck");
            if RESUMABLE_CHANGES.contains(key) {
                r.unwrap_or_else(|e| panic!("{key}: {e}"));
                assert_eq!(s, mine, "{key}: the harmless change is kept");
            } else {
                let e = r.expect_err(key).0;
                assert!(e.contains(&flag(key)), "{key}: {e}");
                // Not given on the command line: the checkpoint's value, no error.
                let mut s = mine.clone();
                s.adopt_checkpoint(&saved, &Given::Only(Vec::new()), "ck")
                    .unwrap();
                assert_eq!(s, saved, "{key}");
            }
        }
    }

    #[test]
    fn an_adapter_fixes_the_lora_settings() {
        let lora = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: vec!["c_attn".into()],
            use_rslora: false,
        };
        let mut s = TrainSettings::default();
        let model = two_blocks();
        s.adopt_lora(&lora, &Given::Only(vec!["lr".into()]), &model, "a")
            .unwrap();
        assert_eq!((s.rank, s.alpha, s.dropout), (4, 8.0, 0.0));
        let mut s = TrainSettings {
            rank: 16,
            ..Default::default()
        };
        let e = s
            .adopt_lora(
                &lora,
                &Given::Only(vec!["rank".into()]),
                &model,
                "adapter a",
            )
            .unwrap_err()
            .0;
        assert!(e.contains("--rank (it has 4)"), "{e}");
    }

    #[test]
    fn seq_len_defaults_to_the_model_and_refuses_only_an_explicit_excess() {
        let cfg = crate::model::Gpt2Config::preset_shape("distilgpt2").unwrap();
        let small = ModelConfig::from(crate::model::Gpt2Config {
            n_positions: 128,
            ..cfg
        });
        let s = TrainSettings::default();
        assert_eq!(s.seq_len_for(&small).unwrap(), 128);
        let s = TrainSettings {
            seq_len: Some(512),
            ..Default::default()
        };
        assert!(
            s.seq_len_for(&small)
                .unwrap_err()
                .0
                .contains("--seq-len 512")
        );
    }
}

//! The flags of `wgtune train`, and the checks that need no file.

use std::path::PathBuf;

use clap::Args;
use wgtune::bail;
use wgtune::error::Result;
use wgtune::lora::LoraConfig;
use wgtune::model::Quant;
use wgtune::train::schedule::Scheduler;

#[derive(Args)]
pub struct TrainArgs {
    /// Base model: a local Hugging Face GPT-2 directory or a hub id.
    #[arg(long, default_value = "gpt2")]
    pub model: String,
    /// Training data (JSONL); default: the small instruction set in public/examples/.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where the adapter (and checkpoint-N/ directories) go.
    #[arg(long, default_value = "wgtune-out")]
    pub out: PathBuf,
    /// Replace an adapter already in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Validation data (JSONL).
    #[arg(long, conflicts_with = "val_split")]
    pub val_data: Option<PathBuf>,
    /// Fraction of the training data held out for validation.
    #[arg(long)]
    pub val_split: Option<f32>,
    /// Base weight format: nf4 (QLoRA), nf4-dq, f16 or f32.
    #[arg(long, default_value = "nf4")]
    pub quant: Quant,
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f32,
    #[arg(long, default_value_t = 0.05)]
    pub dropout: f32,
    /// LoRA targets: c_attn, c_proj, c_fc or all-linear (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "c_attn")]
    pub targets: Vec<String>,
    /// Scale by alpha/sqrt(r) instead of alpha/r.
    #[arg(long)]
    pub rslora: bool,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f32,
    #[arg(long, default_value = "linear")]
    pub scheduler: Scheduler,
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Passes over the data (ignored when --max-steps is given).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Optimizer steps to run.
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Tokens per sequence (longer examples are truncated); at most the model's n_positions.
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Global gradient-norm clip (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep the file order.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Concatenate examples into full --seq-len rows.
    #[arg(long)]
    pub packing: bool,
    /// Keep only each layer's input and recompute activations in the backward pass.
    #[arg(long)]
    pub grad_checkpoint: bool,
    /// Include prompt tokens in the loss.
    #[arg(long)]
    pub train_on_prompt: bool,
    /// Start from this PEFT adapter.
    #[arg(long, conflicts_with = "resume")]
    pub init_adapter: Option<PathBuf>,
    /// Continue from a checkpoint directory (written by --save-every).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Write one JSON object per optimizer step to this file.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Validate every N steps (and at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Save a resumable checkpoint every N steps.
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// auto, text, prompt-completion, messages or alpaca.
    #[arg(long, default_value = "auto")]
    pub format: String,
}

pub(super) fn check(a: &TrainArgs) -> Result<()> {
    let positive = [
        ("--batch-size", a.batch_size),
        ("--grad-accum", a.grad_accum),
        ("--seq-len", a.seq_len),
        ("--epochs", a.epochs.max(a.max_steps.map_or(0, |_| 1))),
    ];
    for (flag, v) in positive {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if a.max_steps == Some(0) {
        bail!("--max-steps must be at least 1");
    }
    if a.lr.is_nan() || a.lr <= 0.0 || a.lr > 1.0 {
        bail!("--lr {} is out of range (0, 1]", a.lr);
    }
    if a.weight_decay.is_nan() || a.weight_decay < 0.0 {
        bail!("--weight-decay must be >= 0");
    }
    if a.max_grad_norm.is_nan() {
        bail!("--max-grad-norm must be a number (0 turns clipping off)");
    }
    if a.out.exists() && !a.out.is_dir() {
        bail!(
            "--out {} is a file; pass a directory for the adapter",
            a.out.display()
        );
    }
    if let Some(m) = &a.metrics
        && let Some(parent) = m.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        bail!(
            "--metrics {}: the directory {} does not exist",
            m.display(),
            parent.display()
        );
    }
    if a.resume.is_none() && a.init_adapter.is_none() {
        // The LoRA flags are checked before any file is read (targets against the model's
        // layers later, once config.json is known).
        fresh_lora(a).validate()?;
    }
    if let Some(s) = a.val_split
        && !(s > 0.0 && s < 1.0)
    {
        bail!("--val-split must be between 0 and 1 (exclusive), got {s}");
    }
    Ok(())
}

/// The LoRA settings of a fresh adapter from the flags.
pub(super) fn fresh_lora(a: &TrainArgs) -> LoraConfig {
    LoraConfig {
        r: a.rank,
        lora_alpha: a.alpha,
        lora_dropout: a.dropout,
        target_modules: a.targets.clone(),
        use_rslora: a.rslora,
    }
}

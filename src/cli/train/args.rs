//! The flags of `wgtune train`: files and folders here, every other setting in the core's
//! [`TrainSettings`] (flattened in, so the flags and defaults are written once).

use std::path::PathBuf;

use clap::Args;
use wgtune::bail;
use wgtune::error::Result;
use wgtune::train::settings::TrainSettings;

#[derive(Args)]
pub struct TrainArgs {
    /// Base model: a local Hugging Face directory (GPT-2, Llama, Qwen2) or a hub id (gpt2, smollm2-135m, qwen2.5-0.5b-instruct, llama-3.2-1b, or any owner/name).
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
    /// Start from this PEFT adapter (ours or PEFT's); it fixes the LoRA settings.
    #[arg(long, conflicts_with = "resume")]
    pub init_adapter: Option<PathBuf>,
    /// Continue from a checkpoint directory (written by --save-every or on an interrupt).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Write one JSON object per optimizer step to this file.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    #[command(flatten)]
    pub settings: TrainSettings,
}

/// The checks on the paths that need no file read.
pub(super) fn check_paths(a: &TrainArgs) -> Result<()> {
    if a.out.exists() && !a.out.is_dir() {
        bail!(
            "--out {} is a file; pass a directory for the adapter",
            a.out.display()
        );
    }
    if wgtune::adapter::holds_adapter(&a.out) && !a.overwrite && a.resume.is_none() {
        bail!(
            "{} already holds an adapter; pass --overwrite to replace it, or choose another --out",
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
    Ok(())
}

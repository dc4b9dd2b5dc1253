//! `wgtune eval`: mean token loss, perplexity and token count over a JSONL file, as JSON.

use std::path::PathBuf;

use clap::Args;
use wgtune::data;
use wgtune::error::Result;
use wgtune::model::Quant;
use wgtune::model::eval::{EvalLoss, eval_loss};
use wgtune::train::settings::BatchCap;

#[derive(Args)]
pub struct EvalArgs {
    /// Model: a local Hugging Face directory (GPT-2, Llama, Qwen2) or a hub id (gpt2, qwen2.5-0.5b, openai-community/gpt2, ...).
    #[arg(long, default_value = "gpt2")]
    pub model: String,
    /// A PEFT LoRA adapter directory to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// JSONL file (text, prompt-completion, messages or alpaca lines).
    #[arg(long)]
    pub data: PathBuf,
    /// Base weight format: nf4, nf4-dq (double quantization), f16 or f32.
    #[arg(long, default_value = "nf4")]
    pub quant: Quant,
    /// Tokens per sequence (longer lines are truncated); default the model's n_positions.
    #[arg(long, allow_negative_numbers = true, value_parser = super::count("seq_len"))]
    pub seq_len: Option<usize>,
    /// Sequences per GPU batch.
    #[arg(long, default_value_t = 8, allow_negative_numbers = true, value_parser = super::count("batch_size"))]
    pub batch_size: usize,
    /// Data format; auto detects it from the first line.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Count the prompt tokens in the loss too.
    #[arg(long)]
    pub train_on_prompt: bool,
    /// Evaluate only the first N batches of --batch-size sequences (as `train
    /// --val-batches`), or "all".
    #[arg(long, default_value_t = BatchCap::ALL, allow_negative_numbers = true)]
    pub val_batches: BatchCap,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let format = super::data_format(&a.format)?;
    if a.batch_size == 0 {
        wgtune::bail!("--batch-size must be at least 1");
    }
    // Everything that can be checked on the host is, before a GPU device is opened.
    let files = super::open_model(&a.model)?;
    let seq_len = super::seq_len(a.seq_len, &files.config)?;
    let dataset = data::read_jsonl(&a.data, format)?;
    let super::Inference {
        gpu,
        model,
        adapter,
    } = super::open_inference(&a.model, &files, a.adapter.as_deref(), a.quant)?;
    let tok = &files.tokenizer;
    let adapter_ref = adapter.as_ref().map(|x| x.as_ref());
    let settings = wgtune::train::settings::TrainSettings {
        train_on_prompt: a.train_on_prompt,
        ..Default::default()
    };
    let prep = super::prepare_config(&files, &settings, seq_len)?;
    let eos = prep.eos;
    let rows = a.val_batches.take(&dataset.rows, a.batch_size).len();
    let examples = (0..rows)
        .map(|i| wgtune::train::prepare::example(&dataset, i, tok, &prep))
        .collect::<wgtune::error::Result<Vec<_>>>()?;
    let EvalLoss { loss, tokens } = pollster::block_on(eval_loss(
        &gpu,
        model.as_ref(),
        adapter_ref.as_ref(),
        &examples,
        a.batch_size,
        eos,
    ))
    .map_err(|e| wgtune::err!("{}: {e}", a.data.display()))?;
    // The weights are checked when they load, so this takes an overflow in the arithmetic
    // (an adapter whose values are finite but huge); JSON has no NaN, and `"loss": null` with
    // exit status 0 would read as a result.
    if !loss.is_finite() {
        wgtune::bail!(
            "{}: the loss over {tokens} tokens came out {loss}: the model{} overflows f32 on this data",
            a.data.display(),
            if a.adapter.is_some() {
                " with this adapter (trained with too high an --lr?)"
            } else {
                ""
            }
        );
    }
    let out = serde_json::json!({
        "loss": loss,
        "perplexity": loss.exp(),
        "tokens": tokens,
        "sequences": examples.len(),
        "format": dataset.format.name(),
        "model": a.model,
        "adapter": a.adapter.as_ref().map(|p| p.display().to_string()),
        "quant": a.quant.to_string(),
    });
    println!("{out}");
    Ok(())
}

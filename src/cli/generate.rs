//! `wgtune generate`: prompt → streamed text, with a KV cache on the GPU.

use std::io::Write;

use clap::Args;
use wgtune::error::Result;
use wgtune::model::Quant;
use wgtune::model::generate::{GenerateConfig, generate_ids};
use wgtune::sample::Sampling;

#[derive(Args)]
pub struct GenerateArgs {
    /// Model: a local Hugging Face directory (GPT-2, Llama, Qwen2) or a hub id.
    #[arg(long, default_value = "gpt2")]
    pub model: String,
    /// A PEFT LoRA adapter directory to apply.
    #[arg(long)]
    pub adapter: Option<std::path::PathBuf>,
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = super::count("max_new_tokens"))]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = super::count("top_k"))]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub top_p: f32,
    #[arg(long, default_value_t = 42, allow_negative_numbers = true, value_parser = |t: &str| wgtune::train::settings::parse_count("seed", t))]
    pub seed: u64,
    /// Base weight format: nf4, nf4-dq, f16 or f32.
    #[arg(long, default_value = "nf4")]
    pub quant: Quant,
    /// Use the prompt as raw text. Otherwise a Llama-family model with a chat template gets
    /// the prompt as one user message, rendered with the template and its generation prompt
    /// (as mlx-lm's generate does); GPT-2 always takes raw text.
    #[arg(long)]
    pub ignore_chat_template: bool,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let temperature_ok = a.temperature >= 0.0; // false for NaN too
    let top_p_ok = a.top_p > 0.0 && a.top_p <= 1.0;
    if !temperature_ok || !top_p_ok {
        wgtune::bail!("--temperature must be >= 0 and --top-p in (0, 1]");
    }
    // Everything that can be checked on the host is, before a GPU device is opened.
    let files = super::open_model(&a.model)?;
    let super::Inference {
        gpu,
        model,
        adapter,
    } = super::open_inference(&a.model, &files, a.adapter.as_deref(), a.quant)?;
    let tok = &files.tokenizer;
    let adapter_ref = adapter.as_ref().map(|x| x.as_ref());
    let ids = prompt_ids(&files, &a.prompt, a.ignore_chat_template)?;
    let cfg = GenerateConfig {
        max_new_tokens: a.max_new_tokens,
        sampling: Sampling {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
        },
        seed: a.seed,
    };
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", a.prompt);
    let _ = out.flush();
    pollster::block_on(generate_ids(
        &gpu,
        model.as_ref(),
        tok,
        adapter_ref.as_ref(),
        ids,
        &cfg,
        |piece| {
            let _ = write!(out, "{piece}");
            let _ = out.flush();
        },
    ))?;
    let _ = writeln!(out);
    Ok(())
}

/// The prompt's ids: rendered as a user message with the model's chat template (the Llama
/// family, unless `raw`), else tokenized as transformers' `tokenizer(prompt)`.
fn prompt_ids(files: &wgtune::model::ModelFiles, prompt: &str, raw: bool) -> Result<Vec<u32>> {
    let template = match (&files.config, raw) {
        (wgtune::model::ModelConfig::Llama(_), false) => {
            wgtune::chat::ChatTemplate::from_dir(&files.dir)?
        }
        _ => None,
    };
    wgtune::model::generate::prompt_ids(&files.tokenizer, template.as_ref(), prompt)
}

//! `wgtune compare`: the base model against base + adapter on the first examples of a JSONL
//! file: each answer's loss under both, both greedy continuations, and a summary line.

use std::path::PathBuf;

use std::io::IsTerminal;

use clap::Args;
use wgtune::data;
use wgtune::error::Result;
use wgtune::inspect::compare::{Comparison, compare, greedy};
use wgtune::model::Quant;

#[derive(Args)]
pub struct CompareArgs {
    /// Model: a local Hugging Face directory (GPT-2, Llama, Qwen2) or a hub id.
    #[arg(long, default_value = "gpt2")]
    pub model: String,
    /// PEFT adapter directory.
    #[arg(long)]
    pub adapter: PathBuf,
    /// JSONL file (text, prompt-completion, messages or alpaca lines).
    #[arg(long)]
    pub data: PathBuf,
    /// Compare the first N examples.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// Tokens each generation may add.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Base weight format: nf4, nf4-dq, f16 or f32.
    #[arg(long, default_value = "nf4")]
    pub quant: Quant,
    /// Tokens per example (longer lines are truncated); default the model's n_positions.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Data format; auto detects it from the first line.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CompareArgs) -> Result<()> {
    let format = super::data_format(&a.format)?;
    if a.n == 0 {
        wgtune::bail!("--n must be at least 1");
    }
    let files = super::open_model(&a.model)?;
    let seq_len = super::seq_len(a.seq_len, &files.config)?;
    let dataset = data::read_jsonl(&a.data, format)?;
    let super::Inference {
        gpu,
        model,
        adapter,
    } = super::open_inference(&a.model, &files, Some(&a.adapter), a.quant)?;
    let adapter = adapter.expect("an adapter was given");
    // Lines become examples as `wgtune train` and `wgtune eval` make them.
    let prep = super::prepare_config(&files, &Default::default(), seq_len)?;
    let rows: Vec<usize> = (0..a.n.min(dataset.rows.len())).collect();
    let c = pollster::block_on(compare(
        &gpu,
        model.as_ref(),
        &files.tokenizer,
        &adapter.as_ref(),
        &dataset,
        &rows,
        &prep,
        &greedy(a.max_new_tokens),
        |done, total| {
            if !std::io::stderr().is_terminal() {
            } else if done < total {
                eprint!("\rcomparing example {} of {total}…", done + 1);
            } else {
                eprintln!();
            }
        },
    ))
    .map_err(|e| wgtune::err!("{}: {e}", a.data.display()))?;
    if c.rows.is_empty() {
        wgtune::bail!(
            "{}: none of the first {} lines has a trained token within --seq-len {seq_len}",
            a.data.display(),
            rows.len()
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&c).expect("a comparison serializes")
        );
    } else {
        print!("{}", table(&c));
    }
    Ok(())
}

/// Text on one line, at most `max` characters: its start, or with `tail` its end (a
/// prompt's instruction comes last).
fn one_line(s: &str, max: usize, tail: bool) -> String {
    let flat: String = s.chars().map(|c| if c == '\n' { '⏎' } else { c }).collect();
    let flat: Vec<char> = flat.trim().chars().collect();
    if flat.len() <= max {
        flat.into_iter().collect()
    } else if tail {
        "…".to_string() + &flat[flat.len() - max..].iter().collect::<String>()
    } else {
        flat[..max].iter().collect::<String>() + "…"
    }
}

/// A generation on one line; an empty one says why.
fn output(s: &str) -> String {
    if s.is_empty() {
        EMPTY_OUTPUT.to_string()
    } else {
        one_line(s, 100, false)
    }
}

/// What an empty continuation means.
const EMPTY_OUTPUT: &str = "(nothing: the first token was EOS)";

fn table(c: &Comparison) -> String {
    let mut out = String::new();
    for r in &c.rows {
        let delta = r.tuned_loss - r.base_loss;
        out += &format!(
            "line {}: loss base {:.4} -> tuned {:.4} ({delta:+.4}) over {} tokens\n",
            r.line, r.base_loss, r.tuned_loss, r.tokens
        );
        out += &format!("  prompt:    {}\n", one_line(&r.prompt, 100, true));
        out += &format!("  reference: {}\n", one_line(&r.reference, 100, false));
        out += &format!("  base:      {}\n", output(&r.base_output));
        out += &format!("  tuned:     {}\n", output(&r.tuned_output));
    }
    out + &c.summary() + "\n"
}

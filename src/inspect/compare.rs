//! The base model against base + adapter on a few examples: each example's loss of its
//! reference answer (the trained tokens, exactly as `wgtune eval` counts them) under both,
//! and both models' greedy continuations of its prompt.

use serde::{Deserialize, Serialize};

use crate::chat::ChatMessage;
use crate::data::{self, Dataset, Format, IGNORE_INDEX};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::eval::eval_loss;
use crate::model::generate::{GenerateConfig, generate_ids};
use crate::model::{AdapterRef, ModelRef};
use crate::sample::Sampling;
use crate::tokenizer::Tokenizer;
use crate::train::prepare::{PrepareConfig, example};

/// Tokens of a plain-text line (no prompt part) given as the prompt: its first half, at most
/// this many.
const TEXT_PROMPT_TOKENS: usize = 32;

/// One example, both ways.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareRow {
    /// 1-based line of the data file.
    pub line: usize,
    /// What both models continue: the untrained part of the line (for plain text, its start).
    pub prompt: String,
    /// The line's trained part: the answer whose loss is measured.
    pub reference: String,
    /// Tokens the losses count.
    pub tokens: usize,
    pub base_loss: f64,
    pub tuned_loss: f64,
    pub base_output: String,
    pub tuned_output: String,
}

/// A comparison over several examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub rows: Vec<CompareRow>,
    /// Token-weighted mean losses over all rows (what `wgtune eval` reports on them).
    pub base_loss: f64,
    pub tuned_loss: f64,
    pub tokens: usize,
    /// Lines whose loss fell with the adapter, and those where it rose.
    pub better: Vec<usize>,
    pub worse: Vec<usize>,
}

impl Comparison {
    /// The comparison of these rows: token-weighted means, better and worse lines.
    pub fn of_rows(rows: Vec<CompareRow>) -> Self {
        let tokens: usize = rows.iter().map(|r| r.tokens).sum();
        let mean = |f: fn(&CompareRow) -> f64| {
            rows.iter().map(|r| f(r) * r.tokens as f64).sum::<f64>() / tokens.max(1) as f64
        };
        let lines = |keep: fn(&CompareRow) -> bool| -> Vec<usize> {
            rows.iter().filter(|r| keep(r)).map(|r| r.line).collect()
        };
        Self {
            base_loss: mean(|r| r.base_loss),
            tuned_loss: mean(|r| r.tuned_loss),
            tokens,
            better: lines(|r| r.tuned_loss < r.base_loss),
            worse: lines(|r| r.tuned_loss > r.base_loss),
            rows,
        }
    }

    /// One summary line.
    pub fn summary(&self) -> String {
        let lines = |v: &[usize]| {
            if v.is_empty() {
                String::new()
            } else {
                let shown: Vec<String> = v.iter().take(10).map(|l| l.to_string()).collect();
                let more = if v.len() > 10 { ", …" } else { "" };
                format!(" (line {}{more})", shown.join(", "))
            }
        };
        format!(
            "mean loss over {} examples ({} tokens): base {:.4} -> tuned {:.4}; better {}{}, worse {}{}",
            self.rows.len(),
            self.tokens,
            self.base_loss,
            self.tuned_loss,
            self.better.len(),
            lines(&self.better),
            self.worse.len(),
            lines(&self.worse)
        )
    }
}

/// Greedy generation of up to `max_new_tokens`.
pub fn greedy(max_new_tokens: usize) -> GenerateConfig {
    GenerateConfig {
        max_new_tokens,
        sampling: Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
        },
        seed: 0,
    }
}

/// Compare `model` with and without `adapter` on rows `rows` (indices) of `ds`, each made an
/// example as training makes it (`prep`: the chat template, the tokenizer's prefix,
/// `seq_len`); generations follow `generation`. Rows with no trained token within `seq_len`
/// are left out.
#[allow(clippy::too_many_arguments)]
pub async fn compare(
    gpu: &Gpu,
    model: ModelRef<'_>,
    tok: &Tokenizer,
    adapter: &AdapterRef<'_>,
    ds: &Dataset,
    rows: &[usize],
    prep: &PrepareConfig,
    generation: &GenerateConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<Comparison> {
    let eos = prep.eos;
    let mut out = Vec::with_capacity(rows.len());
    for (done, &i) in rows.iter().enumerate() {
        progress(done, rows.len());
        let ex = example(ds, i, tok, prep)?;
        if !ex.labels.iter().skip(1).any(|&l| l != IGNORE_INDEX) {
            continue;
        }
        let one = std::slice::from_ref(&ex);
        let base = eval_loss(gpu, model, None, one, 1, eos).await?;
        let tuned = eval_loss(gpu, model, Some(adapter), one, 1, eos).await?;
        let Prompt {
            mut ids,
            mut text,
            reference,
        } = prompt_of(tok, ds, i, prep)?;
        // Leave room for the continuation in the model's context; a prompt longer than that
        // is cut from the front, as the answer follows its end.
        let room = model
            .positions()
            .saturating_sub(generation.max_new_tokens.max(1));
        if ids.len() > room {
            ids.drain(..ids.len() - room);
            text = tok.decode(&ids)?;
        }
        let base_output =
            generate_ids(gpu, model, tok, None, ids.clone(), generation, |_| {}).await?;
        let tuned_output =
            generate_ids(gpu, model, tok, Some(adapter), ids, generation, |_| {}).await?;
        out.push(CompareRow {
            line: ex.line,
            prompt: text,
            reference,
            tokens: base.tokens,
            base_loss: base.loss,
            tuned_loss: tuned.loss,
            base_output,
            tuned_output,
        });
    }
    progress(rows.len(), rows.len());
    Ok(Comparison::of_rows(out))
}

/// What both models continue, and the reference answer after it.
struct Prompt {
    ids: Vec<u32>,
    text: String,
    reference: String,
}

/// Row `i`'s prompt and reference. A `messages` line under a chat template: the conversation
/// before its last assistant turn, rendered with the generation prompt (as `wgtune generate`
/// and `apply_chat_template(..., add_generation_prompt=True)` do), and that turn's content.
/// Otherwise the untrained leading segments and the rest; a line with no prompt part (plain
/// text) is split after its first tokens.
fn prompt_of(tok: &Tokenizer, ds: &Dataset, i: usize, prep: &PrepareConfig) -> Result<Prompt> {
    let (line, segs) = &ds.rows[i];
    if let Some(chat) = &prep.chat
        && ds.format == Format::Messages
    {
        let messages: Vec<ChatMessage> = data::chat_messages(segs)
            .into_iter()
            .map(|(role, content)| ChatMessage { role, content })
            .collect();
        let last = messages.iter().rposition(|m| m.role == "assistant");
        let (before, reference) = match last {
            Some(k) => (&messages[..k], messages[k].content.clone()),
            None => (&messages[..], String::new()),
        };
        let text = chat
            .render_prompt(before)
            .map_err(|e| crate::err!("line {line}: {e}"))?;
        // The template writes its own special tokens (Llama 3's <|begin_of_text|>).
        let ids = tok.encode(&text)?;
        return Ok(Prompt {
            ids,
            text,
            reference,
        });
    }
    let n_prompt = segs.iter().take_while(|(_, trained)| !trained).count();
    let (text, reference) = if n_prompt > 0 {
        let join = |s: &[(String, bool)]| s.iter().map(|(t, _)| t.as_str()).collect::<String>();
        (join(&segs[..n_prompt]), join(&segs[n_prompt..]))
    } else {
        let whole: String = segs.iter().map(|(t, _)| t.as_str()).collect();
        let ids = tok.encode(&whole)?;
        let cut = (ids.len() / 2).min(TEXT_PROMPT_TOKENS);
        (tok.decode(&ids[..cut])?, tok.decode(&ids[cut..])?)
    };
    Ok(Prompt {
        ids: tok.encode_for_model(&text)?,
        text,
        reference,
    })
}

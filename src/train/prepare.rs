//! From parsed datasets to the examples a run trains and validates on: tokenize each line,
//! drop lines with nothing to learn within the sequence length, optionally pack, and hold
//! out a validation split. The CLI and the page's worker prepare data through these
//! functions, so both train on the same examples.

use crate::bail;
use crate::chat::{ChatMessage, ChatTemplate, RenderOptions};
use crate::data::{Dataset, Example, Format, IGNORE_INDEX, chat_messages, tokenize};
use crate::error::Result;
use crate::tokenizer::Tokenizer;
use crate::train::batches::{epoch_order, pack};
use crate::train::settings::TrainSettings;

/// How lines become examples.
#[derive(Clone, Debug, PartialEq)]
pub struct PrepareConfig {
    pub seq_len: usize,
    pub train_on_prompt: bool,
    pub packing: bool,
    pub eos: u32,
    /// The ids the tokenizer puts before a text (transformers' `tokenizer(text)`: Llama 3's
    /// `<|begin_of_text|>`; none for GPT-2), before every example but a chat's.
    pub prefix: Vec<u32>,
    /// The model's chat template: `messages` lines are rendered with it as
    /// `apply_chat_template` does, and only the assistant's tokens are trained (unless
    /// `train_on_prompt`). Without one (GPT-2), messages are plain `role: content` lines.
    pub chat: Option<ChatTemplate>,
}

impl PrepareConfig {
    /// For a model without a chat template and a tokenizer that adds nothing (GPT-2).
    pub fn new(s: &TrainSettings, seq_len: usize, eos: u32) -> Self {
        Self {
            seq_len,
            train_on_prompt: s.train_on_prompt,
            packing: s.packing,
            eos,
            prefix: Vec::new(),
            chat: None,
        }
    }

    /// With the tokenizer's prefix and the model's chat template (the Llama family).
    pub fn for_model(
        s: &TrainSettings,
        seq_len: usize,
        eos: u32,
        tok: &Tokenizer,
        chat: Option<ChatTemplate>,
    ) -> Result<Self> {
        Ok(Self {
            prefix: tok.encode_for_model("")?,
            chat,
            ..Self::new(s, seq_len, eos)
        })
    }
}

/// Row `i` of `ds` as one example (what [`prepare`] makes of each line, and `wgtune eval`
/// of the lines it reads): a `messages` line through the chat template when the model has
/// one, else the segments tokenized with EOS appended, after the tokenizer's prefix.
pub fn example(ds: &Dataset, i: usize, tok: &Tokenizer, cfg: &PrepareConfig) -> Result<Example> {
    let (line, segs) = &ds.rows[i];
    if let Some(chat) = &cfg.chat
        && ds.format == Format::Messages
    {
        return chat_example(chat, tok, ds, i, cfg);
    }
    let mut e = tokenize(tok, segs, cfg.eos, cfg.train_on_prompt, cfg.seq_len, *line)?;
    if !cfg.prefix.is_empty() {
        let n = cfg.prefix.len();
        e.ids.splice(0..0, cfg.prefix.iter().copied());
        e.labels.splice(0..0, std::iter::repeat_n(IGNORE_INDEX, n));
        e.ids.truncate(cfg.seq_len);
        e.labels.truncate(cfg.seq_len);
    }
    Ok(e)
}

/// A `messages` line rendered with the model's chat template: its ids, and labels on the
/// assistant's tokens (each turn up to and including its end-of-turn token), or on all with
/// `train_on_prompt`; no EOS is appended (the template ends each turn).
fn chat_example(
    chat: &ChatTemplate,
    tok: &Tokenizer,
    ds: &Dataset,
    row: usize,
    cfg: &PrepareConfig,
) -> Result<Example> {
    let (line, segs) = &ds.rows[row];
    let messages: Vec<ChatMessage> = chat_messages(segs)
        .into_iter()
        .map(|(role, content)| ChatMessage { role, content })
        .collect();
    let (mut ids, mask) = chat
        .tokenize(tok, &messages, &RenderOptions::default())
        .map_err(|e| crate::err!("line {line}: {e}"))?;
    let mut labels: Vec<i32> = ids
        .iter()
        .zip(&mask)
        .map(|(&id, &m)| {
            if m || cfg.train_on_prompt {
                id as i32
            } else {
                IGNORE_INDEX
            }
        })
        .collect();
    ids.truncate(cfg.seq_len);
    labels.truncate(cfg.seq_len);
    Ok(Example {
        ids,
        labels,
        line: *line,
    })
}

/// Examples of a dataset, and the 1-based lines skipped for having no trained token within
/// `seq_len` (a prompt that fills the whole sequence).
#[derive(Clone, Debug, Default)]
pub struct Prepared {
    pub examples: Vec<Example>,
    pub skipped: Vec<usize>,
}

/// Rows tokenized between two progress reports.
const PROGRESS_EVERY: usize = 256;

/// Tokenize every row of `ds` (see [`crate::data::tokenize`]); `progress(done, total)` is
/// called every few hundred rows.
pub fn prepare(
    ds: &Dataset,
    tok: &Tokenizer,
    cfg: &PrepareConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Prepared> {
    let mut examples = Vec::with_capacity(ds.rows.len());
    let mut skipped = Vec::new();
    let total = ds.rows.len();
    for (i, (line, _)) in ds.rows.iter().enumerate() {
        if i % PROGRESS_EVERY == 0 {
            progress(i, total);
        }
        let e = example(ds, i, tok, cfg)?;
        // Position 0 predicts nothing: a label counts from the second token on.
        if e.labels.iter().skip(1).any(|&l| l >= 0) {
            examples.push(e);
        } else {
            skipped.push(*line);
        }
    }
    progress(total, total);
    if cfg.packing && !examples.is_empty() {
        examples = pack(&examples, cfg.seq_len);
    }
    Ok(Prepared { examples, skipped })
}

/// Hold out `fraction` of `examples` (at least one, never all) after a seeded shuffle, as
/// `datasets`' `train_test_split` does. Returns (train, validation).
pub fn split_validation(
    examples: Vec<Example>,
    fraction: f32,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    let n = examples.len();
    if n < 2 || fraction <= 0.0 {
        return (examples, Vec::new());
    }
    // Its own stream, apart from every epoch's.
    let order = epoch_order(n, seed, u64::MAX, true);
    let n_val = ((n as f32 * fraction).round() as usize).clamp(1, n - 1);
    let mut slots: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
    let mut take = |idx: &[usize]| -> Vec<Example> {
        idx.iter()
            .map(|&j| slots[j].take().expect("each index once"))
            .collect()
    };
    let train = take(&order[..n - n_val]);
    let val = take(&order[n - n_val..]);
    (train, val)
}

/// The examples of a run: training and validation, with a fingerprint of the training
/// examples that a checkpoint records (a resume on other data is refused).
#[derive(Clone, Debug)]
pub struct TrainData {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub fingerprint: String,
    /// What the user should know: lines skipped, and where.
    pub notes: Vec<String>,
}

impl TrainData {
    /// From the prepared training file (named `train_name`) and, optionally, a prepared
    /// validation file; `--val-split` holds out part of the training examples instead.
    pub fn new(
        s: &TrainSettings,
        seq_len: usize,
        (train_name, train): (&str, Prepared),
        val: Option<(&str, Prepared)>,
    ) -> Result<Self> {
        let mut notes = Vec::new();
        let mut check = |name: &str, p: &Prepared| -> Result<()> {
            if p.examples.is_empty() {
                bail!(
                    "{name}: no line has a trained token within --seq-len {seq_len} (prompts too long?)"
                );
            }
            if let Some(first) = p.skipped.first() {
                notes.push(format!(
                    "{name}: skipped {} line(s) with no trained token within --seq-len {seq_len} (e.g. line {first}): the prompt fills the whole sequence",
                    p.skipped.len()
                ));
            }
            Ok(())
        };
        check(train_name, &train)?;
        if let Some((name, p)) = &val {
            check(name, p)?;
        }
        let (mut train, mut val) = (
            train.examples,
            val.map(|v| v.1.examples).unwrap_or_default(),
        );
        if let Some(fraction) = s.val_split {
            if train.len() < 2 {
                bail!(
                    "{train_name}: --val-split needs at least 2 training examples, the file has {}",
                    train.len()
                );
            }
            (train, val) = split_validation(train, fraction, s.seed);
        }
        Ok(Self {
            fingerprint: fingerprint(&train),
            train,
            val,
            notes,
        })
    }
}

/// The data of a run from JSONL files (native): the training file and, optionally, a
/// validation file, tokenized for `seq_len` with `tok` (EOS id `eos`).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_files(
    s: &TrainSettings,
    cfg: &PrepareConfig,
    tok: &Tokenizer,
    train: &std::path::Path,
    val: Option<&std::path::Path>,
) -> Result<TrainData> {
    let seq_len = cfg.seq_len;
    let read = |p: &std::path::Path| -> Result<(String, Prepared)> {
        let ds = crate::data::read_jsonl(p, s.data_format()?)?;
        Ok((
            p.display().to_string(),
            prepare(&ds, tok, cfg, &mut |_, _| {})?,
        ))
    };
    let (name, train) = read(train)?;
    let val = val.map(read).transpose()?;
    TrainData::new(
        s,
        seq_len,
        (&name, train),
        val.as_ref().map(|(n, p)| (n.as_str(), p.clone())),
    )
}

/// FNV-1a (64 bit) over the examples' ids and labels, in order, as 16 hex digits.
pub fn fingerprint(examples: &[Example]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |w: u32| {
        for b in w.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for e in examples {
        eat(e.ids.len() as u32);
        e.ids.iter().for_each(|&i| eat(i));
        e.labels.iter().for_each(|&l| eat(l as u32));
    }
    format!("{h:016x}")
}

//! From parsed datasets to the examples a run trains and validates on: tokenize each line,
//! drop lines with nothing to learn within the sequence length, optionally pack, and hold
//! out a validation split. The CLI and the page's worker prepare data through these
//! functions, so both train on the same examples.

use crate::bail;
use crate::data::{Dataset, Example, tokenize};
use crate::error::Result;
use crate::tokenizer::Tokenizer;
use crate::train::batches::{epoch_order, pack};
use crate::train::settings::TrainSettings;

/// How lines become examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrepareConfig {
    pub seq_len: usize,
    pub train_on_prompt: bool,
    pub packing: bool,
    pub eos: u32,
}

impl PrepareConfig {
    pub fn new(s: &TrainSettings, seq_len: usize, eos: u32) -> Self {
        Self {
            seq_len,
            train_on_prompt: s.train_on_prompt,
            packing: s.packing,
            eos,
        }
    }
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
    for (i, (line, segs)) in ds.rows.iter().enumerate() {
        if i % PROGRESS_EVERY == 0 {
            progress(i, total);
        }
        let e = tokenize(tok, segs, cfg.eos, cfg.train_on_prompt, cfg.seq_len, *line)?;
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
    seq_len: usize,
    tok: &Tokenizer,
    eos: u32,
    train: &std::path::Path,
    val: Option<&std::path::Path>,
) -> Result<TrainData> {
    let cfg = PrepareConfig::new(s, seq_len, eos);
    let read = |p: &std::path::Path| -> Result<(String, Prepared)> {
        let ds = crate::data::read_jsonl(p, s.data_format()?)?;
        Ok((
            p.display().to_string(),
            prepare(&ds, tok, &cfg, &mut |_, _| {})?,
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

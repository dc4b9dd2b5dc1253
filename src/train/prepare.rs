//! From a parsed dataset to training examples: tokenize each line, drop lines with nothing to
//! learn within the sequence length, optionally pack, and hold out a validation split. The CLI
//! and the web app prepare data the same way through these functions.

use crate::data::{Dataset, Example, tokenize};
use crate::error::Result;
use crate::tokenizer::Tokenizer;
use crate::train::batches::{epoch_order, pack};

/// How lines become examples.
#[derive(Clone, Copy, Debug)]
pub struct PrepareConfig {
    pub seq_len: usize,
    pub train_on_prompt: bool,
    pub packing: bool,
    pub eos: u32,
}

/// Examples of a dataset, and the 1-based lines skipped for having no trained token within
/// `seq_len` (a prompt that fills the whole sequence).
pub struct Prepared {
    pub examples: Vec<Example>,
    pub skipped: Vec<usize>,
}

/// Tokenize every row of `ds` (see [`crate::data::tokenize`]).
pub fn prepare(ds: &Dataset, tok: &Tokenizer, cfg: &PrepareConfig) -> Result<Prepared> {
    let mut examples = Vec::with_capacity(ds.rows.len());
    let mut skipped = Vec::new();
    for (line, segs) in &ds.rows {
        let e = tokenize(tok, segs, cfg.eos, cfg.train_on_prompt, cfg.seq_len, *line)?;
        // Position 0 predicts nothing: a label counts from the second token on.
        if e.labels.iter().skip(1).any(|&l| l >= 0) {
            examples.push(e);
        } else {
            skipped.push(*line);
        }
    }
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
    let order = epoch_order(n, seed, usize::MAX, true);
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

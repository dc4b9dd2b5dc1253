//! Worker side of "What LoRA learned": the adapter in use, announced with its inspection
//! (`wgtune inspect` for it on the loaded model, from the same PEFT bytes Export offers),
//! and the base-against-tuned comparison on up to [`COMPARE_ROWS`] validation examples
//! (`wgtune compare`'s core).

use std::path::Path;

use wgtune::adapter::{CONFIG_FILE, WEIGHTS_FILE};
use wgtune::inspect::compare::{Comparison, compare, greedy};
use wgtune::inspect::{Inspection, base_norms_of};
use wgtune::lora::GpuAdapter;
use wgtune::train::prepare::TrainData;

use super::browser::yield_now;
use super::engine::{self, Adapter};
use super::port::{Event, emit};
use super::preview;

/// Examples the page compares (as `wgtune compare --n 8`).
pub const COMPARE_ROWS: usize = 8;
/// Tokens each generation of the comparison adds (`wgtune compare`'s default).
pub const COMPARE_NEW_TOKENS: usize = 32;

/// Make `a` the adapter in use (or none), and tell the page: its summary and what it learned.
pub fn use_adapter(a: Option<Adapter>) {
    let info = a.as_ref().map(|a| a.info.clone());
    engine::set_adapter(a);
    emit(Event::Adapter(info));
    emit(Event::Learned(engine::adapter().map(|a| inspect(&a))));
}

/// The adapter's inspection on the loaded model.
fn inspect(a: &Adapter) -> Result<Inspection, String> {
    let m = engine::model().ok_or("no model loaded")?;
    let (weights, config) = &*a.files;
    let config = std::str::from_utf8(config).map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
    Inspection::of_files(
        config,
        Path::new(CONFIG_FILE),
        weights,
        Path::new(WEIGHTS_FILE),
    )
    .and_then(|i| i.with_base(&m.config, m.model().quant(), base_norms_of(m.model())))
    .map_err(|e| e.to_string())
}

/// Run the comparison, reporting progress; the result goes to the page as
/// [`Event::Compared`].
pub async fn run_compare() {
    let result = compare_rows().await;
    let status = match &result {
        Ok((c, over)) => format!("{} · {over}", c.summary()),
        Err(e) => format!("error: {e}"),
    };
    emit(Event::Compared {
        status,
        result: Some(result.map(|(c, _)| c)),
    });
}

async fn compare_rows() -> Result<(Comparison, String), String> {
    let gpu = engine::gpu().await?;
    let m = engine::model().ok_or("load a model first (section 1)")?;
    let d = engine::data().ok_or("choose a JSONL file first (section 2)")?;
    let a = engine::adapter().ok_or("train or pick an adapter first")?;
    let s = engine::settings();
    let cfg = &m.config;
    let err = |e: wgtune::error::Error| e.to_string();
    let seq_len = s.seq_len_for(cfg).map_err(err)?;
    let format = s.data_format().map_err(err)?;
    // The run's validation examples: the validation file's, or those --val-split holds out.
    let val = engine::val_data();
    let train = (*preview::prepared(&d, &m, &s)?).clone();
    let val_prepared = match &val {
        Some(v) => Some((v.name.clone(), (*preview::prepared(v, &m, &s)?).clone())),
        None => None,
    };
    let data = TrainData::new(
        &s,
        seq_len,
        (&d.name, train),
        val_prepared.as_ref().map(|(n, p)| (n.as_str(), p.clone())),
    )
    .map_err(err)?;
    let source = val.clone().unwrap_or_else(|| d.clone());
    let ds = source.dataset(format).map_err(|e| e.join("; "))?;
    let (rows, over): (Vec<usize>, String) = if data.val.is_empty() {
        (
            (0..ds.rows.len().min(COMPARE_ROWS)).collect(),
            format!(
                "the first {} lines of {} (no validation data: set --val-split or a validation file)",
                ds.rows.len().min(COMPARE_ROWS),
                d.name
            ),
        )
    } else {
        let rows: Vec<usize> = data
            .val
            .iter()
            .take(COMPARE_ROWS)
            .filter_map(|e| ds.rows.iter().position(|(l, _)| *l == e.line))
            .collect();
        let over = format!(
            "{} validation examples of {} (lines {}; seq len {seq_len})",
            rows.len(),
            source.name,
            rows.iter()
                .map(|&i| ds.rows[i].0.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        (rows, over)
    };
    let prep = m.prepare_config(&s, seq_len)?;
    let adapter = GpuAdapter::new(&gpu, cfg, a.lora.clone(), &a.params);
    let total = rows.len();
    let mut done_rows = Vec::with_capacity(total);
    // One example at a time, with a turn for the event loop (and the page's status) between.
    for (i, row) in rows.into_iter().enumerate() {
        emit(Event::Compared {
            status: format!("comparing example {} of {total}…", i + 1),
            result: None,
        });
        yield_now(0).await;
        let one = compare(
            &gpu,
            m.model(),
            &m.tokenizer,
            &adapter.as_ref(),
            &ds,
            &[row],
            &prep,
            &greedy(COMPARE_NEW_TOKENS),
            |_, _| {},
        )
        .await
        .map_err(|e| format!("{}: {e}", source.name))?;
        done_rows.extend(one.rows);
    }
    Ok((Comparison::of_rows(done_rows), over))
}

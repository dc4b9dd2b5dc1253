//! What the Data and Settings sections show that needs the model (engine worker): the
//! data file parsed, its preview and token counts with the model's tokenizer, and the
//! trainable-parameters line with the GPU memory estimate. Both follow the settings: the
//! worker watches its mirror of them.

use leptos::prelude::*;
use wgtune::data::Format;
use wgtune::lora::{Layout, trainable_line};
use wgtune::train::memory::estimate;
use wgtune::train::prepare::{PrepareConfig, prepare};

use super::app::{DataInfo, PreviewRow, Ui};
use super::browser;
use super::engine;

const PREVIEW_ROWS: usize = 5;

/// Read and parse a JSONL file the user gave (`format` names one, else it is detected) and
/// show it, or its bad lines.
pub fn take_data(ui: Ui, file: web_sys::File, format: Option<String>) {
    leptos::task::spawn_local(async move {
        ui.data_errors.set(Vec::new());
        let name = file.name();
        let fmt = format.and_then(|f| f.parse::<Format>().ok());
        let result = match browser::read_file(&file).await {
            Ok(bytes) => engine::install_data(&name, &bytes, fmt),
            Err(e) => Err(vec![e]),
        };
        match result {
            Ok(_) => refresh(ui),
            Err(errors) => {
                ui.data.set(None);
                ui.data_errors.set(errors);
            }
        }
    });
}

/// Keep the data preview and the settings summary in step with the settings the page
/// edits (the preview depends only on the sequence length and what is trained).
pub fn watch(ui: Ui) {
    let shaping = Memo::new(move |_| {
        let s = ui.settings.get();
        (s.seq_len, s.train_on_prompt)
    });
    Effect::new(move |first: Option<()>| {
        shaping.track();
        if first.is_some() {
            refresh(ui);
        }
    });
    Effect::new(move |_| {
        let line = summary(ui);
        ui.settings_summary.set(line);
    });
}

/// The trainable-parameters line and memory estimate for the settings and loaded model.
fn summary(ui: Ui) -> String {
    let s = ui.settings.get();
    let Some(info) = ui.model.get() else {
        return "Load a model to see the trainable parameters and the memory estimate.".into();
    };
    let (Some(m), Some(gpu)) = (engine::model(), engine::gpu_now()) else {
        return String::new();
    };
    let problems = s.problems(info.n_layer);
    if !problems.is_empty() {
        return format!("error: {}", problems.join("; "));
    }
    let layout = Layout::new(&m.model.config, &s.lora());
    let t = s.seq_len_for(info.n_positions);
    let est = estimate(
        &gpu,
        &m.model,
        &layout,
        s.rank,
        s.batch_size,
        t,
        s.grad_checkpoint,
    );
    format!(
        "{} · batches of {} × {} tokens{} · {}",
        trainable_line(layout.trainable, info.params),
        s.batch_size,
        t,
        if s.grad_checkpoint {
            " with gradient checkpointing"
        } else {
            ""
        },
        est.line()
    )
}

/// Recompute what the Data section shows from the parsed file, the model's tokenizer (when
/// one is loaded) and the sequence-length settings.
pub fn refresh(ui: Ui) {
    let Some(data) = engine::data() else { return };
    let model = engine::model();
    let s = ui.settings.get_untracked();
    let ds = &data.dataset;
    let mut info = DataInfo {
        name: data.name.clone(),
        format: ds.format.name().to_string(),
        lines: ds.rows.len(),
        tokens: None,
        preview: ds
            .rows
            .iter()
            .take(PREVIEW_ROWS)
            .map(|(line, segs)| PreviewRow {
                line: *line,
                parts: segs
                    .iter()
                    .map(|(t, trained)| (t.clone(), *trained || s.train_on_prompt))
                    .collect(),
                tokens: None,
            })
            .collect(),
    };
    if let Some(m) = model {
        let cfg = PrepareConfig {
            seq_len: s.seq_len_for(m.model.config.n_positions),
            train_on_prompt: s.train_on_prompt,
            packing: false,
            eos: m.tokenizer.eos_id().unwrap_or(m.model.config.eos()),
        };
        match prepare(ds, &m.tokenizer, &cfg) {
            Ok(p) => {
                let tokens = p.examples.iter().map(|e| e.ids.len()).sum();
                let trained = p
                    .examples
                    .iter()
                    .map(|e| e.labels.iter().skip(1).filter(|&&l| l >= 0).count())
                    .sum();
                for row in &mut info.preview {
                    row.tokens = p
                        .examples
                        .iter()
                        .find(|e| e.line == row.line)
                        .map(|e| e.ids.len());
                }
                info.tokens = Some((tokens, trained, p.examples.len(), p.skipped));
            }
            Err(e) => ui.data_errors.set(vec![e.to_string()]),
        }
    }
    ui.data.set(Some(info));
}

//! What the Data and Settings sections show that needs the model (engine worker): the data
//! files parsed, tokenized with the model's tokenizer for the current settings (once per
//! file and settings: training reuses the examples), their preview and token counts, and
//! the trainable-parameters line with the GPU memory estimate.

use std::cell::Cell;
use std::rc::Rc;

use wgtune::lora::{Layout, trainable_line};
use wgtune::train::memory::estimate;
use wgtune::train::plan::max_batch;
use wgtune::train::prepare::{Prepared, prepare};
use wgtune::train::settings::TrainSettings;

use super::browser;
use super::engine::{self, LoadedData, LoadedModel};
use super::port::{DataInfo, Event, PreviewRow, TokenCounts, emit};

const PREVIEW_ROWS: usize = 5;

/// Read a JSONL file the user gave and keep it as the training (or validation) data; show
/// it, or its bad lines.
pub fn take_data(file: web_sys::File, validation: bool) {
    wasm_bindgen_futures::spawn_local(async move {
        let data = match browser::read_file(&file).await {
            Ok(bytes) => Rc::new(LoadedData::new(file.name(), bytes)),
            Err(e) => {
                emit(Event::Data {
                    validation,
                    info: Err(vec![e]),
                });
                return;
            }
        };
        let format = engine::settings()
            .data_format()
            .map_err(|e| vec![e.to_string()]);
        if let Err(errors) = format.and_then(|f| data.dataset(f)) {
            emit(Event::Data {
                validation,
                info: Err(errors),
            });
            return;
        }
        if validation {
            engine::set_val_data(Some(data));
        } else {
            engine::set_data(data);
        }
        refresh();
    });
}

/// The prepared examples of `data` for the current settings and `model`, tokenized once per
/// (format, preparation) and reported as [`Event::Preparing`] while it runs.
pub fn prepared(
    data: &LoadedData,
    model: &LoadedModel,
    s: &TrainSettings,
) -> Result<Rc<Prepared>, String> {
    let format = s.data_format().map_err(|e| e.to_string())?;
    let seq_len = s.seq_len_for(&model.config).map_err(|e| e.to_string())?;
    let cfg = model.prepare_config(s, seq_len)?;
    if let Some((f, c, p)) = &*data.prepared.borrow()
        && *f == format
        && *c == cfg
    {
        return Ok(p.clone());
    }
    let ds = data.dataset(format).map_err(|e| e.join("; "))?;
    let mut reported = browser::now_ms();
    let mut progress = |done: usize, total: usize| {
        if done == total || browser::now_ms() - reported > engine::PAINT_EVERY_MS {
            reported = browser::now_ms();
            emit(Event::Preparing {
                what: data.name.clone(),
                done,
                total,
            });
        }
    };
    let p =
        Rc::new(prepare(&ds, &model.tokenizer, &cfg, &mut progress).map_err(|e| e.to_string())?);
    *data.prepared.borrow_mut() = Some((format, cfg.clone(), p.clone()));
    Ok(p)
}

thread_local! {
    static REFRESH_PENDING: Cell<bool> = const { Cell::new(false) };
}

/// Take the page's settings; the preview and summary follow.
pub fn take_settings(s: TrainSettings) {
    engine::set_settings(s);
    refresh();
}

/// Recompute what the Data and Settings sections show, once for a burst of changes (a
/// tokenization of a large file is not repeated for each settings edit queued behind it).
pub fn refresh() {
    if REFRESH_PENDING.with(|p| p.replace(true)) {
        return;
    }
    wasm_bindgen_futures::spawn_local(async {
        browser::yield_now(0).await;
        REFRESH_PENDING.with(|p| p.set(false));
        let s = engine::settings();
        for (validation, data) in [(false, engine::data()), (true, engine::val_data())] {
            if let Some(d) = data {
                emit(Event::Data {
                    validation,
                    info: info(&d, &s).map(Some),
                });
            }
        }
        emit(Event::Summary(summary(&s)));
    });
}

/// The trainable-parameters line and memory estimate for the settings and loaded model.
fn summary(s: &TrainSettings) -> String {
    let (Some(m), Some(gpu)) = (engine::model(), engine::gpu_now()) else {
        return "Load a model to see the trainable parameters and the memory estimate.".into();
    };
    let cfg = &m.config;
    let checked = s
        .check()
        .and_then(|_| s.lora().validate_for(cfg))
        .and_then(|_| s.seq_len_for(cfg));
    let seq_len = match checked {
        Ok(t) => t,
        Err(e) => return format!("error: {e}"),
    };
    let layout = Layout::new(cfg, &s.lora());
    // The batch shape the run will use: capped by the data once it is tokenized.
    let examples = |d: Option<Rc<LoadedData>>| {
        d.and_then(|d| d.prepared.borrow().as_ref().map(|p| p.2.examples.clone()))
            .unwrap_or_default()
    };
    let (train, val) = (examples(engine::data()), examples(engine::val_data()));
    let (b, t) = if train.is_empty() {
        (s.batch_size, seq_len)
    } else {
        max_batch(s, seq_len, &train, &val)
    };
    let est = estimate(
        &gpu,
        m.model(),
        &layout,
        &s.lora(),
        (b, t),
        s.grad_checkpoint,
    );
    format!(
        "{} · largest batch {b} × {t} tokens{} · {}",
        trainable_line(layout.trainable, cfg.num_params()),
        if s.grad_checkpoint {
            " with gradient checkpointing"
        } else {
            ""
        },
        est.line()
    )
}

/// What the Data section shows of a file: the format, the first lines as the model sees
/// them and, with a model loaded, the token counts.
fn info(data: &LoadedData, s: &TrainSettings) -> Result<DataInfo, Vec<String>> {
    let format = s.data_format().map_err(|e| vec![e.to_string()])?;
    let ds = data.dataset(format)?;
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
    if let Some(m) = engine::model() {
        let p = prepared(data, &m, s).map_err(|e| vec![e])?;
        for row in &mut info.preview {
            row.tokens = p
                .examples
                .iter()
                .find(|e| e.line == row.line)
                .map(|e| e.ids.len());
        }
        info.tokens = Some(TokenCounts {
            tokens: p.examples.iter().map(|e| e.ids.len()).sum(),
            trained: p
                .examples
                .iter()
                .map(|e| e.labels.iter().skip(1).filter(|&&l| l >= 0).count())
                .sum(),
            examples: p.examples.len(),
            skipped: p.skipped.clone(),
        });
    }
    Ok(info)
}

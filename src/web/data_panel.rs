//! Section 2, Data: a JSONL file chosen or dropped; its detected format, a preview of the
//! first lines as the model sees them (prompt part vs trained part), token counts, and
//! line-numbered errors.

use leptos::prelude::*;
use wgtune::data::Format;
use wgtune::train::prepare::{PrepareConfig, prepare};

use super::app::{DataInfo, PreviewRow, Ui};
use super::browser;
use super::engine;

const PREVIEW_ROWS: usize = 5;

pub fn view(ui: Ui) -> impl IntoView {
    let format = RwSignal::new("auto".to_string());
    let take = move |file: web_sys::File| {
        leptos::task::spawn_local(async move {
            ui.data_errors.set(Vec::new());
            let name = file.name();
            let fmt = match format.get_untracked().as_str() {
                "auto" => None,
                f => f.parse::<Format>().ok(),
            };
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
    };
    let on_pick = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        if let Some(f) = browser::files_of(input.files()).into_iter().next() {
            take(f);
        }
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        let file = ev
            .data_transfer()
            .and_then(|d| d.files())
            .and_then(|l| l.get(0));
        if let Some(f) = file {
            take(f);
        }
    };
    view! {
        <section id="data">
            <h2>"2 · Data"</h2>
            <div
                class="drop"
                on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default()
                on:drop=on_drop
            >
                <p>"Drop a JSONL file here, or "</p>
                <input data-testid="data-file" type="file" accept=".jsonl,.json,.txt" on:change=on_pick />
                <label>
                    " format "
                    <select data-testid="data-format" on:change=move |ev| format.set(event_target_value(&ev))>
                        <option value="auto" selected=true>"auto-detect"</option>
                        <option value="text">"text"</option>
                        <option value="prompt-completion">"prompt-completion"</option>
                        <option value="messages">"messages"</option>
                        <option value="alpaca">"alpaca"</option>
                    </select>
                </label>
                <p class="hint">
                    "One JSON object per line: " <code>"{\"text\"}"</code> ", " <code>"{\"prompt\",\"completion\"}"</code>
                    ", " <code>"{\"messages\":[{\"role\",\"content\"}]}"</code> " or "
                    <code>"{\"instruction\",\"input\",\"output\"}"</code> "."
                </p>
            </div>
            <ul class="errors" data-testid="data-errors">
                {move || ui.data_errors.get().into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}
            </ul>
            {move || ui.data.get().map(|d| summary(&d))}
        </section>
    }
}

fn summary(d: &DataInfo) -> impl IntoView + use<> {
    let counts = match &d.tokens {
        Some((tokens, trained, kept, skipped)) => {
            let mut s = format!("{tokens} tokens, {trained} of them trained; {kept} examples");
            if let Some(first) = skipped.first() {
                s.push_str(&format!(
                    "; {} line(s) skipped: no trained token within the sequence length (e.g. line {first})",
                    skipped.len()
                ));
            }
            s
        }
        None => "load a model to count tokens".to_string(),
    };
    let rows = d
        .preview
        .iter()
        .map(|r| {
            let parts = r
                .parts
                .iter()
                .map(|(text, trained)| {
                    view! { <span class=if *trained { "trained" } else { "prompt" }>{text.clone()}</span> }
                })
                .collect_view();
            let tokens = r.tokens.map(|t| format!("{t} tokens")).unwrap_or_default();
            view! {
                <tr>
                    <td class="num">{r.line}</td>
                    <td class="sample">{parts}</td>
                    <td class="num">{tokens}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p data-testid="data-summary" class="status">
            {format!("{}: {} format, {} lines; {counts}.", d.name, d.format, d.lines)}
        </p>
        <table class="preview" data-testid="data-preview">
            <thead>
                <tr>
                    <th>"line"</th>
                    <th>"as the model sees it: " <span class="prompt">"prompt"</span> " / " <span class="trained">"trained"</span></th>
                    <th></th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
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

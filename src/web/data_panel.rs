//! Section 2, Data: the training JSONL file chosen or dropped (`--data`), its format
//! (`--format`) and an optional validation file (`--val-data`); for each, the detected
//! format, a preview of the first lines as the model sees them (prompt part vs trained
//! part), token counts, tokenizing progress and line-numbered errors. The engine worker
//! parses and tokenizes the files (`preview`).

use leptos::prelude::*;

use super::browser;
use super::port::{self, Command, DataInfo};
use super::state::Ui;

/// A file input (with drop zone) that sends the file as training or validation data.
fn file_input(ui: Ui, validation: bool) -> impl IntoView {
    let take = move |file: web_sys::File| {
        port::send(Command::Data { validation }, vec![file]);
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
    let testid = if validation {
        "val-data-file"
    } else {
        "data-file"
    };
    view! {
        <div
            class="drop"
            on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default()
            on:drop=on_drop
        >
            <p>{if validation { "Validation data (optional, --val-data): drop a JSONL file here, or " } else { "Drop a JSONL file here, or " }}</p>
            <input data-testid=testid type="file" accept=".jsonl,.json,.txt" on:change=on_pick disabled=move || !ui.gpu_ok() />
        </div>
    }
}

fn errors(list: Vec<String>) -> impl IntoView {
    list.into_iter()
        .map(|e| view! { <li>{e}</li> })
        .collect_view()
}

pub fn view(ui: Ui) -> impl IntoView {
    let set_format = move |ev: leptos::ev::Event| {
        let f = event_target_value(&ev);
        ui.edit_settings(|s| s.format = f);
    };
    let clear_val = move |_| port::send(Command::ClearValidation, Vec::new());
    view! {
        <section id="data">
            <h2>"2 · Data"</h2>
            {file_input(ui, false)}
            <label>
                <code>"--format"</code> " "
                <select data-testid="data-format" on:change=set_format>
                    {["auto", "text", "prompt-completion", "messages", "alpaca"]
                        .into_iter()
                        .map(|f| view! { <option value=f selected=move || ui.settings.with(|s| s.format == f)>{f}</option> })
                        .collect_view()}
                </select>
            </label>
            <p class="hint">
                "One JSON object per line: " <code>"{\"text\"}"</code> ", " <code>"{\"prompt\",\"completion\"}"</code>
                ", " <code>"{\"messages\":[{\"role\",\"content\"}]}"</code> " or "
                <code>"{\"instruction\",\"input\",\"output\"}"</code> "."
            </p>
            <ul class="errors" data-testid="data-errors">
                {move || ui.data.get().err().map(errors)}
            </ul>
            <Show when=move || ui.preparing.with(|p| p.is_some())>
                <p class="small" data-testid="data-preparing">
                    {move || ui.preparing.get().map(|(f, done, total)| format!("tokenizing {f}: {done} of {total} lines")).unwrap_or_default()}
                </p>
                <progress
                    max=move || ui.preparing.with(|p| p.as_ref().map_or(1, |p| p.2.max(1)))
                    value=move || ui.preparing.with(|p| p.as_ref().map_or(0, |p| p.1))
                ></progress>
            </Show>
            {move || ui.data.get().ok().flatten().map(|d| summary(&d, "data"))}
            {file_input(ui, true)}
            <ul class="errors" data-testid="val-data-errors">
                {move || ui.val_data.get().err().map(errors)}
            </ul>
            <Show when=move || ui.val_data.with(|v| matches!(v, Ok(Some(_))))>
                {move || ui.val_data.get().ok().flatten().map(|d| summary(&d, "val-data"))}
                <button data-testid="val-data-clear" on:click=clear_val>"Use no validation file"</button>
            </Show>
        </section>
    }
}

fn summary(d: &DataInfo, testid: &str) -> impl IntoView + use<> {
    let counts = match &d.tokens {
        Some(c) => {
            let mut s = format!(
                "{} tokens, {} of them trained; {} examples",
                c.tokens, c.trained, c.examples
            );
            if let Some(first) = c.skipped.first() {
                s.push_str(&format!(
                    "; {} line(s) skipped: no trained token within the sequence length (e.g. line {first})",
                    c.skipped.len()
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
        <p data-testid=format!("{testid}-summary") class="status">
            {format!("{}: {} format, {} lines; {counts}.", d.name, d.format, d.lines)}
        </p>
        <table class="preview" data-testid=format!("{testid}-preview")>
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

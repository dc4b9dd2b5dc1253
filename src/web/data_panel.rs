//! Section 2, Data: a JSONL file chosen or dropped; its detected format, a preview of the
//! first lines as the model sees them (prompt part vs trained part), token counts, and
//! line-numbered errors. The engine worker parses the file and computes the preview
//! (`preview`).

use leptos::prelude::*;

use super::app::{DataInfo, Ui};
use super::browser;
use super::port::{self, Command};

pub fn view(ui: Ui) -> impl IntoView {
    let format = RwSignal::new("auto".to_string());
    let take = move |file: web_sys::File| {
        let format = Some(format.get_untracked()).filter(|f| f != "auto");
        port::send(Command::Data { format }, vec![file]);
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

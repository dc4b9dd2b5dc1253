//! Section 5, Try: one prompt, the base model's and the tuned model's continuations side by
//! side, streamed as they are generated (by the engine worker: `tasks::generate`).

use leptos::prelude::*;

use super::port::{self, Command};
use super::settings::SampleSettings;
use super::state::Ui;

fn sample_field(
    ui: Ui,
    label: &'static str,
    testid: &'static str,
    get: fn(&SampleSettings) -> String,
    set: fn(&mut SampleSettings, &str) -> bool,
) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <input
                data-testid=testid
                prop:value=move || ui.sample.with(get)
                on:change=move |ev| {
                    let text = event_target_value(&ev);
                    let mut s = ui.sample.get_untracked();
                    if set(&mut s, text.trim()) {
                        ui.sample.set(s);
                    } else {
                        ui.gen_status.update(|p| p.text = format!("error: {label}: {text:?} is not valid"));
                    }
                }
            />
        </label>
    }
}

pub fn view(ui: Ui) -> impl IntoView {
    let prompt = RwSignal::new("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nName three primary colors.\n\n### Response:\n".to_string());
    let busy = move || ui.gen_status.with(|p| p.busy);
    let run = move |_| {
        if !ui.gen_status.with_untracked(|p| p.busy) {
            ui.gen_base.set(String::new());
            ui.gen_tuned.set(String::new());
            // At once: the last generation's "done" must not stand for this one.
            ui.gen_status.update(|p| p.text = "generating…".into());
            let prompt = prompt.get_untracked();
            let sample = ui.sample.get_untracked();
            port::send(Command::Generate { prompt, sample }, Vec::new());
        }
    };
    view! {
        <section id="try">
            <h2>"5 · Try"</h2>
            <textarea
                data-testid="generate-prompt"
                rows="5"
                prop:value=move || prompt.get()
                on:input=move |ev| prompt.set(event_target_value(&ev))
            ></textarea>
            <div class="grid">
                {sample_field(ui, "new tokens", "generate-max-new-tokens", |s| s.max_new_tokens.to_string(), |s, t| t.parse().map(|v| s.max_new_tokens = v).is_ok())}
                {sample_field(ui, "temperature (0: greedy)", "generate-temperature", |s| s.temperature.to_string(), |s, t| t.parse::<f32>().ok().filter(|v| *v >= 0.0).map(|v| s.temperature = v).is_some())}
                {sample_field(ui, "top-k (0: off)", "generate-top-k", |s| s.top_k.to_string(), |s, t| t.parse().map(|v| s.top_k = v).is_ok())}
                {sample_field(ui, "top-p", "generate-top-p", |s| s.top_p.to_string(), |s, t| t.parse::<f32>().ok().filter(|v| *v > 0.0 && *v <= 1.0).map(|v| s.top_p = v).is_some())}
                {sample_field(ui, "seed", "generate-seed", |s| s.seed.to_string(), |s, t| t.parse().map(|v| s.seed = v).is_ok())}
            </div>
            <Show when=move || ui.model.with(|m| m.as_ref().is_some_and(|m| m.chat_template))>
                <label class="row">
                    <input
                        data-testid="generate-raw"
                        type="checkbox"
                        prop:checked=move || ui.sample.with(|s| s.ignore_chat_template)
                        on:change=move |ev| {
                            let raw = event_target_checked(&ev);
                            ui.sample.update(|s| s.ignore_chat_template = raw);
                        }
                    />
                    " raw text: do not render the prompt as a user message of the model's chat template "
                    <code>"--ignore-chat-template"</code>
                </label>
            </Show>
            <button
                data-testid="generate-run"
                on:click=run
                disabled=move || busy() || ui.model.with(|m| m.is_none())
            >
                "Generate"
            </button>
            <p class="status" data-testid="generate-status">{move || ui.gen_status.with(|p| p.text.clone())}</p>
            <div class="side">
                <div>
                    <h3>"base"</h3>
                    <pre data-testid="generate-base-output">{move || ui.gen_base.get()}</pre>
                </div>
                <div>
                    <h3>"tuned (the adapter in use)"</h3>
                    <pre data-testid="generate-tuned-output">{move || ui.gen_tuned.get()}</pre>
                </div>
            </div>
        </section>
    }
}

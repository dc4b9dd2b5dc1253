//! Section 1, Model: a hub preset of either family (GPT-2; SmolLM2, Qwen2.5, Llama 3.2:
//! downloaded once, then served from the Cache API), a base
//! URL of a Hugging Face–layout folder, or local files; quantized on load (by the engine
//! worker: `load`).

use leptos::html;
use leptos::prelude::*;
use wgtune::model::model_config::hub_id;

use super::browser;
use super::port::{self, Command};
use super::state::Ui;

pub fn view(ui: Ui) -> impl IntoView {
    let url: NodeRef<html::Input> = NodeRef::new();
    let files: NodeRef<html::Input> = NodeRef::new();
    let preset = RwSignal::new("gpt2".to_string());
    // A run holds the model it trains; the worker refuses a load meanwhile, and so do these.
    let blocked = move || ui.loading.get() || !ui.gpu_ok() || ui.train.with(|v| v.running());
    let load = move |command: Command, files: Vec<web_sys::File>| {
        if !ui.loading.get_untracked() {
            // At once, not when the worker's first event arrives: the last load's "Loaded …"
            // line must not stand for this one.
            ui.loading.set(true);
            ui.model_status.update(|p| p.text = "Loading…".into());
            port::send(command, files);
        }
    };
    let load_from_inputs = move |_| {
        let picked = files
            .get_untracked()
            .map(|i| browser::files_of(i.files()))
            .unwrap_or_default();
        let base = url.get_untracked().map(|i| i.value()).unwrap_or_default();
        if !picked.is_empty() {
            load(Command::LoadFiles, picked);
        } else if !base.trim().is_empty() {
            let base = base.trim().to_string();
            load(Command::LoadUrl { base }, Vec::new());
        } else {
            ui.model_status
                .update(|p| p.text = "error: choose model files or enter a base URL first".into());
        }
    };
    let load_preset = move |_| {
        let id = hub_id(&preset.get_untracked()).to_string();
        let base = format!("{}/{id}/resolve/main", hub_base());
        load(Command::LoadUrl { base }, Vec::new());
    };
    let set_quant = move |ev: leptos::ev::Event| {
        if let Ok(q) = event_target_value(&ev).parse() {
            ui.edit_settings(|s| s.quant = q);
        }
    };
    view! {
        <section id="model">
            <h2>"1 · Model"</h2>
            <div class="row">
                <label>
                    "Hugging Face preset "
                    <select data-testid="model-preset" on:change=move |ev| preset.set(event_target_value(&ev))>
                        {wgtune::model::config::PRESETS
                            .iter()
                            .chain(wgtune::model::llama_config::PRESETS.iter())
                            .map(|(short, _)| {
                                view! { <option value=*short selected=*short == "gpt2">{*short}</option> }
                            })
                            .collect_view()}
                    </select>
                </label>
                <button data-testid="model-preset-load" on:click=load_preset disabled=blocked>
                    "Download and load"
                </button>
            </div>
            <div class="row">
                <label>
                    "or a folder URL "
                    <input
                        data-testid="model-url"
                        node_ref=url
                        type="url"
                        placeholder="https://host/models/gpt2 (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)"
                        size="48"
                    />
                </label>
            </div>
            <div class="row">
                <label>
                    "or local files "
                    <input data-testid="model-files" node_ref=files type="file" multiple=true accept=".json,.safetensors,.txt" />
                </label>
                <button data-testid="model-load" on:click=load_from_inputs disabled=blocked>
                    "Load"
                </button>
            </div>
            <div class="row">
                <label>
                    "Base weights on the GPU " <code>"--quant"</code> " "
                    <select data-testid="model-quant" on:change=set_quant>
                        {[("nf4", "NF4 (QLoRA)"), ("nf4-dq", "NF4 + double quant"), ("f16", "f16"), ("f32", "f32")]
                            .into_iter()
                            .map(|(q, label)| {
                                view! { <option value=q selected=move || ui.settings.with(|s| s.quant.to_string() == q)>{label}</option> }
                            })
                            .collect_view()}
                    </select>
                </label>
                <span class="small">"(applies to the next load)"</span>
            </div>
            <Show when=move || ui.model_status.with(|p| p.fraction.is_some())>
                <progress max="1" value=move || ui.model_status.with(|p| p.fraction.unwrap_or(0.0))></progress>
            </Show>
            <p data-testid="model-status" class="status">{move || ui.model_status.with(|p| p.text.clone())}</p>
        </section>
    }
}

/// The Hugging Face hub, or the mirror a `?hub=http://host:port` page parameter names
/// (tests, intranets): presets download from `{hub}/{id}/resolve/main/{file}`.
fn hub_base() -> String {
    browser::query_param("hub")
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string()
}

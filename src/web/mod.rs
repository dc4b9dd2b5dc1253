//! The web app (wasm32 only): a leptos page that loads a GPT-2, takes a JSONL file, trains a
//! LoRA adapter on the user's GPU through WebGPU, compares base and tuned generations and
//! downloads a PEFT adapter. Layering: this module drives the core library (`wgtune::*`); the
//! core never depends on it.
//!
//! `app` holds the page's reactive state (`Ui`) and layout; one file per section
//! (`model_panel` … `export_panel`); `run` is the training loop; `engine` keeps the GPU-side
//! objects; `store` what survives a reload (adapter, checkpoint); `browser` wraps the web APIs; `chart` draws the loss curves.

mod app;
mod browser;
mod chart;
mod data_panel;
mod engine;
mod export_panel;
mod merged;
mod model_panel;
mod run;
mod settings;
mod settings_panel;
mod store;
mod train_panel;
mod try_panel;

/// Mount the page. Panics are printed to the browser console (and shown in the training
/// status when they happen there) instead of an opaque "unreachable".
pub fn start() {
    std::panic::set_hook(Box::new(|info| browser::console_error(&info.to_string())));
    leptos::mount::mount_to_body(app::App);
}

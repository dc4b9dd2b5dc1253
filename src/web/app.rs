//! The page: the seven sections, Model → Data → Settings → Train → Try → What LoRA learned →
//! Export, over the
//! state of `state`, and the engine's worker started beside them; the sections send it
//! commands (`port::Command`) and its events fold into the state.

use leptos::prelude::*;

use super::port::{self, Command, Message};
use super::state::{Ui, fold};
use super::{
    browser, data_panel, export_panel, learned_panel, model_panel, settings_panel, train_panel,
    try_panel,
};

#[component]
pub fn App() -> impl IntoView {
    let ui = Ui::new();
    if browser::has_webgpu() {
        start_engine(ui);
    } else {
        ui.gpu.set(Some(Err(format!(
            "This browser has no WebGPU (navigator.gpu is missing). {}",
            browser::NO_WEBGPU_HELP
        ))));
    }
    let gpu_line = move || match ui.gpu.get() {
        None => "Opening WebGPU…".to_string(),
        Some(Ok(line)) | Some(Err(line)) => line,
    };
    view! {
        <header>
            <h1>"wgtune"</h1>
            <p class="lead">
                "Fine-tune GPT-2 with LoRA / QLoRA on your own GPU, in this page. Nothing leaves your machine."
            </p>
            <p class="gpu" data-testid="gpu-info" class:bad=move || matches!(ui.gpu.get(), Some(Err(_)))>
                {gpu_line}
            </p>
            {gpu_check(ui)}
        </header>
        <main>
            {model_panel::view(ui)}
            {data_panel::view(ui)}
            {settings_panel::view(ui)}
            {train_panel::view(ui)}
            {try_panel::view(ui)}
            {learned_panel::view(ui)}
            {export_panel::view(ui)}
        </main>
    }
}

/// Start the engine's worker and fold its events into the page state. It opens the GPU (its
/// adapter line, or why not, arrives as [`Event::Gpu`]) and restores what an earlier visit
/// kept.
fn start_engine(ui: Ui) {
    let on_message = move |m| match m {
        Message::Event(e) => fold(ui, e),
        Message::Download { name, blob } => {
            if let Err(e) = browser::offer_download(&name, &blob) {
                port::console_error(&e);
            }
        }
        Message::Ready | Message::Command { .. } => {}
    };
    let on_error = move |e: String| {
        port::console_error(&e);
        ui.gpu.set(Some(Err(e)));
    };
    if let Err(e) = port::spawn(on_message, on_error) {
        on_error(e);
    }
}

/// The kernel choices in use and the "Check this GPU" button with its result: one line per
/// kernel (pass / fail, largest error against its tolerance) under a summary.
fn gpu_check(ui: Ui) -> impl IntoView {
    let running = move || ui.selftest.with(|t| t.running);
    let check = move |_| {
        ui.selftest.update(|t| {
            t.running = true;
            t.summary = "checking…".into();
        });
        port::send(Command::CheckGpu, Vec::new());
    };
    view! {
        <p class="gpu" data-testid="gpu-kernels" hidden=move || ui.kernels.with(String::is_empty)>
            {move || format!("kernels: {}", ui.kernels.get())}
        </p>
        <p class="gpu">
            <button data-testid="gpu-check" on:click=check disabled=move || !ui.gpu_ok() || running()>
                "Check this GPU"
            </button>
            " "
            <span data-testid="selftest-summary" class:bad=move || ui.selftest.with(|t| !t.running && !t.passed && !t.summary.is_empty())>
                {move || ui.selftest.with(|t| t.summary.clone())}
            </span>
        </p>
        <details hidden=move || ui.selftest.with(|t| t.lines.is_empty())>
            <summary>"every kernel against its CPU reference"</summary>
            <pre data-testid="selftest-lines">{move || ui.selftest.with(|t| t.lines.join("\n"))}</pre>
        </details>
    }
}

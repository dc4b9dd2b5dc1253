//! Section 6, Export: the trained adapter as PEFT's two files, byte for byte what
//! `wgtune train` writes (`adapter::encode`), so `PeftModel.from_pretrained` and
//! `wgtune eval --adapter` load them as they are. The files are also kept in browser storage
//! (`store`), so a reload does not lose a finished adapter.

use leptos::prelude::*;
use wgtune::adapter::{CONFIG_FILE, WEIGHTS_FILE};

use super::app::Ui;
use super::browser;
use super::engine;

/// Which of the adapter's files to download.
#[derive(Clone, Copy)]
enum Which {
    Both,
    Weights,
    Config,
}

fn save(which: Which) -> Result<(), String> {
    let files = engine::adapter_files().ok_or("train an adapter first (section 4)")?;
    if matches!(which, Which::Both | Which::Weights) {
        browser::download(WEIGHTS_FILE, &files.0, "application/octet-stream")?;
    }
    if matches!(which, Which::Both | Which::Config) {
        browser::download(CONFIG_FILE, &files.1, "application/json")?;
    }
    Ok(())
}

pub fn view(ui: Ui) -> impl IntoView {
    let status = RwSignal::new(String::new());
    let click = move |which: Which| {
        move |_| {
            match save(which) {
            Ok(()) => status.set("saved: put both files in one folder and load it with PeftModel.from_pretrained(model, folder) or wgtune eval --adapter folder".into()),
            Err(e) => status.set(format!("error: {e}")),
        }
        }
    };
    view! {
        <section id="export">
            <h2>"6 · Export"</h2>
            <p>"A PEFT LoRA adapter: " <code>{WEIGHTS_FILE}</code> " and " <code>{CONFIG_FILE}</code> "."</p>
            <div class="row">
                <button data-testid="download-adapter" on:click=click(Which::Both) disabled=move || !ui.adapter_ready.get()>
                    "Download the adapter"
                </button>
                <button data-testid="download-adapter-weights" on:click=click(Which::Weights) disabled=move || !ui.adapter_ready.get()>
                    {WEIGHTS_FILE}
                </button>
                <button data-testid="download-adapter-config" on:click=click(Which::Config) disabled=move || !ui.adapter_ready.get()>
                    {CONFIG_FILE}
                </button>
            </div>
            <p class="small" data-testid="export-kept">
                {move || {
                    ui.kept
                        .get()
                        .map(|k| {
                            format!(
                                "Kept in this browser: the adapter trained on {} with {} ({} steps, loss {:.6}); it survives a reload.",
                                k.model, k.data, k.steps, k.loss
                            )
                        })
                        .unwrap_or_default()
                }}
            </p>
            <p class="status" data-testid="export-status">{move || status.get()}</p>
        </section>
    }
}

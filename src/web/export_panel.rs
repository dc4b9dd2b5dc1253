//! Section 6, Export: the trained adapter as PEFT's two files, byte for byte what
//! `wgtune train` writes (`adapter::encode`), so `PeftModel.from_pretrained` and
//! `wgtune eval --adapter` load them as they are. The files are also kept in browser storage
//! (`store`), so a reload does not lose a finished adapter. Optionally the merged model
//! ([`super::merged`]): what `wgtune merge` writes, streamed, so it works for any model size.

use leptos::prelude::*;
use wgtune::adapter::{CONFIG_FILE, WEIGHTS_FILE};

use super::app::Ui;
use super::browser;
use super::engine;
use super::merged;

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
    let merge_status = RwSignal::new(String::new());
    let merge_progress = RwSignal::new(None::<f64>);
    let merging = RwSignal::new(false);
    // The adapter belongs to the loaded model (trained on it, or kept and adopted for it).
    let merge_ready = move || {
        ui.adapter_ready.get()
            && !ui.loading.get()
            && !merging.get()
            && matches!((ui.kept.get(), ui.model.get()), (Some(k), Some(m)) if k.model == m.name)
    };
    let merge = move |_| {
        if merging.get_untracked() {
            return;
        }
        merging.set(true);
        merge_progress.set(Some(0.0));
        merge_status.set("Merging: reading model.safetensors again…".into());
        leptos::task::spawn_local(async move {
            let progress = |p: merged::MergeProgress| {
                if let Some(t) = p.total.filter(|&t| t > 0) {
                    merge_progress.set(Some(p.written as f64 / t as f64));
                }
                merge_status.set(format!(
                    "Merging: {:.1} MiB read, {:.1}{} MiB of the merged model.safetensors made",
                    mib(p.read),
                    mib(p.written),
                    p.total
                        .map(|t| format!(" of {:.1}", mib(t)))
                        .unwrap_or_default()
                ));
            };
            match merged::download(progress).await {
                Ok(size) => merge_status.set(format!(
                    "saved model.safetensors ({:.1} MiB, F32): put it in one folder with the base model's config.json and tokenizer files (tokenizer.json, or vocab.json + merges.txt), then load it with GPT2LMHeadModel.from_pretrained(folder) or wgtune eval --model folder",
                    mib(size)
                )),
                Err(e) => {
                    browser::console_error(&e);
                    merge_status.set(format!("error: {e}"));
                }
            }
            merge_progress.set(None);
            merging.set(false);
        });
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
            <p>
                "Or the merged model: the adapter folded into the base weights (read again from where the model came, in their original precision, not the quantized copy on the GPU), as PEFT's "
                <code>"merge_and_unload()"</code> " + " <code>"save_pretrained"</code>
                " write it. Only " <code>"model.safetensors"</code>
                " is downloaded: the base model's config.json and tokenizer files go with it, unchanged."
            </p>
            <div class="row">
                <button data-testid="download-merged" on:click=merge disabled=move || !merge_ready()>
                    "Download merged model"
                </button>
            </div>
            <Show when=move || merge_progress.get().is_some()>
                <progress max="1" value=move || merge_progress.get().unwrap_or(0.0)></progress>
            </Show>
            <p class="status" data-testid="merged-status">{move || merge_status.get()}</p>
        </section>
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

//! Section 7, Export: the adapter in use (trained, picked or kept) as PEFT's two files, byte for byte what
//! `wgtune train` writes (`adapter::encode`), so `PeftModel.from_pretrained` and
//! `wgtune eval --adapter` load them as they are. The files are also kept in browser storage
//! (`store`), so a reload does not lose a finished adapter. Optionally the merged model
//! ([`super::merged`]): what `wgtune merge` writes, streamed, so it works for any model size.

use leptos::prelude::*;
use wgtune::adapter::{CONFIG_FILE, WEIGHTS_FILE};

use super::browser;
use super::port::{self, AdapterFiles, Command};
use super::state::{Progress, Ui};

pub fn view(ui: Ui) -> impl IntoView {
    let status = ui.export_status;
    let click =
        move |which: AdapterFiles| move |_| port::send(Command::SaveAdapter(which), Vec::new());
    let merging = move || ui.merge.with(|p| p.busy);
    // The adapter in use belongs to the loaded model (trained on it, picked for it, or kept
    // and adopted for it).
    let ready = move || ui.adapter.with(|a| a.is_some());
    let merge_ready =
        move || ready() && !ui.loading.get() && !merging() && ui.model.with(|m| m.is_some());
    // The save dialog must open from the click itself (a user gesture); the worker then
    // writes into the chosen file as the merge makes it.
    let merge = move |_| {
        if ui.merge.with_untracked(|p| p.busy) {
            return;
        }
        match browser::save_file_picker("model.safetensors") {
            None => port::send(Command::Merge, Vec::new()),
            Some(picked) => wasm_bindgen_futures::spawn_local(async move {
                match picked.await {
                    Ok(handle) => port::send_saving_to(Command::Merge, Vec::new(), Some(handle)),
                    Err(e) => ui.merge.set(Progress {
                        text: format!("not merged: {e}"),
                        ..Default::default()
                    }),
                }
            }),
        }
    };
    view! {
        <section id="export">
            <h2>"7 · Export"</h2>
            <p>"A PEFT LoRA adapter: " <code>{WEIGHTS_FILE}</code> " and " <code>{CONFIG_FILE}</code> "."</p>
            <div class="row">
                <button data-testid="download-adapter" on:click=click(AdapterFiles::Both) disabled=move || !ready()>
                    "Download the adapter"
                </button>
                <button data-testid="download-adapter-weights" on:click=click(AdapterFiles::Weights) disabled=move || !ready()>
                    {WEIGHTS_FILE}
                </button>
                <button data-testid="download-adapter-config" on:click=click(AdapterFiles::Config) disabled=move || !ready()>
                    {CONFIG_FILE}
                </button>
            </div>
            <p class="small" data-testid="export-kept">
                {move || {
                    ui.kept
                        .get()
                        .map(|k| {
                            format!(
                                "Kept in this browser: the adapter trained on {} with {} ({} steps); it survives a reload.",
                                k.model, k.data, k.steps
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
                " is written, into the file you choose, as it is made (the File System Access API of Chrome and Edge), so even gpt2-xl's 6.4 GB never sit in memory; the base model's config.json and tokenizer files go with it, unchanged."
            </p>
            <div class="row">
                <button data-testid="download-merged" on:click=merge disabled=move || !merge_ready()>
                    "Save merged model…"
                </button>
            </div>
            <Show when=move || ui.merge.with(|p| p.fraction.is_some())>
                <progress max="1" value=move || ui.merge.with(|p| p.fraction.unwrap_or(0.0))></progress>
            </Show>
            <p class="status" data-testid="merged-status">{move || ui.merge.with(|p| p.text.clone())}</p>
        </section>
    }
}

//! Section 1, Model: a hub preset (downloaded once, then served from the Cache API), a base
//! URL of a Hugging Face–layout folder, or local files; quantized on load.

use leptos::html;
use leptos::prelude::*;
use wgtune::model::Quant;
use wgtune::model::config::{PRESETS, hub_id};

use super::app::{ModelInfo, Ui};
use super::browser;
use super::data_panel;
use super::engine::{self, ModelBytes, TokenizerBytes, WeightsSource};

/// Where to take model files from.
enum Source {
    Url(String),
    Files(Vec<web_sys::File>),
}

pub fn view(ui: Ui) -> impl IntoView {
    let url: NodeRef<html::Input> = NodeRef::new();
    let files: NodeRef<html::Input> = NodeRef::new();
    let quant = RwSignal::new("nf4".to_string());
    let preset = RwSignal::new("gpt2".to_string());
    let load = move |src: Source| {
        if ui.loading.get_untracked() {
            return;
        }
        let q: Quant = quant.get_untracked().parse().unwrap_or(Quant::Nf4 {
            double_quant: false,
        });
        leptos::task::spawn_local(async move {
            ui.loading.set(true);
            ui.model_progress.set(Some(0.0));
            match load_model(ui, src, q).await {
                Ok(info) => {
                    ui.model_status.set(format!(
                        "Loaded {}: {} layers, {} embd, {} heads, {} positions, {} parameters; base weights {} on the GPU: {:.1} MiB; page memory {:.0} MiB.",
                        info.name,
                        info.n_layer,
                        info.n_embd,
                        info.n_head,
                        info.n_positions,
                        info.params,
                        info.quant,
                        info.weight_bytes as f64 / (1 << 20) as f64,
                        browser::wasm_memory_bytes() / (1 << 20) as f64
                    ));
                    ui.model.set(Some(info));
                    adopt_kept_adapter(ui);
                    data_panel::refresh(ui);
                }
                Err(e) => {
                    browser::console_error(&e);
                    ui.model_status.set(format!("error: {e}"));
                }
            }
            ui.model_progress.set(None);
            ui.loading.set(false);
        });
    };
    let load_from_inputs = move |_| {
        let picked = files
            .get_untracked()
            .map(|i| browser::files_of(i.files()))
            .unwrap_or_default();
        let base = url.get_untracked().map(|i| i.value()).unwrap_or_default();
        if !picked.is_empty() {
            load(Source::Files(picked));
        } else if !base.trim().is_empty() {
            load(Source::Url(base.trim().to_string()));
        } else {
            ui.model_status
                .set("error: choose model files or enter a base URL first".into());
        }
    };
    let load_preset = move |_| {
        let id = hub_id(&preset.get_untracked()).to_string();
        load(Source::Url(format!("{}/{id}/resolve/main", hub_base())));
    };
    view! {
        <section id="model">
            <h2>"1 · Model"</h2>
            <div class="row">
                <label>
                    "Hugging Face preset "
                    <select data-testid="model-preset" on:change=move |ev| preset.set(event_target_value(&ev))>
                        {PRESETS
                            .iter()
                            .map(|(short, _)| {
                                view! { <option value=*short selected=*short == "gpt2">{*short}</option> }
                            })
                            .collect_view()}
                    </select>
                </label>
                <button data-testid="model-preset-load" on:click=load_preset disabled=move || ui.loading.get()>
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
                        placeholder="https://host/models/gpt2 (config.json, model.safetensors, tokenizer.json)"
                        size="48"
                    />
                </label>
            </div>
            <div class="row">
                <label>
                    "or local files "
                    <input data-testid="model-files" node_ref=files type="file" multiple=true accept=".json,.safetensors,.txt" />
                </label>
                <button data-testid="model-load" on:click=load_from_inputs disabled=move || ui.loading.get()>
                    "Load"
                </button>
            </div>
            <div class="row">
                <label>
                    "Base weights on the GPU "
                    <select data-testid="model-quant" on:change=move |ev| quant.set(event_target_value(&ev))>
                        <option value="nf4" selected=true>"NF4 (QLoRA)"</option>
                        <option value="nf4-dq">"NF4 + double quant"</option>
                        <option value="f16">"f16"</option>
                        <option value="f32">"f32"</option>
                    </select>
                </label>
            </div>
            <Show when=move || ui.model_progress.get().is_some()>
                <progress max="1" value=move || ui.model_progress.get().unwrap_or(0.0)></progress>
            </Show>
            <p data-testid="model-status" class="status">{move || ui.model_status.get()}</p>
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

async fn load_model(ui: Ui, src: Source, quant: Quant) -> Result<ModelInfo, String> {
    let gpu = engine::gpu().await?;
    let (name, files, mut weights, source) = match src {
        Source::Url(base) => {
            let base = base.trim_end_matches('/').to_string();
            let (files, weights) = fetch_folder(ui, &base).await?;
            let source = WeightsSource::Url(format!("{base}/model.safetensors"));
            (base, files, weights, source)
        }
        Source::Files(list) => {
            let (files, weights) = read_picked(ui, &list).await?;
            let file = list
                .iter()
                .find(|f| f.name() == "model.safetensors")
                .ok_or("model.safetensors is missing among the chosen files")?;
            let source = WeightsSource::File(file.clone());
            ("local".to_string(), files, weights, source)
        }
    };
    let parsed = engine::parse_model_files(&name, &files)?;
    ui.model_status
        .set(format!("Loading model.safetensors into the GPU ({quant})…"));
    ui.model_progress.set(Some(0.0));
    // Chunk by chunk, letting the page paint between chunks.
    let progress = |p: engine::BuildProgress| {
        if let Some(t) = p.total.filter(|&t| t > 0) {
            ui.model_progress.set(Some(p.built as f64 / t as f64));
        }
        let total = p
            .total
            .map(|t| format!(" of {:.1}", mib(t)))
            .unwrap_or_default();
        ui.model_status.set(format!(
            "Loading model.safetensors ({quant}): {:.1}{total} MiB read, {:.1} MiB built on the GPU",
            mib(p.received),
            mib(p.built)
        ));
    };
    let total = weights.total;
    let loaded = engine::build_model(
        &gpu,
        &name,
        source,
        parsed,
        &mut weights.chunks,
        total,
        quant,
        progress,
    )
    .await?;
    // The copy going into the model cache completes once the body was read.
    weights.stored().await;
    let c = &loaded.model.config;
    Ok(ModelInfo {
        name: name.clone(),
        n_layer: c.n_layer,
        n_embd: c.n_embd,
        n_head: c.n_head,
        n_positions: c.n_positions,
        vocab_size: c.vocab_size,
        params: c.num_params(),
        quant: quant.to_string(),
        weight_bytes: loaded.model.weight_bytes(),
    })
}

/// Download (or take from the cache) the small files of a Hugging Face–layout folder, and
/// open its model.safetensors as a stream.
async fn fetch_folder(ui: Ui, base: &str) -> Result<(ModelBytes, browser::Download), String> {
    let get = async |file: &str, required: bool| -> Result<Option<Vec<u8>>, String> {
        let url = format!("{base}/{file}");
        ui.model_status.set(format!("Downloading {url}…"));
        let mut progress = |done: u64, total: Option<u64>| {
            if let Some(t) = total.filter(|&t| t > 0) {
                ui.model_progress.set(Some(done as f64 / t as f64));
            }
            ui.model_status.set(match total {
                Some(t) => format!("Downloading {file}: {:.1} / {:.1} MiB", mib(done), mib(t)),
                None => format!("Downloading {file}: {:.1} MiB", mib(done)),
            });
        };
        let got = browser::fetch_cached(&url, &mut progress).await?;
        if got.is_none() && required {
            return Err(format!("{url}: not found (404)"));
        }
        Ok(got)
    };
    let config = get("config.json", true).await?.unwrap_or_default();
    let tokenizer = match get("tokenizer.json", false).await? {
        Some(t) => TokenizerBytes::Json(t),
        None => {
            let v = get("vocab.json", true).await?.unwrap_or_default();
            let m = get("merges.txt", true).await?.unwrap_or_default();
            TokenizerBytes::VocabMerges(v, m)
        }
    };
    let url = format!("{base}/model.safetensors");
    ui.model_status.set(format!("Downloading {url}…"));
    let weights = browser::open_cached(&url)
        .await?
        .ok_or_else(|| format!("{url}: not found (404)"))?;
    Ok((ModelBytes { config, tokenizer }, weights))
}

/// Read the small model files the user picked (recognised by their names) and open
/// model.safetensors to be read in slices.
async fn read_picked(
    ui: Ui,
    list: &[web_sys::File],
) -> Result<(ModelBytes, browser::Download), String> {
    let find = |name: &str| list.iter().find(|f| f.name() == name);
    let need = |name: &str| {
        find(name).ok_or_else(|| {
            format!("{name} is missing among the chosen files: choose config.json, model.safetensors and tokenizer.json (or vocab.json + merges.txt) together")
        })
    };
    let read = async |f: &web_sys::File| {
        ui.model_status.set(format!("Reading {}…", f.name()));
        browser::read_file(f).await
    };
    let config = read(need("config.json")?).await?;
    let weights = browser::Download::of_file(need("model.safetensors")?.clone());
    let tokenizer = match find("tokenizer.json") {
        Some(f) => TokenizerBytes::Json(read(f).await?),
        None => TokenizerBytes::VocabMerges(
            read(need("vocab.json").map_err(|_| tokenizer_missing())?).await?,
            read(need("merges.txt").map_err(|_| tokenizer_missing())?).await?,
        ),
    };
    Ok((ModelBytes { config, tokenizer }, weights))
}

fn tokenizer_missing() -> String {
    "no tokenizer among the chosen files: add tokenizer.json (or vocab.json + merges.txt)".into()
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// After a reload, the kept adapter becomes usable for generation again once the model it
/// was trained on is loaded.
fn adopt_kept_adapter(ui: Ui) {
    let (Some(m), Some(meta)) = (engine::model(), ui.kept.get_untracked()) else {
        return;
    };
    if meta.model != m.name {
        return;
    }
    if let Err(e) = engine::adopt_adapter_files(&m) {
        browser::console_error(&format!("the kept adapter does not fit {}: {e}", m.name));
    }
}

//! Loading a model (engine worker): a Hugging Face–layout folder at a URL (a hub preset's,
//! downloaded once and then served from the Cache API) or the files the user picked;
//! config.json and the tokenizer are read whole, model.safetensors is streamed into the GPU
//! and quantized tensor by tensor.

use leptos::prelude::*;
use wgtune::model::Quant;

use super::app::{ModelInfo, Ui};
use super::browser;
use super::engine::{self, ModelBytes, TokenizerBytes, WeightsSource};
use super::preview;

/// Where to take model files from.
pub enum Source {
    Url(String),
    Files(Vec<web_sys::File>),
}

/// Load a model from `src`, quantized as `quant` says, reporting in the Model section; one
/// load at a time.
pub fn start(ui: Ui, src: Source, quant: &str) {
    if ui.loading.get_untracked() {
        return;
    }
    let q: Quant = quant.parse().unwrap_or(Quant::Nf4 {
        double_quant: false,
    });
    ui.loading.set(true);
    ui.model_progress.set(Some(0.0));
    leptos::task::spawn_local(async move {
        match load_model(ui, src, q).await {
            Ok(info) => {
                ui.model_status.set(format!(
                    "Loaded {}: {} layers, {} embd, {} heads, {} positions, {} parameters; base weights {} on the GPU: {:.1} MiB; engine memory {:.0} MiB.",
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
                preview::refresh(ui);
            }
            Err(e) => {
                browser::console_error(&e);
                ui.model_status.set(format!("error: {e}"));
            }
        }
        ui.model_progress.set(None);
        ui.loading.set(false);
    });
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

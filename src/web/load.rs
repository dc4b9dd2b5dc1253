//! Loading a model (engine worker): a Hugging Face–layout folder at a URL (a hub preset's,
//! downloaded once and then served from the Cache API) or the files the user picked;
//! config.json and the tokenizer are read whole, model.safetensors is streamed into the GPU
//! and quantized tensor by tensor.

use std::path::Path;
use std::rc::Rc;

use wgtune::adapter::{CONFIG_FILE, WEIGHTS_FILE, params_from_weights, parse_config_for};
use wgtune::model::{ModelConfig, Quant};

use super::browser::{self, mib};
use super::engine::{self, Adapter, ModelBytes, TokenizerBytes, WeightsSource};
use super::port::{self, AdapterInfo, Event, ModelInfo, emit};
use super::{learned, preview, store};

/// Where to take model files from.
pub enum Source {
    Url(String),
    Files(Vec<web_sys::File>),
}

fn status(text: String, progress: Option<f64>) {
    emit(Event::ModelStatus { text, progress });
}

/// Load a model from `src`, quantized as the settings' `--quant` says, reporting in the
/// Model section. The caller runs it as an exclusive task: a run, generation, evaluation or
/// merge holds the model, and a second load would race the first.
pub async fn run(src: Source) {
    let quant = engine::settings().quant;
    emit(Event::Loading(true));
    status("Loading…".into(), Some(0.0));
    learned::use_adapter(None);
    match load_model(src, quant).await {
        Ok(info) => {
            status(
                format!(
                    "Loaded {} ({}): {} layers, {} embd, {} heads, {} positions, {} parameters; base weights {} on the GPU: {:.1} MiB; engine memory {:.0} MiB.",
                    info.name,
                    info.family,
                    info.n_layer,
                    info.n_embd,
                    info.n_head,
                    info.n_positions,
                    info.params,
                    info.quant,
                    info.weight_bytes as f64 / (1 << 20) as f64,
                    browser::wasm_memory_bytes() / (1 << 20) as f64
                ),
                None,
            );
            emit(Event::Model(Some(info)));
            adopt_kept_adapter().await;
            preview::refresh();
        }
        Err(e) => {
            port::console_error(&e);
            status(format!("error: {e}"), None);
            if engine::model().is_none() {
                emit(Event::Model(None));
            }
        }
    }
    emit(Event::Loading(false));
}

/// A load refused (`why`): the model in use stays.
pub fn refused(why: String) {
    status(format!("error: {why}; the model in use stays"), None);
    emit(Event::Loading(false));
}

async fn load_model(src: Source, quant: Quant) -> Result<ModelInfo, String> {
    let gpu = engine::gpu().await?;
    let (name, files, mut weights, source) = match src {
        Source::Url(base) => {
            let base = base.trim_end_matches('/').to_string();
            let (files, weights) = fetch_folder(&base).await?;
            let source = WeightsSource::Url(format!("{base}/model.safetensors"));
            (base, files, weights, source)
        }
        Source::Files(list) => {
            let (files, weights) = read_picked(&list).await?;
            let file = list
                .iter()
                .find(|f| f.name() == "model.safetensors")
                .ok_or("model.safetensors is missing among the chosen files")?;
            let source = WeightsSource::File(file.clone());
            ("local".to_string(), files, weights, source)
        }
    };
    let parsed = engine::parse_model_files(&name, &files)?;
    status(
        format!("Loading model.safetensors into the GPU ({quant})…"),
        Some(0.0),
    );
    // Chunk by chunk, letting the page paint between chunks.
    let progress = |p: engine::BuildProgress| {
        let (fraction, total) = browser::progress_of(p.built, p.total);
        status(
            format!(
                "Loading model.safetensors ({quant}): {:.1}{total} MiB read, {:.1} MiB built on the GPU",
                mib(p.received),
                mib(p.built)
            ),
            fraction,
        );
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
    let c = &loaded.config;
    let (n_embd, n_head) = match c {
        ModelConfig::Gpt2(g) => (g.n_embd, g.n_head),
        ModelConfig::Llama(l) => (l.hidden_size, l.num_attention_heads),
    };
    fit_targets(c);
    Ok(ModelInfo {
        name: name.clone(),
        family: c.family().to_string(),
        n_layer: c.n_layer(),
        n_embd,
        n_head,
        n_positions: c.n_positions(),
        vocab_size: c.vocab_size(),
        params: c.num_params(),
        quant: quant.to_string(),
        weight_bytes: loaded.model().weight_bytes(),
        chat_template: loaded.chat.is_some(),
    })
}

/// Targets of the other family (GPT-2's default `c_attn` when a Llama loads, or back) become
/// the loaded family's default, shown in the settings: a run would refuse them.
fn fit_targets(model: &ModelConfig) {
    let mut s = engine::settings();
    if s.lora().validate_for(model).is_err() {
        s.targets = model.default_targets();
        engine::set_settings(s.clone());
        emit(Event::Settings(s));
    }
}

/// Download (or take from the cache) the small files of a Hugging Face–layout folder, and
/// open its model.safetensors as a stream.
async fn fetch_folder(base: &str) -> Result<(ModelBytes, browser::Download), String> {
    let get = async |file: &str, required: bool| -> Result<Option<Vec<u8>>, String> {
        let url = format!("{base}/{file}");
        status(format!("Downloading {url}…"), None);
        let mut progress = |done: u64, total: Option<u64>| {
            let fraction = total.filter(|&t| t > 0).map(|t| done as f64 / t as f64);
            let text = match total {
                Some(t) => format!("Downloading {file}: {:.1} / {:.1} MiB", mib(done), mib(t)),
                None => format!("Downloading {file}: {:.1} MiB", mib(done)),
            };
            status(text, fraction);
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
    let tokenizer_config = get("tokenizer_config.json", false).await?;
    let url = format!("{base}/model.safetensors");
    status(format!("Downloading {url}…"), None);
    let weights = browser::open_cached(&url)
        .await?
        .ok_or_else(|| format!("{url}: not found (404)"))?;
    let files = ModelBytes {
        config,
        tokenizer,
        tokenizer_config,
    };
    Ok((files, weights))
}

/// Read the small model files the user picked (recognised by their names) and open
/// model.safetensors to be read in slices.
async fn read_picked(list: &[web_sys::File]) -> Result<(ModelBytes, browser::Download), String> {
    let find = |name: &str| list.iter().find(|f| f.name() == name);
    let need = |name: &str| {
        find(name).ok_or_else(|| {
            format!("{name} is missing among the chosen files: choose config.json, model.safetensors and tokenizer.json (or vocab.json + merges.txt) together")
        })
    };
    let read = async |f: &web_sys::File| {
        status(format!("Reading {}…", f.name()), None);
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
    let tokenizer_config = match find("tokenizer_config.json") {
        Some(f) => Some(read(f).await?),
        None => None,
    };
    let files = ModelBytes {
        config,
        tokenizer,
        tokenizer_config,
    };
    Ok((files, weights))
}

fn tokenizer_missing() -> String {
    "no tokenizer among the chosen files: add tokenizer.json (or vocab.json + merges.txt)".into()
}

/// After a reload, the kept adapter becomes the adapter in use again once the model it was
/// trained on is loaded.
pub async fn adopt_kept_adapter() {
    let (Some(m), Some(kept)) = (engine::model(), store::kept_adapter().await) else {
        return;
    };
    if kept.meta.model != m.name {
        return;
    }
    let adopt = || -> Result<Adapter, String> {
        let text = std::str::from_utf8(&kept.config).map_err(|e| e.to_string())?;
        let lora =
            parse_config_for(text, Path::new(CONFIG_FILE), &m.config).map_err(|e| e.to_string())?;
        let params = params_from_weights(&kept.weights, Path::new(WEIGHTS_FILE), &m.config, &lora)
            .map_err(|e| e.to_string())?;
        let info = AdapterInfo::of(&lora, "kept from an earlier run in this browser", false);
        Ok(Adapter {
            lora,
            params,
            files: Rc::new((kept.weights.clone(), kept.config.clone())),
            info,
        })
    };
    match adopt() {
        Ok(a) => learned::use_adapter(Some(a)),
        Err(e) => port::console_error(&format!("the kept adapter does not fit {}: {e}", m.name)),
    }
}

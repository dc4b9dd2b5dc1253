//! `--model`: a local directory, or a hub id fetched through the standard Hugging Face cache
//! (HF_HOME; HF_HUB_OFFLINE=1 uses the cache only), with a progress bar.

use std::path::{Path, PathBuf};

use wgtune::err;
use wgtune::error::Result;
use wgtune::model::model_config::hub_id;

const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
/// Fetched when the repository has them: the chat template (tokenizer_config.json, or
/// transformers 5's chat_template.jinja) and generation defaults.
const OPTIONAL: [&str; 3] = [
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
];

/// The directory holding the model's files.
pub fn resolve(model: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if model.starts_with(['.', '/', '~']) || path.exists() {
        return Err(err!("--model {model}: no such directory"));
    }
    let id = hub_id(model).to_string();
    let hint = format!(
        "pass --model DIR with a local Hugging Face model directory ({})",
        FILES.join(", ")
    );
    // huggingface_hub's rule for its boolean variables (constants._is_true).
    let offline = std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"));
    let mut dir = None;
    for file in FILES {
        let got = if offline {
            hf_hub::Cache::from_env()
                .model(id.clone())
                .get(file)
                .ok_or_else(|| err!("{id}: {file} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; {hint}"))?
        } else {
            let api = hf_hub::api::sync::ApiBuilder::from_env()
                .with_progress(true)
                .build()
                .map_err(|e| err!("cannot set up Hugging Face downloads: {e}"))?;
            api.model(id.clone())
                .get(file)
                .map_err(|e| err!("cannot download {file} of {id} from the Hugging Face hub ({e}); offline? {hint}"))?
        };
        dir = got.parent().map(Path::to_path_buf);
    }
    // Files a repository may lack: a miss is no error (they land in the same snapshot
    // directory when present).
    for file in OPTIONAL {
        if offline {
            let _ = hf_hub::Cache::from_env().model(id.clone()).get(file);
        } else if let Ok(api) = hf_hub::api::sync::ApiBuilder::from_env().build() {
            let _ = api.model(id.clone()).get(file);
        }
    }
    dir.ok_or_else(|| err!("{id}: no files"))
}

//! What the page keeps in browser storage (the Cache API) so that a reload or a crashed tab
//! loses nothing: the last finished adapter (its two PEFT files) and the last checkpoint of a
//! training run (the files of `wgtune train --save-every`'s checkpoint directories, plus the
//! metrics so far for the chart). Each is written files first and its `meta.json` last; a
//! checkpoint's files are named by step, so the meta always points at a complete set, as the
//! CLI's rename-into-place does.

use serde::{Deserialize, Serialize};
use wgtune::model::Gpt2Config;
use wgtune::train::checkpoint::{self, Checkpoint};
use wgtune::train::job::StepRecord;
use wgtune::train::settings::TrainSettings;

use super::browser::{forget, keep, kept};

const ADAPTER_META: &str = "/wgtune/adapter/meta.json";
const ADAPTER_WEIGHTS: &str = "/wgtune/adapter/adapter_model.safetensors";
const ADAPTER_CONFIG: &str = "/wgtune/adapter/adapter_config.json";
const CHECKPOINT_META: &str = "/wgtune/checkpoint/meta.json";

/// Which run a kept adapter came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterMeta {
    pub model: String,
    pub data: String,
    pub steps: u32,
}

pub struct KeptAdapter {
    pub meta: AdapterMeta,
    pub weights: Vec<u8>,
    pub config: Vec<u8>,
}

pub async fn keep_adapter(a: &KeptAdapter) -> Result<(), String> {
    keep(ADAPTER_WEIGHTS, &a.weights).await?;
    keep(ADAPTER_CONFIG, &a.config).await?;
    let meta = serde_json::to_vec(&a.meta).map_err(|e| e.to_string())?;
    keep(ADAPTER_META, &meta).await
}

pub async fn kept_adapter() -> Option<KeptAdapter> {
    let meta: AdapterMeta = serde_json::from_slice(&kept(ADAPTER_META).await?).ok()?;
    Some(KeptAdapter {
        meta,
        weights: kept(ADAPTER_WEIGHTS).await?,
        config: kept(ADAPTER_CONFIG).await?,
    })
}

/// Which run a kept checkpoint belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub model: String,
    pub data: String,
    pub step: u32,
    pub total_steps: usize,
    /// The run's settings, which the page shows again after a reload (a resume needs them,
    /// `--quant` before the model loads).
    pub settings: TrainSettings,
}

fn file_key(step: u32, name: &str) -> String {
    format!("/wgtune/checkpoint/step-{step}/{name}")
}

const METRICS: &str = "metrics.json";

/// Keep `c` with the run's step records so far, replacing the checkpoint of
/// `previous_step` (whose files are then dropped).
pub async fn keep_checkpoint(
    meta: &CheckpointMeta,
    c: &Checkpoint,
    config: &Gpt2Config,
    records: &[StepRecord],
    previous_step: Option<u32>,
) -> Result<(), String> {
    let step = meta.step;
    for (name, bytes) in c.encode(config).map_err(|e| e.to_string())? {
        keep(&file_key(step, name), &bytes).await?;
    }
    let metrics = serde_json::to_vec(records).map_err(|e| e.to_string())?;
    keep(&file_key(step, METRICS), &metrics).await?;
    let m = serde_json::to_vec(meta).map_err(|e| e.to_string())?;
    keep(CHECKPOINT_META, &m).await?;
    if let Some(p) = previous_step.filter(|&p| p != step) {
        forget_files(p).await;
    }
    Ok(())
}

pub async fn kept_checkpoint_meta() -> Option<CheckpointMeta> {
    serde_json::from_slice(&kept(CHECKPOINT_META).await?).ok()
}

/// The kept checkpoint, read for a model of `config`, and the step records up to it.
pub async fn kept_checkpoint(
    config: &Gpt2Config,
) -> Result<(CheckpointMeta, Checkpoint, Vec<StepRecord>), String> {
    let meta = kept_checkpoint_meta()
        .await
        .ok_or("no checkpoint is kept in this browser")?;
    let mut files = Vec::new();
    for name in checkpoint::FILES {
        let bytes = kept(&file_key(meta.step, name))
            .await
            .ok_or_else(|| format!("the kept checkpoint has no {name}"))?;
        files.push((name, bytes));
    }
    let read = |name: &str| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| wgtune::err!("{name}: missing"))
    };
    let label = |name: &str| format!("kept checkpoint of step {}/{name}", meta.step);
    let ck = Checkpoint::decode(&read, &label, config).map_err(|e| e.to_string())?;
    let records = match kept(&file_key(meta.step, METRICS)).await {
        Some(b) => serde_json::from_slice(&b).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    Ok((meta, ck, records))
}

async fn forget_files(step: u32) {
    for name in checkpoint::FILES.into_iter().chain([METRICS]) {
        forget(&file_key(step, name)).await;
    }
}

pub async fn forget_checkpoint() {
    if let Some(meta) = kept_checkpoint_meta().await {
        forget(CHECKPOINT_META).await;
        forget_files(meta.step).await;
    }
}

//! What the page keeps in browser storage (the Cache API) so that a reload or a crashed tab
//! loses nothing: the last finished adapter (its two PEFT files) and the last checkpoint of a
//! training run (the files of `wgtune train --save-every`'s checkpoint directories, plus the
//! metrics so far for the chart).
//!
//! Each is kept as one unit, as the CLI's directory swap: its files go under keys of a new
//! generation (`/wgtune/adapter/<n>/...`), then the one pointer record (`meta.json`, which
//! names the generation) is replaced, then the previous generation's files are dropped. A tab
//! that dies at any moment leaves the pointer naming a complete set, old or new; files of a
//! generation no pointer names are overwritten by the next save. (Pointers written before
//! generations existed name none: their files sit at the old fixed keys, still read.)

use serde::{Deserialize, Serialize};
use wgtune::model::ModelConfig;
use wgtune::train::checkpoint::{self, Checkpoint};
use wgtune::train::job::StepRecord;
use wgtune::train::settings::TrainSettings;

use super::browser::{forget, keep, kept};

const ADAPTER_META: &str = "/wgtune/adapter/meta.json";
const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
const ADAPTER_CONFIG: &str = "adapter_config.json";
const CHECKPOINT_META: &str = "/wgtune/checkpoint/meta.json";
/// The autotuner's choices (`Tuned::to_json`: they carry the adapter and driver they hold for).
const KERNELS: &str = "/wgtune/kernels.json";

/// A pointer record: what the page shows of a kept set, and the generation of its files.
#[derive(Serialize, Deserialize)]
struct Pointer<M> {
    #[serde(flatten)]
    meta: M,
    #[serde(default)]
    generation: Option<u64>,
}

async fn pointer<M: serde::de::DeserializeOwned>(key: &str) -> Option<Pointer<M>> {
    serde_json::from_slice(&kept(key).await?).ok()
}

/// The generation after the one `previous` names (1 for the first).
fn next<M>(previous: &Option<Pointer<M>>) -> u64 {
    previous
        .as_ref()
        .and_then(|p| p.generation)
        .map_or(1, |g| g + 1)
}

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

/// An adapter file's key in a generation (`None`: the fixed keys of older pages).
fn adapter_key(generation: Option<u64>, name: &str) -> String {
    match generation {
        Some(g) => format!("/wgtune/adapter/{g}/{name}"),
        None => format!("/wgtune/adapter/{name}"),
    }
}

pub async fn keep_adapter(a: &KeptAdapter) -> Result<(), String> {
    let previous = pointer::<AdapterMeta>(ADAPTER_META).await;
    let generation = next(&previous);
    keep(&adapter_key(Some(generation), ADAPTER_WEIGHTS), &a.weights).await?;
    keep(&adapter_key(Some(generation), ADAPTER_CONFIG), &a.config).await?;
    let meta = serde_json::to_vec(&Pointer {
        meta: a.meta.clone(),
        generation: Some(generation),
    })
    .map_err(|e| e.to_string())?;
    keep(ADAPTER_META, &meta).await?;
    if let Some(old) = previous {
        for name in [ADAPTER_WEIGHTS, ADAPTER_CONFIG] {
            forget(&adapter_key(old.generation, name)).await;
        }
    }
    Ok(())
}

pub async fn kept_adapter() -> Option<KeptAdapter> {
    let p = pointer::<AdapterMeta>(ADAPTER_META).await?;
    Some(KeptAdapter {
        weights: kept(&adapter_key(p.generation, ADAPTER_WEIGHTS)).await?,
        config: kept(&adapter_key(p.generation, ADAPTER_CONFIG)).await?,
        meta: p.meta,
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

/// A checkpoint file's key: in a generation, or (older pages) by step.
fn file_key(generation: Option<u64>, step: u32, name: &str) -> String {
    match generation {
        Some(g) => format!("/wgtune/checkpoint/{g}/{name}"),
        None => format!("/wgtune/checkpoint/step-{step}/{name}"),
    }
}

const METRICS: &str = "metrics.json";

/// Keep `c` with the run's step records so far, replacing the kept checkpoint (whose files,
/// named by the pointer record, are then dropped).
pub async fn keep_checkpoint(
    meta: &CheckpointMeta,
    c: &Checkpoint,
    config: &ModelConfig,
    records: &[StepRecord],
) -> Result<(), String> {
    let previous = pointer::<CheckpointMeta>(CHECKPOINT_META).await;
    let generation = Some(next(&previous));
    for (name, bytes) in c.encode(config).map_err(|e| e.to_string())? {
        keep(&file_key(generation, meta.step, name), &bytes).await?;
    }
    let metrics = serde_json::to_vec(records).map_err(|e| e.to_string())?;
    keep(&file_key(generation, meta.step, METRICS), &metrics).await?;
    let m = serde_json::to_vec(&Pointer {
        meta: meta.clone(),
        generation,
    })
    .map_err(|e| e.to_string())?;
    keep(CHECKPOINT_META, &m).await?;
    if let Some(old) = previous {
        forget_files(old.generation, old.meta.step).await;
    }
    Ok(())
}

pub async fn kept_checkpoint_meta() -> Option<CheckpointMeta> {
    pointer::<CheckpointMeta>(CHECKPOINT_META)
        .await
        .map(|p| p.meta)
}

/// The kept checkpoint, read for a model of `config`, and the step records up to it.
pub async fn kept_checkpoint(
    config: &ModelConfig,
) -> Result<(CheckpointMeta, Checkpoint, Vec<StepRecord>), String> {
    let Pointer { meta, generation } = pointer::<CheckpointMeta>(CHECKPOINT_META)
        .await
        .ok_or("no checkpoint is kept in this browser")?;
    let mut files = Vec::new();
    for name in checkpoint::FILES {
        let bytes = kept(&file_key(generation, meta.step, name))
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
    let records = match kept(&file_key(generation, meta.step, METRICS)).await {
        Some(b) => serde_json::from_slice(&b).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    Ok((meta, ck, records))
}

async fn forget_files(generation: Option<u64>, step: u32) {
    for name in checkpoint::FILES.into_iter().chain([METRICS]) {
        forget(&file_key(generation, step, name)).await;
    }
}

pub async fn forget_checkpoint() {
    if let Some(p) = pointer::<CheckpointMeta>(CHECKPOINT_META).await {
        forget(CHECKPOINT_META).await;
        forget_files(p.generation, p.meta.step).await;
    }
}

/// Keep the autotuner's choices, so that a reload (and a resumed run) takes them instead of
/// timing afresh. One record, replaced whole.
pub async fn keep_kernels(json: &str) -> Result<(), String> {
    keep(KERNELS, json.as_bytes()).await
}

/// The autotuner's choices kept by an earlier visit.
pub async fn kept_kernels() -> Option<String> {
    String::from_utf8(kept(KERNELS).await?).ok()
}

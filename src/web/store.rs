//! What the page keeps in browser storage (the Cache API) so that a reload or a crashed tab
//! loses nothing: the last finished adapter (its two PEFT files) and the last checkpoint of a
//! training run (LoRA parameters, AdamW moments, position, settings, the loss curve so far).
//! Each is written blobs first and its `meta.json` last; a checkpoint's blobs are named by
//! step, so the meta always points at a complete set, as the CLI's rename-into-place does.

use serde::{Deserialize, Serialize};
use wgtune::train::checkpoint::TrainerState;

use super::browser::{forget, keep, kept};
use super::settings::Settings;

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
    pub loss: f64,
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

/// A training run's state at the end of an optimizer step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub model: String,
    pub data: String,
    pub settings: Settings,
    pub state: TrainerState,
    pub losses: Vec<(u32, f32)>,
    pub val_losses: Vec<(u32, f32)>,
}

pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub params: Vec<f32>,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

fn blob_key(step: u32, what: &str) -> String {
    format!("/wgtune/checkpoint/step-{step}/{what}.f32")
}

const BLOBS: [&str; 3] = ["params", "exp_avg", "exp_avg_sq"];

/// Keep `c`, replacing the checkpoint of `previous_step` (whose blobs are then dropped).
pub async fn keep_checkpoint(c: &Checkpoint, previous_step: Option<u32>) -> Result<(), String> {
    let step = c.meta.state.step;
    for (what, v) in BLOBS.iter().zip([&c.params, &c.exp_avg, &c.exp_avg_sq]) {
        keep(&blob_key(step, what), bytemuck::cast_slice(v)).await?;
    }
    let meta = serde_json::to_vec(&c.meta).map_err(|e| e.to_string())?;
    keep(CHECKPOINT_META, &meta).await?;
    if let Some(p) = previous_step.filter(|&p| p != step) {
        for what in BLOBS {
            forget(&blob_key(p, what)).await;
        }
    }
    Ok(())
}

pub async fn kept_checkpoint_meta() -> Option<CheckpointMeta> {
    serde_json::from_slice(&kept(CHECKPOINT_META).await?).ok()
}

pub async fn kept_checkpoint() -> Option<Checkpoint> {
    let meta = kept_checkpoint_meta().await?;
    let step = meta.state.step;
    let floats = |b: Vec<u8>| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect()
    };
    Some(Checkpoint {
        params: floats(kept(&blob_key(step, "params")).await?),
        exp_avg: floats(kept(&blob_key(step, "exp_avg")).await?),
        exp_avg_sq: floats(kept(&blob_key(step, "exp_avg_sq")).await?),
        meta,
    })
}

pub async fn forget_checkpoint() {
    if let Some(meta) = kept_checkpoint_meta().await {
        forget(CHECKPOINT_META).await;
        for what in BLOBS {
            forget(&blob_key(meta.state.step, what)).await;
        }
    }
}

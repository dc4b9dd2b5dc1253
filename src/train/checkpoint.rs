//! Resumable checkpoints: the PEFT adapter, the AdamW moments, the trainer's position (step,
//! epoch, cursor in the epoch's order), the run's settings and a fingerprint of its training
//! data. [`Checkpoint::encode`] gives the files, which the CLI writes into a directory
//! (renamed into place whole) and the page keeps in browser storage; a resume reads them back
//! with [`Checkpoint::decode`] and refuses a change that would break exact continuation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::adapter::{self, CONFIG_FILE, WEIGHTS_FILE};
use crate::error::Result;
use crate::lora::{Layout, LoraConfig};
use crate::model::ModelConfig;
use crate::train::settings::TrainSettings;
use crate::{bail, err};

pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// A checkpoint's files, in the order they are written: the state file goes last, so its
/// presence marks a complete checkpoint.
pub const FILES: [&str; 4] = [WEIGHTS_FILE, CONFIG_FILE, OPTIMIZER_FILE, STATE_FILE];

/// Where training stands; with the same data and settings this reproduces the rest of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: u32,
    pub epoch: usize,
    /// Next example index within the epoch's order.
    pub cursor: usize,
    pub seed: u64,
    pub total_steps: usize,
    pub tokens_seen: u64,
    /// Examples in the training set.
    pub train_examples: usize,
}

/// What `trainer_state.json` holds: the position and what the run was made of.
#[derive(Serialize, Deserialize)]
struct StateFile {
    #[serde(flatten)]
    state: TrainerState,
    settings: TrainSettings,
    data_fingerprint: String,
    base_model: String,
}

/// A training run's state at the end of an optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub lora: LoraConfig,
    pub params: Vec<f32>,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
    pub state: TrainerState,
    pub settings: TrainSettings,
    /// [`crate::train::prepare::fingerprint`] of the training examples.
    pub data_fingerprint: String,
    /// The base model's name, as the adapter's `base_model_name_or_path`.
    pub base_model: String,
}

impl Checkpoint {
    /// The checkpoint's files, named as in [`FILES`] and in that order.
    pub fn encode(&self, model: &ModelConfig) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let layout = Layout::new(model, &self.lora);
        let nf4 = self.settings.quant.is_nf4();
        let (weights, config) = adapter::encode(
            &self.lora,
            &layout,
            &self.params,
            &self.base_model,
            model,
            nf4,
        )?;
        let views = [("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)]
            .into_iter()
            .map(|(n, v)| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    vec![v.len()],
                    bytemuck::cast_slice(v),
                )
                .map(|t| (n.to_string(), t))
                .map_err(|e| err!("optimizer state: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let optimizer = safetensors::serialize(views, None::<HashMap<String, String>>)
            .map_err(|e| err!("optimizer state: {e}"))?;
        let state = serde_json::to_vec_pretty(&StateFile {
            state: self.state.clone(),
            settings: self.settings.clone(),
            data_fingerprint: self.data_fingerprint.clone(),
            base_model: self.base_model.clone(),
        })
        .expect("the state serializes");
        Ok(vec![
            (WEIGHTS_FILE, weights),
            (CONFIG_FILE, config),
            (OPTIMIZER_FILE, optimizer),
            (STATE_FILE, state),
        ])
    }

    /// Read a checkpoint back from its files; `read(name)` gives a file's bytes or says why
    /// not, `label(name)` names it in errors.
    pub fn decode(
        read: &dyn Fn(&str) -> Result<Vec<u8>>,
        label: &dyn Fn(&str) -> String,
        model: &ModelConfig,
    ) -> Result<Checkpoint> {
        let bytes = read(STATE_FILE).map_err(|e| err!("{e}; not a complete wgtune checkpoint"))?;
        let saved: StateFile = serde_json::from_slice(&bytes).map_err(|e| {
            err!(
                "{}: {e} (made by an older wgtune? resume is possible only from checkpoints that record their settings)",
                label(STATE_FILE)
            )
        })?;
        let cpath = label(CONFIG_FILE);
        let text =
            String::from_utf8(read(CONFIG_FILE)?).map_err(|_| err!("{cpath}: not UTF-8 text"))?;
        let lora = adapter::parse_config_for(&text, std::path::Path::new(&cpath), model)?;
        let wpath = label(WEIGHTS_FILE);
        let params = adapter::params_from_weights(
            &read(WEIGHTS_FILE)?,
            std::path::Path::new(&wpath),
            model,
            &lora,
        )?;
        let opath = label(OPTIMIZER_FILE);
        let bytes = read(OPTIMIZER_FILE)?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err!("{opath}: {e}"))?;
        let get = |n: &str| -> Result<Vec<f32>> {
            let t = st.tensor(n).map_err(|_| err!("{opath}: missing {n}"))?;
            if t.dtype() != safetensors::Dtype::F32 {
                bail!("{opath}: {n} must be F32");
            }
            let v: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                bail!(
                    "{opath}: {n} holds {} at element {i}: the checkpoint is damaged",
                    v[i]
                );
            }
            if v.len() != params.len() {
                bail!(
                    "{opath}: {n} has {} values, the adapter {}",
                    v.len(),
                    params.len()
                );
            }
            Ok(v)
        };
        Ok(Checkpoint {
            exp_avg: get("exp_avg")?,
            exp_avg_sq: get("exp_avg_sq")?,
            lora,
            params,
            state: saved.state,
            settings: saved.settings,
            data_fingerprint: saved.data_fingerprint,
            base_model: saved.base_model,
        })
    }
}

/// Write a checkpoint directory. It is built in full next to `dir` (`<dir>.partial`, every
/// file synced) and swapped into place ([`crate::adapter::replace_dir`]), so that a kill at
/// any moment leaves either the previous complete checkpoint or the new one, never a mixture.
/// What an earlier killed save left is settled first.
#[cfg(not(target_arch = "wasm32"))]
pub fn save(dir: &std::path::Path, ck: &Checkpoint, model: &ModelConfig) -> Result<()> {
    use crate::adapter::{replace_dir, settle_dir, sibling, write_synced};
    let files = ck.encode(model)?;
    settle_dir(dir)?;
    let partial = sibling(dir, "partial");
    std::fs::create_dir_all(&partial)
        .map_err(|e| err!("{}: cannot create: {e}", partial.display()))?;
    for (name, bytes) in &files {
        if let Err(e) = write_synced(&partial.join(name), bytes) {
            let _ = std::fs::remove_dir_all(&partial);
            bail!("{}: cannot write the checkpoint ({e})", dir.display());
        }
    }
    replace_dir(&partial, dir)
}

/// Finish what killed saves left in `out` (a run's `--out`): every `checkpoint-N` whose swap
/// was interrupted gets its complete set back under its name, stale `.old` / `.partial`
/// directories go. A run calls this before it reads or writes checkpoints there.
#[cfg(not(target_arch = "wasm32"))]
pub fn settle_all(out: &std::path::Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(()); // no --out yet
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            let base = n
                .strip_suffix(".old")
                .or_else(|| n.strip_suffix(".partial"))?;
            base.starts_with("checkpoint-").then(|| base.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    for n in names {
        crate::adapter::settle_dir(&out.join(n))?;
    }
    Ok(())
}

/// Read a checkpoint directory written by [`save`] (after a kill inside its final swap, the
/// complete set it left: [`crate::adapter::current_dir`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn load(dir: &std::path::Path, model: &ModelConfig) -> Result<Checkpoint> {
    let dir = &crate::adapter::current_dir(dir);
    let label = |name: &str| dir.join(name).display().to_string();
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| err!("{}: cannot read ({e})", p.display()))
    };
    Checkpoint::decode(&read, &label, model)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::adapter::sibling;
    use crate::lora::init_params;

    /// Saving over an existing checkpoint replaces it whole and leaves no `.partial` / `.old`
    /// directory; a stale `.partial` from a killed save is cleared first. What is read back
    /// is what was saved.
    #[test]
    fn a_second_save_replaces_the_checkpoint_and_leaves_nothing_behind() {
        let model =
            ModelConfig::from(crate::model::Gpt2Config::preset_shape("distilgpt2").unwrap());
        let settings = TrainSettings {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            ..Default::default()
        };
        let lora = settings.lora();
        let layout = Layout::new(&model, &lora);
        let root = std::env::temp_dir().join(format!("wgtune-ck-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("checkpoint-3");
        std::fs::create_dir_all(sibling(&dir, "partial")).unwrap();
        std::fs::write(sibling(&dir, "partial").join("junk"), b"x").unwrap();
        for (seed, step) in [(1, 3), (2, 4)] {
            let ck = Checkpoint {
                params: init_params(&layout, lora.r, seed),
                exp_avg: vec![0.5; layout.len],
                exp_avg_sq: vec![0.25; layout.len],
                lora: lora.clone(),
                state: TrainerState {
                    step,
                    epoch: 0,
                    cursor: 0,
                    seed,
                    total_steps: 10,
                    tokens_seen: 0,
                    train_examples: 5,
                },
                settings: settings.clone(),
                data_fingerprint: "0123456789abcdef".into(),
                base_model: "m".into(),
            };
            save(&dir, &ck, &model).unwrap();
            assert_eq!(load(&dir, &model).unwrap(), ck);
        }
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["checkpoint-3"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}

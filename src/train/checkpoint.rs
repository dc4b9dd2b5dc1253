//! Resumable checkpoints: the PEFT adapter, the AdamW moments and the trainer's position
//! (step, epoch, cursor in the epoch's order, seed), each file written atomically.

#[cfg(not(target_arch = "wasm32"))]
use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use serde::{Deserialize, Serialize};

#[cfg(not(target_arch = "wasm32"))]
use crate::{
    adapter::{self, replace_dir, sibling, write_atomic},
    bail, err,
    error::Result,
    lora::{Layout, LoraConfig},
    model::Gpt2Config,
};

pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

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
    /// Examples in the training set (a resume with other data is refused).
    pub train_examples: usize,
}

/// Write a checkpoint directory. It is built in full next to `dir` (`<dir>.partial`) and
/// renamed into place, so that a kill at any moment leaves either the previous complete
/// checkpoint or the new one, never a mixture.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)] // the pieces of a checkpoint, each from a different owner
pub fn save(
    dir: &Path,
    lora: &LoraConfig,
    layout: &Layout,
    params: &[f32],
    exp_avg: &[f32],
    exp_avg_sq: &[f32],
    state: &TrainerState,
    base_model: &str,
    model: &Gpt2Config,
    nf4_base: bool,
) -> Result<()> {
    let partial = sibling(dir, "partial");
    if partial.exists() {
        // Left by an earlier run that was killed while saving.
        std::fs::remove_dir_all(&partial)
            .map_err(|e| err!("{}: cannot remove: {e}", partial.display()))?;
    }
    adapter::save_dir(
        &partial,
        lora,
        layout,
        params,
        base_model,
        model.n_layer,
        nf4_base,
    )?;
    let views = [("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)]
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
    let bytes = safetensors::serialize(views, None::<HashMap<String, String>>)
        .map_err(|e| err!("optimizer state: {e}"))?;
    write_atomic(&partial.join(OPTIMIZER_FILE), &bytes)?;
    // The state file goes last: its presence marks a complete checkpoint.
    let json = serde_json::to_string_pretty(state).expect("JSON");
    write_atomic(&partial.join(STATE_FILE), json.as_bytes())?;
    replace_dir(&partial, dir)
}

/// A loaded checkpoint.
#[cfg(not(target_arch = "wasm32"))]
pub struct Checkpoint {
    pub lora: LoraConfig,
    pub params: Vec<f32>,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
    pub state: TrainerState,
}

#[cfg(not(target_arch = "wasm32"))]
pub fn load(dir: &Path, model: &Gpt2Config) -> Result<Checkpoint> {
    let spath = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&spath).map_err(|e| {
        err!(
            "{}: cannot read ({e}); not a complete wgtune checkpoint",
            spath.display()
        )
    })?;
    let state: TrainerState =
        serde_json::from_str(&text).map_err(|e| err!("{}: {e}", spath.display()))?;
    let (lora, params) = adapter::load_dir(dir, model)?;
    let opath = dir.join(OPTIMIZER_FILE);
    let bytes = std::fs::read(&opath).map_err(|e| err!("{}: cannot read: {e}", opath.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| err!("{}: {e}", opath.display()))?;
    let get = |n: &str| -> Result<Vec<f32>> {
        let t = st
            .tensor(n)
            .map_err(|_| err!("{}: missing {n}", opath.display()))?;
        if t.dtype() != safetensors::Dtype::F32 {
            bail!("{}: {n} must be F32", opath.display());
        }
        Ok(bytemuck::pod_collect_to_vec(t.data()))
    };
    Ok(Checkpoint {
        exp_avg: get("exp_avg")?,
        exp_avg_sq: get("exp_avg_sq")?,
        lora,
        params,
        state,
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::lora::init_params;

    /// Saving over an existing checkpoint replaces it whole and leaves no `.partial` / `.old`
    /// directory; a stale `.partial` from a killed save is cleared first.
    #[test]
    fn a_second_save_replaces_the_checkpoint_and_leaves_nothing_behind() {
        let model = Gpt2Config::preset_shape("distilgpt2").unwrap();
        let lora = LoraConfig {
            r: 2,
            lora_alpha: 4.0,
            lora_dropout: 0.0,
            target_modules: vec!["c_attn".into()],
            use_rslora: false,
        };
        let layout = Layout::new(&model, &lora);
        let root = std::env::temp_dir().join(format!("wgtune-ck-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("checkpoint-3");
        std::fs::create_dir_all(sibling(&dir, "partial")).unwrap();
        std::fs::write(sibling(&dir, "partial").join("junk"), b"x").unwrap();
        let zeros = vec![0.0; layout.len];
        for (seed, step) in [(1, 3), (2, 4)] {
            let params = init_params(&layout, lora.r, seed);
            let state = TrainerState {
                step,
                epoch: 0,
                cursor: 0,
                seed,
                total_steps: 10,
                tokens_seen: 0,
                train_examples: 5,
            };
            save(
                &dir, &lora, &layout, &params, &zeros, &zeros, &state, "m", &model, false,
            )
            .unwrap();
            let c = load(&dir, &model).unwrap();
            assert_eq!((c.state.step, c.params), (step, params));
        }
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["checkpoint-3"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}

//! What a run will do, decided on the host before any GPU work: the settings as resolved
//! against an adapter or checkpoint to continue from, the initial LoRA parameters, the
//! number of steps, the largest batch shape and the (capped) validation batches.

use crate::bail;
use crate::data::Example;
use crate::error::Result;
use crate::lora::{Layout, LoraConfig, init_params, trainable_line};
use crate::model::ModelConfig;
use crate::train::Batch;
use crate::train::batches::make_batch;
use crate::train::checkpoint::{Checkpoint, TrainerState};
use crate::train::prepare::TrainData;
use crate::train::settings::{Given, TrainSettings};

/// Where the LoRA parameters of a run come from.
pub enum Start {
    /// PEFT's initialisation (A kaiming-uniform, B zero), seeded by `--seed`.
    Fresh,
    /// An existing PEFT adapter (ours or PEFT's), named `name` in messages; the optimizer
    /// starts afresh.
    Adapter {
        name: String,
        lora: LoraConfig,
        params: Vec<f32>,
    },
    /// A checkpoint: the adapter, the AdamW moments and the position in the data.
    Resume {
        name: String,
        checkpoint: Box<Checkpoint>,
    },
}

impl Start {
    /// The start a command line asks for: `--resume DIR` (a checkpoint), `--init-adapter DIR`
    /// (a PEFT adapter), or neither (a fresh adapter).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(
        resume: Option<&std::path::Path>,
        init_adapter: Option<&std::path::Path>,
        cfg: &ModelConfig,
    ) -> Result<Start> {
        Ok(match (resume, init_adapter) {
            (Some(dir), _) => Start::Resume {
                name: dir.display().to_string(),
                checkpoint: Box::new(crate::train::checkpoint::load(dir, cfg)?),
            },
            (None, Some(dir)) => {
                let (lora, params) = crate::adapter::load_dir(dir, cfg)?;
                let name = dir.display().to_string();
                Start::Adapter { name, lora, params }
            }
            (None, None) => Start::Fresh,
        })
    }

    /// Bring `settings` in line with what this start fixes: the model family's default
    /// targets for a fresh adapter, an adapter's LoRA settings, a checkpoint's settings.
    /// Contradicting flags the user gave are errors naming them.
    pub fn resolve(
        &self,
        settings: &mut TrainSettings,
        given: &Given,
        cfg: &ModelConfig,
    ) -> Result<()> {
        match self {
            Start::Fresh => {
                settings.default_targets_for(cfg, given);
                settings.lora().validate_for(cfg)
            }
            Start::Adapter { name, lora, .. } => {
                settings.adopt_lora(lora, given, cfg, &format!("the adapter {name}"))
            }
            Start::Resume { name, checkpoint } => {
                settings.adopt_checkpoint(&checkpoint.settings, given, name)
            }
        }
    }
}

/// Where a resumed run continues: its position and AdamW moments.
pub struct Continuation {
    pub state: TrainerState,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

/// The largest micro-batch a run on these examples forms: (sequences, tokens). A batch
/// never holds more sequences, nor longer ones, than the data has.
pub fn max_batch(
    s: &TrainSettings,
    seq_len: usize,
    train: &[Example],
    val: &[Example],
) -> (usize, usize) {
    let longest = train.iter().chain(val).map(|e| e.ids.len()).max();
    (
        s.batch_size.min(train.len().max(val.len())).max(1),
        longest.unwrap_or(seq_len).min(seq_len),
    )
}

/// A run, planned.
pub struct Plan {
    /// The settings in force (resolved by [`Start::resolve`]).
    pub settings: TrainSettings,
    pub lora: LoraConfig,
    /// The LoRA parameters the first step starts from.
    pub params: Vec<f32>,
    pub resume: Option<Continuation>,
    pub data: TrainData,
    pub seq_len: usize,
    pub total_steps: usize,
    /// The largest micro-batch: sequences and tokens (what the memory check uses).
    pub max_batch: (usize, usize),
    /// The validation batches each evaluation runs (`--val-batches` of them at most).
    pub val_batches: Vec<Batch>,
    /// Validation examples those batches hold.
    pub val_examples: usize,
    /// How the adapter's `base_model_name_or_path` names the base model.
    pub base_model: String,
    /// Padding (and EOS) token.
    pub pad: u32,
}

impl Plan {
    /// Plan a run of `settings` (already resolved against `start`) on `data`.
    pub fn new(
        settings: TrainSettings,
        cfg: &ModelConfig,
        base_model: &str,
        pad: u32,
        data: TrainData,
        start: Start,
    ) -> Result<Plan> {
        let s = &settings;
        s.check()?;
        let seq_len = s.seq_len_for(cfg)?;
        let (lora, params, resume) = match start {
            Start::Fresh => {
                let lora = s.lora();
                let layout = Layout::new(cfg, &lora);
                let params = init_params(&layout, lora.r, s.seed);
                (lora, params, None)
            }
            Start::Adapter { lora, params, .. } => (lora, params, None),
            Start::Resume {
                name,
                checkpoint: ck,
            } => {
                if ck.data_fingerprint != data.fingerprint {
                    bail!(
                        "{name}: the checkpoint was made on other training data ({} examples, fingerprint {}; now {} examples, {}): resume with the same data file and settings",
                        ck.state.train_examples,
                        ck.data_fingerprint,
                        data.train.len(),
                        data.fingerprint
                    );
                }
                let ck = *ck;
                let resume = Continuation {
                    state: ck.state,
                    exp_avg: ck.exp_avg,
                    exp_avg_sq: ck.exp_avg_sq,
                };
                (ck.lora, ck.params, Some(resume))
            }
        };
        let micro_per_epoch = data.train.len().div_ceil(s.batch_size);
        let total_steps = s
            .max_steps
            .unwrap_or((s.epochs * micro_per_epoch).div_ceil(s.grad_accum));
        if let Some(r) = &resume
            && r.state.step as usize >= total_steps
        {
            bail!(
                "the checkpoint is at step {} and the run has {total_steps} steps: nothing to resume (raise --max-steps or --epochs)",
                r.state.step
            );
        }
        let max_batch = max_batch(s, seq_len, &data.train, &data.val);
        let val = s.val_batches.take(&data.val, s.batch_size);
        let val_batches = val
            .chunks(s.batch_size)
            .map(|c| make_batch(&c.iter().collect::<Vec<_>>(), pad))
            .collect();
        Ok(Plan {
            val_examples: val.len(),
            settings,
            lora,
            params,
            resume,
            data,
            seq_len,
            total_steps,
            max_batch,
            val_batches,
            base_model: base_model.to_string(),
            pad,
        })
    }

    /// PEFT's trainable-parameters line for this run on a model of `cfg`.
    pub fn trainable_line(&self, cfg: &ModelConfig) -> String {
        trainable_line(Layout::new(cfg, &self.lora).trainable, cfg.num_params())
    }

    /// One line on what the run does, for the user.
    pub fn describe(&self) -> String {
        let s = &self.settings;
        let val = if self.data.val.is_empty() {
            "no validation".to_string()
        } else if self.val_examples < self.data.val.len() {
            format!(
                "{} validation, {} evaluated each time (--val-batches {})",
                self.data.val.len(),
                self.val_examples,
                s.val_batches
            )
        } else {
            format!("{} validation", self.data.val.len())
        };
        format!(
            "training on {} examples ({val}), {} steps of {} x {} sequences, seq-len {}",
            self.data.train.len(),
            self.total_steps,
            s.grad_accum,
            s.batch_size,
            self.seq_len
        )
    }
}

//! A training run over a dataset: which examples form each step (seeded shuffle per epoch),
//! the learning-rate schedule, and the position that a checkpoint records. The CLI drives it;
//! so can the web app's worker.

use crate::data::Example;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::train::batches::{epoch_order, make_batch};
use crate::train::checkpoint::TrainerState;
use crate::train::schedule::{Scheduler, lr_at};
use crate::train::{Batch, LoraTrainer, PendingStep};

/// How examples become optimizer steps.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f32,
    pub scheduler: Scheduler,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub seed: u64,
    pub shuffle: bool,
    /// Token id used for padding (masked out).
    pub pad: u32,
}

/// What one optimizer step did.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub step: u32,
    pub loss: f32,
    pub lr: f32,
    pub grad_norm: f32,
    /// Non-padding tokens processed in this step.
    pub tokens: u64,
}

/// The dropout seed of optimizer step `step` (0-based) of a run seeded `seed`; micro-batch
/// `i` of the step adds `i`, and each adapted module derives its own from that
/// (`model::adapter_ref::dropout_seed`).
///
/// SplitMix64 of the run's seed (all 64 bits of it) and the step.
pub fn step_seed(seed: u64, step: u32) -> u32 {
    let mut z = seed ^ (u64::from(step) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

pub struct Session<'t, 'm> {
    pub trainer: &'t mut LoraTrainer<'m>,
    pub train: &'t [Example],
    pub cfg: RunConfig,
    /// Position after the steps submitted so far.
    pub state: TrainerState,
    order: Vec<usize>,
    /// A submitted step not yet reported, with its (step, lr, tokens).
    pending: Option<(PendingStep, u32, f32, u64)>,
}

impl<'t, 'm> Session<'t, 'm> {
    /// A new run, or the continuation of `resume` (its AdamW state must already be in
    /// `trainer`).
    pub fn new(
        trainer: &'t mut LoraTrainer<'m>,
        train: &'t [Example],
        cfg: RunConfig,
        resume: Option<TrainerState>,
    ) -> Self {
        let state = resume.unwrap_or(TrainerState {
            step: 0,
            epoch: 0,
            cursor: 0,
            seed: cfg.seed,
            total_steps: cfg.total_steps,
            tokens_seen: 0,
            train_examples: train.len(),
        });
        let order = epoch_order(train.len(), cfg.seed, state.epoch as u64, cfg.shuffle);
        Self {
            trainer,
            train,
            cfg,
            state,
            order,
            pending: None,
        }
    }

    /// Whether every step has been submitted.
    pub fn done(&self) -> bool {
        self.state.step as usize >= self.cfg.total_steps
    }

    /// Whether a submitted step is waiting to be reported.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether every step has been submitted and reported.
    pub fn finished(&self) -> bool {
        self.done() && self.pending.is_none()
    }

    fn next_micro_batches(&mut self) -> Vec<Batch> {
        let mut micro = Vec::with_capacity(self.cfg.grad_accum);
        for _ in 0..self.cfg.grad_accum {
            if self.state.cursor >= self.train.len() {
                self.state.epoch += 1;
                self.state.cursor = 0;
                self.order = epoch_order(
                    self.train.len(),
                    self.cfg.seed,
                    self.state.epoch as u64,
                    self.cfg.shuffle,
                );
            }
            let end = (self.state.cursor + self.cfg.batch_size).min(self.train.len());
            let rows: Vec<&Example> = self.order[self.state.cursor..end]
                .iter()
                .map(|&i| &self.train[i])
                .collect();
            self.state.cursor = end;
            micro.push(make_batch(&rows, self.cfg.pad));
        }
        micro
    }

    /// Submit the next optimizer step without waiting for it.
    fn submit(&mut self, gpu: &Gpu) -> Result<(PendingStep, u32, f32, u64)> {
        let micro = self.next_micro_batches();
        let c = &self.cfg;
        let lr = lr_at(
            c.scheduler,
            c.lr,
            self.state.step as usize,
            c.warmup_steps,
            c.total_steps,
        );
        // Dropout masks depend only on (seed, step): a resumed run draws the same ones.
        let seed = step_seed(c.seed, self.state.step);
        let pending = self.trainer.submit_step(gpu, &micro, lr, seed)?;
        let tokens = micro
            .iter()
            .map(|b| b.mask.iter().filter(|&&m| m == 1).count() as u64)
            .sum();
        self.state.step = self.trainer.step;
        self.state.tokens_seen += tokens;
        Ok((pending, self.state.step, lr, tokens))
    }

    /// Run the next optimizer step and wait for it.
    pub async fn step(&mut self, gpu: &Gpu) -> Result<StepReport> {
        self.next_report(gpu, |_| true).await
    }

    /// Report the next step, keeping the GPU busy: the following step is submitted before
    /// this one's loss is read back, unless `pause_after(step)` says the caller needs the
    /// parameters as they are after this step (to evaluate or save a checkpoint).
    pub async fn next_report(
        &mut self,
        gpu: &Gpu,
        pause_after: impl Fn(u32) -> bool,
    ) -> Result<StepReport> {
        let (pending, step, lr, tokens) = match self.pending.take() {
            Some(p) => p,
            None => self.submit(gpu)?,
        };
        if !self.done() && !pause_after(step) {
            self.pending = Some(self.submit(gpu)?);
        }
        let (loss, grad_norm) = pending.finish(gpu).await?;
        Ok(StepReport {
            step,
            loss,
            lr,
            grad_norm,
            tokens,
        })
    }
}

//! The training job: a planned run on the GPU, driven step by step and reported to an
//! [`Observer`]. The CLI's observer draws a progress bar, writes the metrics file and turns
//! signals into a stop; the page's worker posts each step to the page and keeps checkpoints
//! in browser storage. Neither holds step, plan or checkpoint logic of its own.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::bail;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::ModelRef;
use crate::train::LoraTrainer;
use crate::train::checkpoint::Checkpoint;
use crate::train::memory::{self, MemoryEstimate};
use crate::train::plan::Plan;
use crate::train::session::{RunConfig, Session, StepReport};

/// What the front end asks of a running job, checked between optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    Run,
    Pause,
    /// End the run after the step in flight; with `checkpoint`, save a resumable checkpoint
    /// first (what a signal asks of the CLI).
    Stop {
        checkpoint: bool,
    },
}

/// One optimizer step as the `--metrics` file records it (one JSON object a line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u32,
    pub loss: f32,
    pub lr: f32,
    pub grad_norm: f32,
    /// Non-padding tokens processed since the run began (a resumed run counts from its
    /// first run's start).
    pub tokens: u64,
    /// Training tokens per second of training time (evaluation and pauses not counted).
    pub tokens_per_s: f64,
    /// Wall time since this process started the run, pauses excluded.
    pub elapsed_s: f64,
    /// Mean validation loss, when this step evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f32>,
    /// Seconds that evaluation took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_s: Option<f64>,
}

/// How a front end follows and steers a job.
pub trait Observer {
    /// Seconds on a monotonic clock (the job measures its own time with it).
    fn now_s(&self) -> f64;
    /// What the user asks now.
    fn control(&self) -> Control;
    /// A step was reported.
    fn step(&mut self, record: &StepRecord) -> Result<()>;
    /// Keep `checkpoint` (a directory natively, browser storage in the page); returns where
    /// it went, for messages.
    fn checkpoint(&mut self, checkpoint: Checkpoint) -> impl Future<Output = Result<String>>;
    /// Let the host run between steps and while paused (the page's event loop).
    fn idle(&mut self, paused: bool) -> impl Future<Output = ()>;
    /// The autotuner timed the matmul shapes of the first step (`kernels::autotune`): one
    /// line saying what it chose, and how long it took.
    fn kernels_tuned(&mut self, _line: &str) {}
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The trained LoRA parameters.
    pub params: Vec<f32>,
    /// Optimizer steps done (counting those before a resume).
    pub steps: u32,
    pub total_steps: usize,
    pub final_loss: f32,
    /// The last validation loss.
    pub val_loss: Option<f32>,
    pub tokens: u64,
    pub tokens_per_s: f64,
    /// Seconds of training, of evaluation, and in all (pauses excluded).
    pub train_s: f64,
    pub eval_s: f64,
    pub elapsed_s: f64,
    /// Whether the front end stopped the run before its last step.
    pub stopped: bool,
    /// The last checkpoint kept, if any.
    pub checkpoint: Option<String>,
}

/// A planned run with its trainer on the GPU.
pub struct TrainJob<'m> {
    pub plan: Plan,
    pub trainer: LoraTrainer<'m>,
    pub estimate: MemoryEstimate,
}

impl<'m> TrainJob<'m> {
    /// The GPU memory a plan's run needs (what [`TrainJob::new`] checks against the limits).
    pub fn estimate<'a>(gpu: &Gpu, model: impl Into<ModelRef<'a>>, plan: &Plan) -> MemoryEstimate {
        let model = model.into();
        let (b, t) = plan.max_batch;
        let layout = crate::lora::Layout::new(&model.config(), &plan.lora);
        let s = &plan.settings;
        memory::estimate(gpu, model, &layout, &plan.lora, (b, t), s.grad_checkpoint)
    }

    /// Put the plan's trainer on the GPU, after checking that its largest batch fits the
    /// adapter's limits.
    pub fn new(gpu: &Gpu, model: impl Into<ModelRef<'m>>, plan: Plan) -> Result<Self> {
        let model = model.into();
        let s = &plan.settings;
        if model.quant() != s.quant {
            bail!(
                "the model is loaded as {} but the run asks for --quant {}: load it again as {}",
                model.quant(),
                s.quant,
                s.quant
            );
        }
        let estimate = Self::estimate(gpu, model, &plan);
        let (b, t) = plan.max_batch;
        memory::check(gpu, model, &estimate, b, t)?;
        let mut trainer = LoraTrainer::new(gpu, model, plan.lora.clone(), s.optim(), &plan.params)?;
        trainer.grad_checkpoint = s.grad_checkpoint;
        if let Some(r) = &plan.resume {
            trainer.set_optimizer_state(gpu, &r.exp_avg, &r.exp_avg_sq, r.state.step)?;
        }
        Ok(Self {
            plan,
            trainer,
            estimate,
        })
    }

    /// The PEFT files (adapter_model.safetensors, adapter_config.json) of the adapter with
    /// `params`: what the CLI writes to `--out` and the page offers.
    pub fn adapter_files(&self, params: &[f32]) -> Result<(Vec<u8>, Vec<u8>)> {
        let p = &self.plan;
        let nf4 = p.settings.quant.is_nf4();
        crate::adapter::encode(
            &p.lora,
            &self.trainer.layout,
            params,
            &p.base_model,
            &self.trainer.model.config(),
            nf4,
        )
    }

    /// Run every remaining step, reporting each to `obs`; evaluate and save checkpoints as
    /// the settings say; stop when `obs` asks.
    pub async fn run(&mut self, gpu: &Gpu, obs: &mut impl Observer) -> Result<Outcome> {
        let s = self.plan.settings.clone();
        let total = self.plan.total_steps;
        let has_val = !self.plan.val_batches.is_empty();
        let eval_due = |step: u32| {
            has_val
                && ((s.eval_every > 0 && (step as usize).is_multiple_of(s.eval_every))
                    || step as usize == total)
        };
        let save_due = |step: u32| {
            s.save_every > 0
                && (step as usize).is_multiple_of(s.save_every)
                && (step as usize) < total
        };
        let run_cfg = RunConfig {
            batch_size: s.batch_size,
            grad_accum: s.grad_accum,
            lr: s.lr,
            scheduler: s.scheduler,
            warmup_steps: s.warmup_steps,
            total_steps: total,
            seed: s.seed,
            shuffle: !s.no_shuffle,
            pad: self.plan.pad,
        };
        let resumed = self.plan.resume.as_ref().map(|r| {
            let mut st = r.state.clone();
            st.total_steps = total;
            st
        });
        let mut last_checkpoint = None;
        let tune_s = self.tune_kernels(gpu, obs).await?;
        let start = obs.now_s() - tune_s;
        let (mut paused_s, mut eval_s, mut saving_s) = (0.0, 0.0, tune_s);
        let (mut last_loss, mut last_val) = (f32::NAN, None);
        let mut reported_tokens = 0u64;
        let mut session = Session::new(&mut self.trainer, &self.plan.data.train, run_cfg, resumed);
        let tokens_at_start = session.state.tokens_seen;
        let mut stopped = false;
        // The step of the last checkpoint kept in this run (a stop right after a scheduled
        // save does not save the same step twice).
        let mut saved_at = None;
        while !session.finished() {
            // Pause and stop take effect between steps, with no step in flight (a pending
            // step is reported first: `next_report` submits none after it then).
            match obs.control() {
                Control::Pause if !session.has_pending() => {
                    let t0 = obs.now_s();
                    obs.idle(true).await;
                    paused_s += obs.now_s() - t0;
                    continue;
                }
                Control::Stop { checkpoint } if !session.has_pending() => {
                    let step = session.state.step;
                    if checkpoint && reported_tokens > 0 && saved_at != Some(step) {
                        let st = session.state.clone();
                        let ck = checkpoint_of(&self.plan, session.trainer, gpu, &st).await?;
                        last_checkpoint = Some(obs.checkpoint(ck).await?);
                    }
                    stopped = true;
                    break;
                }
                _ => {}
            }
            // The next step is submitted before this one is read back (the GPU stays busy),
            // unless this one's parameters are needed as they are, or the user asks to stop.
            let r = session
                .next_report(gpu, |step| {
                    eval_due(step) || save_due(step) || obs.control() != Control::Run
                })
                .await?;
            let loss = r.loss;
            // Test hooks (feature `test-hooks`): a NaN loss at a step (a real divergence
            // cannot be placed), and a GPU fault that the next read-back reports.
            #[cfg(feature = "test-hooks")]
            let loss = match crate::hooks::step("NAN_AT_STEP") {
                Some(step) if step == r.step => f32::NAN,
                _ => loss,
            };
            #[cfg(feature = "test-hooks")]
            if let Some((kind, step)) = crate::hooks::gpu_fault()
                && step == r.step
            {
                gpu.inject_fault(&kind);
            }
            if !loss.is_finite() || !r.grad_norm.is_finite() {
                bail!("{}", diverged(&r, loss, s.lr, &last_checkpoint));
            }
            last_loss = loss;
            reported_tokens += r.tokens;
            let (val_loss, this_eval) = if eval_due(r.step) {
                let t0 = obs.now_s();
                let v = session
                    .trainer
                    .evaluate(gpu, &self.plan.val_batches)
                    .await?;
                let dt = obs.now_s() - t0;
                eval_s += dt;
                last_val = Some(v);
                (Some(v), Some(dt))
            } else {
                (None, None)
            };
            let elapsed = obs.now_s() - start - paused_s;
            let train_s = (elapsed - eval_s - saving_s).max(1e-9);
            obs.step(&StepRecord {
                step: r.step,
                loss,
                lr: r.lr,
                grad_norm: r.grad_norm,
                tokens: tokens_at_start + reported_tokens,
                tokens_per_s: reported_tokens as f64 / train_s,
                elapsed_s: elapsed,
                val_loss,
                eval_s: this_eval,
            })?;
            if save_due(r.step) {
                let t0 = obs.now_s();
                let st = session.state.clone();
                let ck = checkpoint_of(&self.plan, session.trainer, gpu, &st).await?;
                last_checkpoint = Some(obs.checkpoint(ck).await?);
                saved_at = Some(r.step);
                saving_s += obs.now_s() - t0;
            }
            obs.idle(false).await;
        }
        let steps = session.state.step;
        let tokens = session.state.tokens_seen;
        drop(session);
        let elapsed_s = obs.now_s() - start - paused_s;
        let train_s = (elapsed_s - eval_s - saving_s).max(1e-9);
        Ok(Outcome {
            params: self.trainer.params_host(gpu).await?,
            steps,
            total_steps: total,
            final_loss: last_loss,
            val_loss: last_val,
            tokens,
            tokens_per_s: (tokens - tokens_at_start) as f64 / train_s,
            train_s,
            eval_s,
            elapsed_s,
            stopped,
            checkpoint: last_checkpoint,
        })
    }
}

impl TrainJob<'_> {
    /// Let the autotuner time the matmul shapes of the run (`kernels::autotune`): a step of
    /// the largest batch is recorded, not submitted, so that every shape is known before the
    /// first step and every step runs the same kernels. Returns the seconds it took (a no-op
    /// where tuning is off or every shape came from the cache).
    async fn tune_kernels(&self, gpu: &Gpu, obs: &mut impl Observer) -> Result<f64> {
        if !crate::kernels::autotune::enabled(gpu) {
            return Ok(0.0);
        }
        let t0 = obs.now_s();
        let (b, t) = self.plan.max_batch; // sequences, positions
        if b * t > 0 {
            let n = b * t;
            let probe = crate::train::Batch::from_labels(
                vec![self.plan.pad; n],
                vec![1; n],
                &vec![0; n],
                b,
                t,
            );
            self.trainer.meet_shapes(gpu, &probe)?;
        }
        let clock = || obs.now_s() * 1e3;
        let tuned = crate::kernels::autotune::tune_pending(gpu, &clock).await?;
        let dt = obs.now_s() - t0;
        if !tuned.tuned.is_empty() {
            let line = format!(
                "autotuned {} matmul shape classes in {dt:.1} s ({}): {}",
                tuned.tuned.len(),
                tuned.timer,
                crate::kernels::state(gpu).tuned.lock().unwrap().summary()
            );
            obs.kernels_tuned(&line);
        }
        Ok(dt)
    }
}

async fn checkpoint_of(
    plan: &Plan,
    trainer: &LoraTrainer<'_>,
    gpu: &Gpu,
    state: &crate::train::checkpoint::TrainerState,
) -> Result<Checkpoint> {
    let (exp_avg, exp_avg_sq) = trainer.optimizer_state(gpu).await?;
    Ok(Checkpoint {
        lora: plan.lora.clone(),
        params: trainer.params_host(gpu).await?,
        exp_avg,
        exp_avg_sq,
        state: state.clone(),
        settings: plan.settings.clone(),
        data_fingerprint: plan.data.fingerprint.clone(),
        base_model: plan.base_model.clone(),
    })
}

/// Why training stopped on a non-finite loss or gradient, and how to go on. Resuming the
/// checkpoint as it is would diverge again (a run continues exactly), so the way on is its
/// adapter with a fresh optimizer and a lower learning rate.
fn diverged(r: &StepReport, loss: f32, lr: f32, last_checkpoint: &Option<String>) -> String {
    let what = if loss.is_finite() {
        format!("the gradient norm became {}", r.grad_norm)
    } else {
        format!("the loss became {loss}")
    };
    let next = match last_checkpoint {
        Some(ck) => format!(
            "the last good checkpoint is {ck}: continue from its adapter with --init-adapter {ck} and a lower --lr (now {lr}), or start again with a lower --lr"
        ),
        None => format!(
            "nothing was saved (--save-every N keeps checkpoints): retry with a lower --lr (now {lr})"
        ),
    };
    format!(
        "step {}: {what}, training diverged and stopped; {next}",
        r.step
    )
}

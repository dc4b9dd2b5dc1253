//! LoRA / QLoRA training on the GPU: LoRA parameters, gradients and AdamW moments in flat
//! buffers; each micro-batch records forward + loss + backward; the optimizer step records
//! global-norm clipping and AdamW. Everything of a step is one command submission.

pub mod backward;
pub mod batches;
pub mod checkpoint;
pub mod job;
pub mod llama_backward;
pub mod memory;
pub mod plan;
pub mod prepare;
pub mod schedule;
pub mod session;
pub mod settings;

use crate::bail;
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};
use crate::kernels::optim::{AdamW, NORM_PARTIALS, adamw, grad_norm};
use crate::lora::{Layout, LoraConfig};
use crate::model::acts::Keep;
use crate::model::forward::{AttnSource, Pass};
use crate::model::{AdapterRef, ModelRef};

/// One micro-batch: token ids, padding mask and the label each position predicts.
pub struct Batch {
    pub ids: Vec<u32>,
    pub mask: Vec<u32>,
    /// Position t's target: the label of token t+1, or −100.
    pub targets: Vec<i32>,
    pub b: usize,
    pub t: usize,
}

impl Batch {
    /// From per-sequence labels in transformers' convention (labels[t] is token t's label;
    /// position t predicts labels[t+1]).
    pub fn from_labels(ids: Vec<u32>, mask: Vec<u32>, labels: &[i32], b: usize, t: usize) -> Self {
        let targets = (0..b * t)
            .map(|i| {
                if i % t + 1 < t {
                    labels[i + 1]
                } else {
                    crate::data::IGNORE_INDEX
                }
            })
            .collect();
        Self {
            ids,
            mask,
            targets,
            b,
            t,
        }
    }

    /// Positions whose prediction is trained.
    pub fn trained_tokens(&self) -> usize {
        self.targets.iter().filter(|&&x| x >= 0).count()
    }
}

/// A submitted optimizer step whose results have not been read back yet.
pub struct PendingStep {
    losses: Vec<Tensor>,
    tokens: usize,
    norm: Tensor,
}

impl PendingStep {
    /// Wait for the step and return (mean token loss, gradient norm before clipping).
    pub async fn finish(self, gpu: &Gpu) -> Result<(f32, f32)> {
        let loss = LoraTrainer::mean_loss(gpu, &self.losses, self.tokens).await?;
        Ok((loss, gpu.read_f32(&self.norm).await?[0]))
    }
}

/// AdamW and clipping settings (torch defaults except lr).
#[derive(Clone, Copy, Debug)]
pub struct OptimConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Global gradient-norm clip (<= 0: none).
    pub max_grad_norm: f32,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
        }
    }
}

/// The trainable state of one LoRA run on the GPU.
pub struct LoraTrainer<'m> {
    pub model: ModelRef<'m>,
    pub config: LoraConfig,
    pub layout: Layout,
    pub optim: OptimConfig,
    pub params: Tensor,
    pub grads: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// (grad norm, clip coefficient) of the last step.
    norm: Tensor,
    partials: Tensor,
    /// Optimizer steps taken.
    pub step: u32,
    /// Keep only each layer's input and recompute the rest in the backward pass (less
    /// memory, about a third more compute).
    pub grad_checkpoint: bool,
}

impl<'m> LoraTrainer<'m> {
    /// Start from `params` (a flat vector in `layout` order, e.g. `lora::init_params`).
    pub fn new(
        gpu: &Gpu,
        model: impl Into<ModelRef<'m>>,
        config: LoraConfig,
        optim: OptimConfig,
        params: &[f32],
    ) -> Result<Self> {
        let model = model.into();
        config.validate()?;
        let layout = Layout::new(&model.config(), &config);
        if params.len() != layout.len {
            bail!(
                "LoRA parameters: {} values, layout needs {}",
                params.len(),
                layout.len
            );
        }
        Ok(Self {
            model,
            params: gpu.upload_f32(params),
            grads: gpu.zeros(layout.len),
            exp_avg: gpu.zeros(layout.len),
            exp_avg_sq: gpu.zeros(layout.len),
            norm: gpu.zeros(2),
            partials: gpu.tensor(NORM_PARTIALS),
            layout,
            config,
            optim,
            step: 0,
            grad_checkpoint: false,
        })
    }

    fn adapter(&self, seed: u32) -> AdapterRef<'_> {
        AdapterRef {
            slots: &self.layout.slots,
            params: &self.params,
            rank: self.config.r,
            scale: self.config.scale(),
            p_drop: self.config.lora_dropout,
            seed,
        }
    }

    /// Record forward + loss + backward of one micro-batch, accumulating LoRA gradients
    /// scaled by `grad_scale` (1 / trained tokens of the whole step). Returns the per-position
    /// loss tensor (BT), summed by the caller once read back.
    pub fn record_micro_batch(
        &self,
        cmd: &mut crate::gpu::Commands,
        batch: &Batch,
        grad_scale: f32,
        seed: u32,
    ) -> Result<Tensor> {
        let gpu = cmd.gpu();
        let (b, t) = (batch.b, batch.t);
        self.model.check_batch(gpu, &batch.ids, &batch.mask, b, t)?;
        let ids = gpu.upload_u32(&batch.ids);
        let mask = gpu.upload_u32(&batch.mask);
        let targets: Vec<u32> = batch.targets.iter().map(|&x| x as u32).collect();
        let targets = gpu.upload_u32(&targets);
        let loss = gpu.tensor(batch.b * batch.t);
        let adapter = self.adapter(seed);
        let keep = if self.grad_checkpoint {
            Keep::LayerInputs
        } else {
            Keep::All
        };
        match self.model {
            ModelRef::Gpt2(model) => {
                let src = AttnSource::Batch { mask: &mask };
                let pass = Pass {
                    b,
                    t,
                    src,
                    adapter: Some(&adapter),
                };
                let acts = model.record_forward(cmd, &ids, &pass, keep);
                backward::record_loss_and_backward(
                    model,
                    cmd,
                    &acts,
                    &mask,
                    &targets,
                    &loss,
                    &adapter,
                    &self.grads,
                    grad_scale,
                );
            }
            ModelRef::Llama(model) => {
                let src = AttnSource::Batch { mask: &mask };
                let ad = Some(&adapter);
                let acts = model.record_forward(cmd, &ids, src, (b, t), ad, keep);
                llama_backward::record_loss_and_backward(
                    model,
                    cmd,
                    &acts,
                    &mask,
                    &targets,
                    &loss,
                    &adapter,
                    &self.grads,
                    grad_scale,
                );
            }
        }
        Ok(loss)
    }

    /// Record zeroing of the gradients (start of an optimizer step).
    pub fn record_zero_grad(&self, cmd: &mut crate::gpu::Commands) {
        cmd.clear(&self.grads);
    }

    /// Record clipping + one AdamW step at learning rate `lr`.
    pub fn record_optimizer_step(&mut self, cmd: &mut crate::gpu::Commands, lr: f32) {
        self.step += 1;
        let n = self.layout.len;
        grad_norm(
            cmd,
            &self.norm,
            &self.partials,
            &self.grads,
            n,
            self.optim.max_grad_norm,
        );
        let h = AdamW {
            lr,
            beta1: self.optim.beta1,
            beta2: self.optim.beta2,
            eps: self.optim.eps,
            weight_decay: self.optim.weight_decay,
            step: self.step,
        };
        adamw(
            cmd,
            &self.params,
            &self.exp_avg,
            &self.exp_avg_sq,
            &self.grads,
            &self.norm,
            n,
            &h,
        );
    }

    /// The gradient norm (before clipping) of the last optimizer step.
    pub async fn last_grad_norm(&self, gpu: &Gpu) -> Result<f32> {
        Ok(gpu.read_f32(&self.norm).await?[0])
    }

    /// Record zeroed gradients plus forward/backward of every micro-batch (gradients scaled
    /// by 1 / all their trained tokens); returns the per-position loss tensors and that count.
    fn record_accumulation(
        &self,
        cmd: &mut crate::gpu::Commands,
        micro_batches: &[Batch],
        seed: u32,
    ) -> Result<(Vec<Tensor>, usize)> {
        let tokens: usize = micro_batches.iter().map(Batch::trained_tokens).sum();
        if tokens == 0 {
            bail!("a training step has no trained tokens (all labels are -100)");
        }
        self.record_zero_grad(cmd);
        let losses = micro_batches
            .iter()
            .enumerate()
            .map(|(i, mb)| {
                self.record_micro_batch(cmd, mb, 1.0 / tokens as f32, seed.wrapping_add(i as u32))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((losses, tokens))
    }

    /// Token-weighted mean of the read-back per-position losses.
    async fn mean_loss(gpu: &Gpu, losses: &[Tensor], tokens: usize) -> Result<f32> {
        let mut sum = 0.0f64;
        for l in losses {
            sum += gpu
                .read_f32(l)
                .await?
                .iter()
                .map(|&x| x as f64)
                .sum::<f64>();
        }
        Ok((sum / tokens as f64) as f32)
    }

    /// Record and submit one full optimizer step over `micro_batches` (gradient accumulation)
    /// as one command submission, without waiting for it: the returned [`PendingStep`] reads
    /// its loss and gradient norm back later, so the next step can be submitted first.
    pub fn submit_step(
        &mut self,
        gpu: &Gpu,
        micro_batches: &[Batch],
        lr: f32,
        seed: u32,
    ) -> Result<PendingStep> {
        let mut cmd = gpu.commands();
        let (losses, tokens) = self.record_accumulation(&mut cmd, micro_batches, seed)?;
        self.record_optimizer_step(&mut cmd, lr);
        // The norm buffer is reused by the next step: keep this step's copy.
        let norm = gpu.tensor(2);
        cmd.copy(&self.norm, &norm);
        cmd.submit();
        Ok(PendingStep {
            losses,
            tokens,
            norm,
        })
    }

    /// Record a forward and backward pass over `batch` and drop it unsubmitted: the autotuner
    /// then knows every matmul shape of such a step (`kernels::autotune::choice` notes each
    /// untuned one). Nothing on the GPU changes.
    pub fn meet_shapes(&self, gpu: &Gpu, batch: &Batch) -> Result<()> {
        let mut cmd = gpu.commands();
        self.record_accumulation(&mut cmd, std::slice::from_ref(batch), 0)?;
        drop(cmd);
        Ok(())
    }

    /// [`Self::submit_step`] and wait for its mean token loss (token-weighted over all
    /// micro-batches) and gradient norm before clipping.
    pub async fn train_step(
        &mut self,
        gpu: &Gpu,
        micro_batches: &[Batch],
        lr: f32,
        seed: u32,
    ) -> Result<(f32, f32)> {
        self.submit_step(gpu, micro_batches, lr, seed)?
            .finish(gpu)
            .await
    }

    /// Gradients of the loss of `micro_batches` at the current parameters, without an update
    /// (tests and diagnostics).
    pub async fn gradients(
        &self,
        gpu: &Gpu,
        micro_batches: &[Batch],
        seed: u32,
    ) -> Result<(f32, Vec<f32>)> {
        let mut cmd = gpu.commands();
        let (losses, tokens) = self.record_accumulation(&mut cmd, micro_batches, seed)?;
        cmd.submit();
        let loss = Self::mean_loss(gpu, &losses, tokens).await?;
        Ok((loss, gpu.read_f32(&self.grads).await?))
    }

    pub async fn params_host(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(gpu.read_f32(&self.params).await?)
    }

    /// AdamW moments (exp_avg, exp_avg_sq) for a checkpoint.
    pub async fn optimizer_state(&self, gpu: &Gpu) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            gpu.read_f32(&self.exp_avg).await?,
            gpu.read_f32(&self.exp_avg_sq).await?,
        ))
    }

    /// Restore AdamW moments and the step counter from a checkpoint.
    pub fn set_optimizer_state(
        &mut self,
        gpu: &Gpu,
        exp_avg: &[f32],
        exp_avg_sq: &[f32],
        step: u32,
    ) -> Result<()> {
        if exp_avg.len() != self.layout.len || exp_avg_sq.len() != self.layout.len {
            bail!(
                "optimizer state has {} values, this adapter needs {}",
                exp_avg.len(),
                self.layout.len
            );
        }
        gpu.write(&self.exp_avg, exp_avg);
        gpu.write(&self.exp_avg_sq, exp_avg_sq);
        self.step = step;
        Ok(())
    }

    /// Mean token loss of `batches` with the current adapter, no dropout, no gradients.
    pub async fn evaluate(&self, gpu: &Gpu, batches: &[Batch]) -> Result<f32> {
        let adapter = AdapterRef {
            p_drop: 0.0,
            ..self.adapter(0)
        };
        let (mut sum, mut count) = (0.0f64, 0usize);
        for b in batches {
            let losses = self
                .model
                .position_losses(gpu, &b.ids, &b.mask, &b.targets, b.b, b.t, Some(&adapter))
                .await?;
            sum += losses.iter().map(|&x| x as f64).sum::<f64>();
            count += b.trained_tokens();
        }
        if count == 0 {
            bail!("the validation data has no trained tokens");
        }
        Ok((sum / count as f64) as f32)
    }
}

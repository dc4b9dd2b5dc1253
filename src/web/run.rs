//! The training loop as the page runs it: the same core `Session` the CLI drives, one
//! optimizer step per turn of the browser's event loop so the page stays responsive, with
//! pause / stop between steps, validation losses for the chart, and at the end the loss over
//! the whole data file with the trained adapter (the figure `wgtune eval --adapter` gives).
//! Every validation step it keeps a checkpoint in browser storage, so a run interrupted by a
//! reload, a crashed tab or a lost device resumes where it was, with the same losses.

use leptos::prelude::*;
use wgtune::adapter::encode;
use wgtune::lora::GpuAdapter;
use wgtune::lora::{Layout, init_params, trainable_line};
use wgtune::model::Quant;
use wgtune::model::eval::eval_loss;
use wgtune::train::batches::make_batch;
use wgtune::train::memory;
use wgtune::train::prepare::{PrepareConfig, prepare, split_validation};
use wgtune::train::session::{RunConfig, Session};
use wgtune::train::{Batch, LoraTrainer, OptimConfig};

use super::app::{Phase, Ui};
use super::browser::{self, now_ms, yield_now};
use super::engine::{self, TrainedAdapter};
use super::port::Control;
use super::store;

/// Sequences per batch when evaluating the whole file (as `wgtune eval`'s default).
pub const EVAL_BATCH: usize = 8;

pub async fn train(ui: Ui, resume: bool) -> Result<(), String> {
    let gpu = engine::gpu().await?;
    let m = engine::model().ok_or("load a model first (section 1)")?;
    let d = engine::data().ok_or("choose a JSONL file first (section 2)")?;
    let ckpt = if resume {
        let c = store::kept_checkpoint()
            .await
            .ok_or("no checkpoint is kept in this browser")?;
        if c.meta.model != m.name || c.meta.data != d.name {
            return Err(format!(
                "the checkpoint is of a run on model {} with data {}: load those to resume (loaded: {} and {})",
                c.meta.model, c.meta.data, m.name, d.name
            ));
        }
        ui.settings.set(c.meta.settings.clone());
        Some(c)
    } else {
        None
    };
    let s = ui.settings.get_untracked();
    let cfg = &m.model.config;
    let problems = s.problems(cfg.n_layer);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let t = s.seq_len_for(cfg.n_positions);
    let eos = m.tokenizer.eos_id().unwrap_or(cfg.eos());
    let prep = PrepareConfig {
        seq_len: t,
        train_on_prompt: s.train_on_prompt,
        packing: false,
        eos,
    };
    let all = prepare(&d.dataset, &m.tokenizer, &prep)
        .map_err(|e| e.to_string())?
        .examples;
    if all.is_empty() {
        return Err(format!(
            "{}: no line has a trained token within the sequence length {t} (prompts too long?)",
            d.name
        ));
    }
    let (train, val) = split_validation(all.clone(), s.val_split, s.seed);
    let lora = s.lora();
    let layout = Layout::new(cfg, &lora);
    let est = memory::estimate(
        &gpu,
        &m.model,
        &layout,
        lora.r,
        s.batch_size,
        t,
        s.grad_checkpoint,
    );
    memory::check(&gpu, &m.model, &est, s.batch_size, t).map_err(|e| e.to_string())?;
    let params = match &ckpt {
        Some(c) => c.params.clone(),
        None => init_params(&layout, lora.r, s.seed),
    };
    let optim = OptimConfig {
        weight_decay: s.weight_decay,
        max_grad_norm: s.max_grad_norm,
        ..OptimConfig::default()
    };
    let mut trainer = LoraTrainer::new(&gpu, &m.model, lora.clone(), optim, &params)
        .map_err(|e| e.to_string())?;
    trainer.grad_checkpoint = s.grad_checkpoint;
    let micro_per_epoch = train.len().div_ceil(s.batch_size);
    let total = if s.max_steps > 0 {
        s.max_steps
    } else {
        (s.epochs * micro_per_epoch).div_ceil(s.grad_accum)
    };
    let eval_every = if s.eval_every > 0 {
        s.eval_every
    } else {
        (total / 10).max(1)
    } as u32;
    let val_batches: Vec<Batch> = val
        .chunks(s.batch_size)
        .map(|c| make_batch(&c.iter().collect::<Vec<_>>(), eos))
        .collect();
    let run = RunConfig {
        batch_size: s.batch_size,
        grad_accum: s.grad_accum,
        lr: s.lr,
        scheduler: s.scheduler()?,
        warmup_steps: s.warmup_steps,
        total_steps: total,
        seed: s.seed,
        shuffle: true,
        pad: eos,
    };
    let trainable = trainable_line(layout.trainable, cfg.num_params());
    ui.train.update(|v| {
        v.total = total as u32;
        v.trainable = format!(
            "{trainable} · {} training / {} validation examples · {total} steps of {} × {} sequences of ≤ {t} tokens",
            train.len(),
            val.len(),
            s.grad_accum,
            s.batch_size
        );
    });

    let mut resume_state = None;
    if let Some(c) = &ckpt {
        if c.meta.state.train_examples != train.len() {
            return Err(format!(
                "the checkpoint was made with {} training examples; {} now has {}",
                c.meta.state.train_examples,
                d.name,
                train.len()
            ));
        }
        trainer
            .set_optimizer_state(&gpu, &c.exp_avg, &c.exp_avg_sq, c.meta.state.step)
            .map_err(|e| e.to_string())?;
        resume_state = Some(c.meta.state.clone());
        ui.train.update(|v| {
            v.step = c.meta.state.step;
            v.losses = c.meta.losses.clone();
            v.val_losses = c.meta.val_losses.clone();
        });
    }
    let mut kept_step = resume_state.as_ref().map(|st| st.step);
    let mut session = Session::new(&mut trainer, &train, run, resume_state);
    let start = now_ms();
    let first_step = session.state.step;
    let mut paused_ms = 0.0;
    let mut tokens = 0u64;
    while !session.finished() {
        match engine::control() {
            Control::Stop => break,
            Control::Pause => {
                ui.train.update(|v| {
                    v.phase = Phase::Paused;
                    v.status = format!("paused at step {} of {total}", v.step);
                });
                let t0 = now_ms();
                yield_now(100).await;
                paused_ms += now_ms() - t0;
                continue;
            }
            Control::Run => {}
        }
        let due = |step: u32| step.is_multiple_of(eval_every) || step as usize == total;
        let r = session
            .next_report(&gpu, |step| due(step) || engine::control() != Control::Run)
            .await
            .map_err(|e| e.to_string())?;
        if !r.loss.is_finite() || !r.grad_norm.is_finite() {
            return Err(format!(
                "step {}: the loss or gradient is not finite (loss {}, grad norm {}); lower the learning rate (now {}) and start again",
                r.step, r.loss, r.grad_norm, s.lr
            ));
        }
        tokens += r.tokens;
        let val_loss = if !val_batches.is_empty() && due(r.step) {
            Some(
                session
                    .trainer
                    .evaluate(&gpu, &val_batches)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        let elapsed = (now_ms() - start - paused_ms).max(1.0) / 1000.0;
        ui.train.update(|v| {
            v.phase = Phase::Running;
            v.step = r.step;
            v.losses.push((r.step, r.loss));
            if let Some(l) = val_loss {
                v.val_losses.push((r.step, l));
            }
            v.tokens_per_s = tokens as f64 / elapsed;
            let done_here = (r.step - first_step).max(1) as f64;
            v.eta_s = elapsed / done_here * (total as f64 - r.step as f64);
            v.status = format!(
                "step {} of {total} · loss {:.4}{} · lr {:.2e} · grad norm {:.3}",
                r.step,
                r.loss,
                val_loss
                    .map(|l| format!(" · val {l:.4}"))
                    .unwrap_or_default(),
                r.lr,
                r.grad_norm
            );
        });
        if due(r.step) && !session.finished() {
            let (exp_avg, exp_avg_sq) = session
                .trainer
                .optimizer_state(&gpu)
                .await
                .map_err(|e| e.to_string())?;
            let params = session
                .trainer
                .params_host(&gpu)
                .await
                .map_err(|e| e.to_string())?;
            let (losses, val_losses) = ui
                .train
                .with_untracked(|v| (v.losses.clone(), v.val_losses.clone()));
            let c = store::Checkpoint {
                meta: store::CheckpointMeta {
                    model: m.name.clone(),
                    data: d.name.clone(),
                    settings: s.clone(),
                    state: session.state.clone(),
                    losses,
                    val_losses,
                },
                params,
                exp_avg,
                exp_avg_sq,
            };
            // A full browser storage only costs the ability to resume.
            match store::keep_checkpoint(&c, kept_step).await {
                Ok(()) => {
                    kept_step = Some(r.step);
                    ui.checkpoint.set(Some(c.meta));
                }
                Err(e) => browser::console_error(&e),
            }
        }
        yield_now(0).await;
    }
    let stopped = !session.finished();
    let steps = session.state.step;
    let params = session
        .trainer
        .params_host(&gpu)
        .await
        .map_err(|e| e.to_string())?;
    ui.train.update(|v| {
        v.status = format!("evaluating the adapter on {}…", d.name);
    });
    let adapter = GpuAdapter::new(&gpu, cfg, lora.clone(), &params);
    let ev = eval_loss(
        &gpu,
        &m.model,
        Some(&adapter.as_ref()),
        &all,
        EVAL_BATCH,
        eos,
    )
    .await
    .map_err(|e| format!("{}: {e}", d.name))?;
    let nf4_base = matches!(m.model.quant, Quant::Nf4 { .. });
    let (weights, config) = encode(&lora, &layout, &params, &m.name, cfg.n_layer, nf4_base)
        .map_err(|e| e.to_string())?;
    let kept = store::KeptAdapter {
        meta: store::AdapterMeta {
            model: m.name.clone(),
            data: d.name.clone(),
            steps,
            loss: ev.loss,
        },
        weights,
        config,
    };
    if let Err(e) = store::keep_adapter(&kept).await {
        browser::console_error(&format!("the adapter is not kept for the next visit: {e}"));
    }
    store::forget_checkpoint().await;
    ui.checkpoint.set(None);
    engine::set_adapter_files(kept.weights, kept.config);
    ui.kept.set(Some(kept.meta));
    engine::set_adapter(Some(TrainedAdapter { lora, params }));
    ui.adapter_ready.set(true);
    ui.train.update(|v| {
        v.phase = Phase::Done;
        v.eval_loss = Some((ev.loss, ev.tokens));
        v.status = format!(
            "{} after {steps} of {total} steps · loss over {} with the adapter: {:.6} ({} tokens)",
            if stopped { "stopped; done" } else { "done" },
            d.name,
            ev.loss,
            ev.tokens
        );
    });
    Ok(())
}

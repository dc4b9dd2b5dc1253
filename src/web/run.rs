//! The training loop as the page runs it: the same core `Session` the CLI drives, one
//! optimizer step per turn of the browser's event loop so the page stays responsive, with
//! pause / stop between steps, validation losses for the chart, and at the end the loss over
//! the whole data file with the trained adapter (the figure `wgtune eval --adapter` gives).

use leptos::prelude::*;
use wgtune::lora::{Layout, init_params, trainable_line};
use wgtune::model::Quant;
use wgtune::model::eval::eval_loss;
use wgtune::model::forward::GpuAdapter;
use wgtune::train::batches::make_batch;
use wgtune::train::memory;
use wgtune::train::prepare::{PrepareConfig, prepare, split_validation};
use wgtune::train::session::{RunConfig, Session};
use wgtune::train::{Batch, LoraTrainer, OptimConfig};

use super::app::{Phase, Ui};
use super::browser::{now_ms, yield_now};
use super::engine::{self, Control, TrainedAdapter};

/// Sequences per batch when evaluating the whole file (as `wgtune eval`'s default).
pub const EVAL_BATCH: usize = 8;

pub async fn train(ui: Ui) -> Result<(), String> {
    let gpu = engine::gpu().await?;
    let m = engine::model().ok_or("load a model first (section 1)")?;
    let d = engine::data().ok_or("choose a JSONL file first (section 2)")?;
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
    let params = init_params(&layout, lora.r, s.seed);
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

    let mut session = Session::new(&mut trainer, &train, run, None);
    let start = now_ms();
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
            v.eta_s = elapsed / r.step.max(1) as f64 * (total as f64 - r.step as f64);
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
    engine::set_adapter(Some(TrainedAdapter {
        lora,
        params,
        base_name: m.name.clone(),
        nf4_base: matches!(m.model.quant, Quant::Nf4 { .. }),
    }));
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

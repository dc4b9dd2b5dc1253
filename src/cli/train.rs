//! `wgtune train`: LoRA / QLoRA fine-tuning from the command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use wgtune::data::{self, Example, Format};
use wgtune::error::Result;
use wgtune::gpu::Gpu;
use wgtune::lora::{Layout, init_params, trainable_line};
use wgtune::model::Quant;
use wgtune::train::batches::make_batch;
use wgtune::train::checkpoint::{self, TrainerState};
use wgtune::train::memory;
use wgtune::train::prepare::{PrepareConfig, Prepared, prepare, split_validation};
use wgtune::train::session::{RunConfig, Session};
use wgtune::train::{Batch, LoraTrainer, OptimConfig};
use wgtune::{adapter, bail, err};

use super::interrupt;

mod args;
mod diverged;
mod metrics;

pub use args::TrainArgs;
use args::{check, fresh_lora};
use diverged::{diverged_message, nan_fault_step};

/// The example dataset used when no --data is given.
const EXAMPLE_DATA: &str = "public/examples/alpaca_tiny.jsonl";

fn load_examples(
    path: &Path,
    format: Option<Format>,
    tok: &wgtune::tokenizer::Tokenizer,
    eos: u32,
    a: &TrainArgs,
) -> Result<Vec<Example>> {
    let ds = data::read_jsonl(path, format)?;
    let cfg = PrepareConfig {
        seq_len: a.seq_len,
        train_on_prompt: a.train_on_prompt,
        packing: a.packing,
        eos,
    };
    let Prepared { examples, skipped } = prepare(&ds, tok, &cfg)?;
    if examples.is_empty() {
        bail!(
            "{}: no line has a trained token within --seq-len {} (prompts too long?)",
            path.display(),
            a.seq_len
        );
    }
    if let Some(first) = skipped.first() {
        eprintln!(
            "{}: skipped {} line(s) with no trained token within --seq-len {} (e.g. line {first}): the prompt fills the whole sequence",
            path.display(),
            skipped.len(),
            a.seq_len,
        );
    }
    Ok(examples)
}

/// Run training; the exit status is 0, or [`interrupt::EXIT_CODE`] after a signal.
pub fn run(a: TrainArgs) -> Result<i32> {
    check(&a)?;
    let format = match a.format.as_str() {
        "auto" => None,
        f => Some(f.parse::<Format>().map_err(wgtune::error::Error::new)?),
    };
    let data_path = a
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(EXAMPLE_DATA));
    if a.out.join(adapter::CONFIG_FILE).exists() && !a.overwrite && a.resume.is_none() {
        bail!(
            "{} already holds an adapter; pass --overwrite to replace it, or choose another --out",
            a.out.display()
        );
    }
    // Everything that can be checked on the host is, before a GPU device is opened: a bad
    // file or flag costs no model upload.
    let files = super::open_model(&a.model)?;
    let cfg = files.config.clone();
    if a.seq_len > cfg.n_positions {
        bail!(
            "--seq-len {} exceeds the model's n_positions {}: use --seq-len {} or less",
            a.seq_len,
            cfg.n_positions,
            cfg.n_positions
        );
    }
    let tok = &files.tokenizer;
    let eos = tok.eos_id().unwrap_or(cfg.eos());
    let mut train = load_examples(&data_path, format, tok, eos, &a)?;
    let mut val = match &a.val_data {
        Some(p) => load_examples(p, format, tok, eos, &a)?,
        None => Vec::new(),
    };
    if let Some(frac) = a.val_split {
        if train.len() < 2 {
            bail!(
                "{}: --val-split needs at least 2 training examples, the file has {}",
                data_path.display(),
                train.len()
            );
        }
        (train, val) = split_validation(train, frac, a.seed);
    }

    // LoRA: a fresh PEFT init, a PEFT adapter, or a checkpoint.
    let resume = a
        .resume
        .as_ref()
        .map(|d| checkpoint::load(d, &cfg))
        .transpose()?;
    if let Some(ck) = &resume
        && (ck.state.train_examples != train.len() || ck.state.seed != a.seed)
    {
        bail!(
            "{}: the checkpoint was made with {} training examples and seed {}; this run has {} and {}: resume with the same --data and --seed",
            a.resume.as_ref().unwrap().display(),
            ck.state.train_examples,
            ck.state.seed,
            train.len(),
            a.seed
        );
    }
    let (lora, params) = if let Some(ck) = &resume {
        (ck.lora.clone(), ck.params.clone())
    } else if let Some(dir) = &a.init_adapter {
        adapter::load_dir(dir, &cfg)?
    } else {
        let lora = fresh_lora(&a);
        lora.validate_for(cfg.n_layer)?;
        let layout = Layout::new(&cfg, &lora);
        let p = init_params(&layout, lora.r, a.seed);
        (lora, p)
    };

    let gpu = Gpu::new_blocking()?;
    let model = super::upload_model(&gpu, &a.model, &files, a.quant)?;
    let cfg = &model.config;
    let optim = OptimConfig {
        weight_decay: a.weight_decay,
        max_grad_norm: a.max_grad_norm,
        ..OptimConfig::default()
    };
    let mut trainer = LoraTrainer::new(&gpu, &model, lora.clone(), optim, &params)?;
    trainer.grad_checkpoint = a.grad_checkpoint;
    eprintln!(
        "{}",
        trainable_line(trainer.layout.trainable, cfg.num_params())
    );
    let longest = train.iter().chain(&val).map(|e| e.ids.len()).max();
    let t_max = longest.unwrap_or(a.seq_len).min(a.seq_len);
    // A batch never holds more sequences than the data has.
    let b_max = a.batch_size.min(train.len().max(val.len()));
    let est = memory::estimate(
        &gpu,
        &model,
        &trainer.layout,
        lora.r,
        b_max,
        t_max,
        a.grad_checkpoint,
    );
    eprintln!("{}", est.line());
    memory::check(&gpu, &model, &est, b_max, t_max)?;

    let micro_per_epoch = train.len().div_ceil(a.batch_size);
    let total = a
        .max_steps
        .unwrap_or((a.epochs * micro_per_epoch).div_ceil(a.grad_accum));
    let mut state = TrainerState {
        step: 0,
        epoch: 0,
        cursor: 0,
        seed: a.seed,
        total_steps: total,
        tokens_seen: 0,
        train_examples: train.len(),
    };
    if let Some(ck) = &resume {
        trainer.set_optimizer_state(&gpu, &ck.exp_avg, &ck.exp_avg_sq, ck.state.step)?;
        state = ck.state.clone();
        state.total_steps = total;
        eprintln!("resuming at step {} of {total}", state.step);
    }
    let val_batches: Vec<Batch> = val
        .chunks(a.batch_size)
        .map(|c| make_batch(&c.iter().collect::<Vec<_>>(), eos))
        .collect();
    eprintln!(
        "training on {} examples ({} validation), {total} steps of {} x {} sequences, seq-len {}, {}",
        train.len(),
        val.len(),
        a.grad_accum,
        a.batch_size,
        a.seq_len,
        gpu.adapter_info.name
    );

    let mut metrics = a
        .metrics
        .as_ref()
        .map(|p| metrics::open(p, resume.as_ref().map(|c| c.state.step)))
        .transpose()?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
                .expect("template"),
        );
        pb.set_position(state.step as u64);
        pb
    });
    let base_name = a.model.clone();
    let nf4 = matches!(a.quant, Quant::Nf4 { .. });
    let save_adapter = |trainer: &LoraTrainer| -> Result<()> {
        let p = pollster::block_on(trainer.params_host(&gpu))?;
        adapter::save_dir(
            &a.out,
            &trainer.config,
            &trainer.layout,
            &p,
            &base_name,
            cfg.n_layer,
            nf4,
        )
    };
    let save_checkpoint = |trainer: &LoraTrainer, st: &TrainerState| -> Result<PathBuf> {
        let dir = a.out.join(format!("checkpoint-{}", st.step));
        let p = pollster::block_on(trainer.params_host(&gpu))?;
        let (m, v) = pollster::block_on(trainer.optimizer_state(&gpu))?;
        checkpoint::save(
            &dir,
            &trainer.config,
            &trainer.layout,
            &p,
            &m,
            &v,
            st,
            &base_name,
            cfg,
            nf4,
        )?;
        Ok(dir)
    };

    let start = Instant::now();
    let (mut last_loss, mut last_val) = (f32::NAN, None);
    let tokens_at_start = state.tokens_seen;
    let mut reported_tokens = 0u64;
    let mut last_checkpoint = a.resume.clone();
    let run_cfg = RunConfig {
        batch_size: a.batch_size,
        grad_accum: a.grad_accum,
        lr: a.lr,
        scheduler: a.scheduler,
        warmup_steps: a.warmup_steps,
        total_steps: total,
        seed: a.seed,
        shuffle: !a.no_shuffle,
        pad: eos,
    };
    let resumed = resume.is_some().then(|| state.clone());
    let mut session = Session::new(&mut trainer, &train, run_cfg, resumed);
    let has_val = !val_batches.is_empty();
    // After a signal no further step is submitted: the checkpoint then matches the last
    // reported step.
    let pause_after = |s: u32| {
        let s = s as usize;
        interrupt::requested()
            || (has_val && a.eval_every > 0 && s.is_multiple_of(a.eval_every))
            || (a.save_every > 0 && s.is_multiple_of(a.save_every))
    };
    interrupt::install()?;
    let fault_step = nan_fault_step();
    while !session.finished() {
        let r = pollster::block_on(session.next_report(&gpu, pause_after))?;
        let (mut loss, grad_norm, lr) = (r.loss, r.grad_norm, r.lr);
        if fault_step == Some(r.step) {
            loss = f32::NAN;
        }
        if !loss.is_finite() || !grad_norm.is_finite() {
            if let Some(pb) = &bar {
                pb.abandon();
            }
            bail!(
                "{}",
                diverged_message(&r, loss, grad_norm, &a, &last_checkpoint)
            );
        }
        last_loss = loss;
        let elapsed = start.elapsed().as_secs_f64();
        // state may already include the next, submitted step; count what is reported.
        reported_tokens += r.tokens;
        let tokens_seen = tokens_at_start + reported_tokens;
        let tps = (tokens_seen - tokens_at_start) as f64 / elapsed.max(1e-9);
        let step = r.step as usize;
        let mut val_loss = None;
        if !val_batches.is_empty()
            && a.eval_every > 0
            && (step.is_multiple_of(a.eval_every) || step == total)
        {
            val_loss = Some(pollster::block_on(
                session.trainer.evaluate(&gpu, &val_batches),
            )?);
            last_val = val_loss;
        }
        let mut rec = serde_json::json!({
            "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
            "tokens": tokens_seen, "tokens_per_s": tps, "elapsed_s": elapsed,
        });
        if let Some(v) = val_loss {
            rec["val_loss"] = serde_json::json!(v);
        }
        if let Some(f) = metrics.as_mut() {
            writeln!(f, "{rec}")
                .and_then(|_| f.flush())
                .map_err(|e| err!("--metrics: cannot write: {e}"))?;
        }
        let msg = format!(
            "loss {loss:.4}{} lr {lr:.2e} {tps:.0} tok/s",
            val_loss.map_or(String::new(), |v| format!(" val {v:.4}"))
        );
        match &bar {
            Some(pb) => {
                pb.set_position(step as u64);
                pb.set_message(msg);
            }
            None => eprintln!("step {step}/{total} {msg}"),
        }
        let interrupted = interrupt::requested() && !session.has_pending() && step < total;
        if (a.save_every > 0 && step.is_multiple_of(a.save_every) && step < total) || interrupted {
            let st = session.state.clone();
            last_checkpoint = Some(save_checkpoint(session.trainer, &st)?);
        }
        if interrupted {
            if let Some(pb) = &bar {
                pb.abandon();
            }
            save_adapter(session.trainer)?;
            let ck = last_checkpoint.as_ref().expect("just saved").display();
            eprintln!(
                "interrupted at step {step} of {total}: adapter written to {}, checkpoint to {ck}; continue with the same command plus --resume {ck}",
                a.out.display()
            );
            return Ok(interrupt::EXIT_CODE);
        }
    }
    state = session.state.clone();
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    if !val_batches.is_empty() && last_val.is_none() {
        last_val = Some(pollster::block_on(trainer.evaluate(&gpu, &val_batches))?);
    }
    save_adapter(&trainer)?;
    let elapsed = start.elapsed().as_secs_f64();
    let stats = gpu.pool().stats();
    let summary = serde_json::json!({
        "steps": state.step, "final_loss": last_loss, "val_loss": last_val,
        "tokens": state.tokens_seen,
        "tokens_per_s": (state.tokens_seen - tokens_at_start) as f64 / elapsed.max(1e-9),
        "elapsed_s": elapsed,
        "peak_gpu_mib": stats.peak_allocated as f64 / (1024.0 * 1024.0),
        "adapter": a.out.display().to_string(),
    });
    println!("{summary}");
    Ok(0)
}

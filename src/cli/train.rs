//! `wgtune train`: parse, build the core's training job, run it with an observer that draws
//! a progress bar, writes the metrics file and turns a signal into a checkpoint and a stop.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use wgtune::error::Result;
use wgtune::gpu::Gpu;
use wgtune::model::ModelConfig;
use wgtune::train::checkpoint::{self, Checkpoint};
use wgtune::train::job::{Control, Observer, StepRecord, TrainJob};
use wgtune::train::plan::{Plan, Start};
use wgtune::train::prepare::read_files;
use wgtune::train::settings::Given;
use wgtune::{adapter, err};

use super::interrupt;

mod args;
mod metrics;

pub use args::TrainArgs;

/// The example dataset used when no --data is given.
const EXAMPLE_DATA: &str = "public/examples/alpaca_tiny.jsonl";

/// Run training; the exit status is 0, or [`interrupt::EXIT_CODE`] after a signal.
pub fn run(a: TrainArgs, given: Given) -> Result<i32> {
    // Everything that can be checked on the host is, before a GPU device is opened: a bad
    // file or flag costs no model upload.
    let mut s = a.settings.clone();
    s.check()?;
    args::check_paths(&a)?;
    // A save killed inside its swap left a checkpoint under another name: put it back first.
    checkpoint::settle_all(&a.out)?;
    let files = super::open_model(&a.model)?;
    let cfg = files.config.clone();
    let start = Start::open(a.resume.as_deref(), a.init_adapter.as_deref(), &cfg)?;
    start.resolve(&mut s, &given, &cfg)?;
    let seq_len = s.seq_len_for(&cfg)?;
    let prep = super::prepare_config(&files, &s, seq_len)?;
    let eos = prep.eos;
    let data_path = a
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(EXAMPLE_DATA));
    let data = read_files(
        &s,
        &prep,
        &files.tokenizer,
        &data_path,
        a.val_data.as_deref(),
    )?;
    data.notes.iter().for_each(|n| eprintln!("{n}"));
    let plan = Plan::new(s, &cfg, &a.model, eos, data, start)?;

    let gpu = Gpu::new_blocking()?;
    let model = super::upload_model(&gpu, &a.model, &files, plan.settings.quant)?;
    let resumed_at = plan.resume.as_ref().map(|r| r.state.step);
    eprintln!("{}", plan.trainable_line(&cfg));
    eprintln!("{}", TrainJob::estimate(&gpu, model.as_ref(), &plan).line());
    let mut job = TrainJob::new(&gpu, model.as_ref(), plan)?;
    eprintln!("{}, {}", job.plan.describe(), gpu.adapter_info.name);
    let total = job.plan.total_steps;
    if let Some(step) = resumed_at {
        eprintln!("resuming at step {step} of {total}");
    }
    let mut obs = CliObserver::new(&a, total, resumed_at, cfg.clone())?;
    interrupt::install()?;
    let outcome = pollster::block_on(job.run(&gpu, &mut obs));
    if let Some(pb) = &obs.bar {
        pb.finish_and_clear();
    }
    let o = outcome?;
    adapter::write_dir(&a.out, &job.adapter_files(&o.params)?)?;
    if o.stopped {
        let ck = o.checkpoint.as_deref().unwrap_or("(none)");
        eprintln!(
            "interrupted at step {} of {total}: adapter written to {}, checkpoint to {ck}; continue with the same command plus --resume {ck}",
            o.steps,
            a.out.display()
        );
        return Ok(interrupt::EXIT_CODE);
    }
    let stats = gpu.pool().stats();
    let summary = serde_json::json!({
        "steps": o.steps, "final_loss": o.final_loss, "val_loss": o.val_loss,
        "tokens": o.tokens, "tokens_per_s": o.tokens_per_s,
        "train_s": o.train_s, "eval_s": o.eval_s, "elapsed_s": o.elapsed_s,
        "peak_gpu_mib": stats.peak_allocated as f64 / (1024.0 * 1024.0),
        "adapter": a.out.display().to_string(),
    });
    println!("{summary}");
    Ok(0)
}

/// The command line's view of a run: a progress bar (plain lines without a terminal), the
/// metrics file, checkpoint directories in --out, and signals as a stop with a checkpoint.
struct CliObserver {
    start: Instant,
    total: usize,
    out: PathBuf,
    config: ModelConfig,
    metrics: Option<std::fs::File>,
    bar: Option<indicatif::ProgressBar>,
}

impl CliObserver {
    fn new(
        a: &TrainArgs,
        total: usize,
        resumed_at: Option<u32>,
        config: ModelConfig,
    ) -> Result<Self> {
        let metrics = a.metrics.as_ref().map(|p| metrics::open(p, resumed_at));
        let bar = std::io::stderr().is_terminal().then(|| {
            let pb = indicatif::ProgressBar::new(total as u64);
            let style =
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}");
            pb.set_style(style.expect("template"));
            pb.set_position(resumed_at.unwrap_or(0) as u64);
            pb
        });
        Ok(Self {
            start: Instant::now(),
            total,
            out: a.out.clone(),
            config,
            metrics: metrics.transpose()?,
            bar,
        })
    }
}

impl Observer for CliObserver {
    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn control(&self) -> Control {
        if interrupt::requested() {
            Control::Stop { checkpoint: true }
        } else {
            Control::Run
        }
    }

    fn step(&mut self, r: &StepRecord) -> Result<()> {
        if let Some(f) = self.metrics.as_mut() {
            let line = serde_json::to_string(r).expect("a step record serializes");
            writeln!(f, "{line}")
                .and_then(|_| f.flush())
                .map_err(|e| err!("--metrics: cannot write: {e}"))?;
        }
        let msg = format!(
            "loss {:.4}{} lr {:.2e} {:.0} tok/s",
            r.loss,
            r.val_loss.map_or(String::new(), |v| format!(" val {v:.4}")),
            r.lr,
            r.tokens_per_s
        );
        match &self.bar {
            Some(pb) => {
                pb.set_position(r.step as u64);
                pb.set_message(msg);
            }
            None => eprintln!("step {}/{} {msg}", r.step, self.total),
        }
        Ok(())
    }

    async fn checkpoint(&mut self, ck: Checkpoint) -> Result<String> {
        let dir = self.out.join(format!("checkpoint-{}", ck.state.step));
        checkpoint::save(&dir, &ck, &self.config)?;
        Ok(dir.display().to_string())
    }

    async fn idle(&mut self, _paused: bool) {}

    fn kernels_tuned(&mut self, line: &str) {
        match &self.bar {
            Some(pb) => pb.println(line),
            None => eprintln!("{line}"),
        }
    }
}

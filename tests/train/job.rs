//! The core's training job as both front ends drive it: a plan from settings and data, a run
//! reported step by step to an observer that pauses, stops with a checkpoint and keeps it;
//! resuming that checkpoint gives exactly the uninterrupted run's steps and adapter.

use std::cell::Cell;

use crate::fixtures::dir;
use crate::gpu_or_skip;
use wgtune::data;
use wgtune::model::ModelConfig;
use wgtune::model::{Quant, load_dir, open_dir};
use wgtune::train::checkpoint::Checkpoint;
use wgtune::train::job::{Control, Observer, StepRecord, TrainJob};
use wgtune::train::plan::{Plan, Start};
use wgtune::train::prepare::{PrepareConfig, TrainData, prepare};
use wgtune::train::settings::{Given, TrainSettings};

const LINES: &str = r#"{"prompt": "The red food is", "completion": " a apple."}
{"prompt": "The yellow food is", "completion": " a banana."}
{"prompt": "The green food is", "completion": " a lime."}
{"prompt": "The purple food is", "completion": " a grape."}
{"prompt": "The orange food is", "completion": " a carrot."}
{"prompt": "The brown food is", "completion": " a bread."}"#;

/// Records every step; pauses once after `pause_at` (for two idle turns), stops with a
/// checkpoint after `stop_after` (both take effect after the step in flight).
struct TestObserver {
    records: Vec<StepRecord>,
    kept: Vec<Checkpoint>,
    pause_at: Option<u32>,
    stop_after: Option<u32>,
    idle_paused: Cell<u32>,
    clock: Cell<f64>,
}

impl TestObserver {
    fn new(pause_at: Option<u32>, stop_after: Option<u32>) -> Self {
        Self {
            records: Vec::new(),
            kept: Vec::new(),
            pause_at,
            stop_after,
            idle_paused: Cell::new(0),
            clock: Cell::new(0.0),
        }
    }

    fn last_step(&self) -> u32 {
        self.records.last().map_or(0, |r| r.step)
    }
}

impl Observer for TestObserver {
    fn now_s(&self) -> f64 {
        self.clock.set(self.clock.get() + 1.0);
        self.clock.get()
    }

    fn control(&self) -> Control {
        let step = self.last_step();
        if self.stop_after.is_some_and(|s| step >= s) {
            Control::Stop { checkpoint: true }
        } else if self.pause_at.is_some_and(|p| step >= p) && self.idle_paused.get() < 2 {
            Control::Pause
        } else {
            Control::Run
        }
    }

    fn step(&mut self, r: &StepRecord) -> wgtune::error::Result<()> {
        self.records.push(r.clone());
        Ok(())
    }

    async fn checkpoint(&mut self, c: Checkpoint) -> wgtune::error::Result<String> {
        let name = format!("checkpoint-{}", c.state.step);
        self.kept.push(c);
        Ok(name)
    }

    async fn idle(&mut self, paused: bool) {
        if paused {
            self.idle_paused.set(self.idle_paused.get() + 1);
        }
    }
}

#[test]
fn a_stopped_run_resumes_from_its_checkpoint_to_the_same_steps() {
    let gpu = gpu_or_skip!();
    let (model, tok) = load_dir(gpu, &dir("models/tiny"), Quant::F32).unwrap();
    let cfg = &model.config;
    let settings = TrainSettings {
        quant: Quant::F32,
        targets: vec!["all-linear".into()],
        lr: 1e-2,
        batch_size: 2,
        grad_accum: 2,
        max_steps: Some(6),
        val_split: Some(0.34),
        eval_every: 2,
        save_every: 4,
        seed: 3,
        ..Default::default()
    };
    let seq_len = settings
        .seq_len_for(&ModelConfig::from(cfg.clone()))
        .unwrap();
    let ds = data::parse_jsonl(LINES, "foods.jsonl", None).unwrap();
    let prep = PrepareConfig::new(&settings, seq_len, 999);
    let prepared = prepare(&ds, &tok, &prep, &mut |_, _| {}).unwrap();
    let data = || TrainData::new(&settings, seq_len, ("foods.jsonl", prepared.clone()), None);
    let run = |start: Start, obs: &mut TestObserver| {
        let mut s = settings.clone();
        start
            .resolve(&mut s, &Given::All, &ModelConfig::from(cfg.clone()))
            .unwrap();
        let plan = Plan::new(
            s,
            &ModelConfig::from(cfg.clone()),
            "tiny",
            999,
            data().unwrap(),
            start,
        )
        .unwrap();
        let mut job = TrainJob::new(gpu, &model, plan).unwrap();
        pollster::block_on(job.run(gpu, obs)).unwrap()
    };

    // Uninterrupted, but paused once after step 1 (a pause changes nothing).
    let mut full = TestObserver::new(Some(1), None);
    let want = run(Start::Fresh, &mut full);
    assert!(!want.stopped);
    assert_eq!(full.idle_paused.get(), 2, "the pause was taken");
    let steps: Vec<u32> = full.records.iter().map(|r| r.step).collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);
    let evaluated: Vec<u32> = full
        .records
        .iter()
        .filter(|r| r.val_loss.is_some())
        .map(|r| r.step)
        .collect();
    assert_eq!(evaluated, [2, 4, 6], "--eval-every 2 and the last step");
    assert_eq!(full.kept.len(), 1, "--save-every 4, not at the last step");
    assert!(want.eval_s > 0.0 && want.train_s < want.elapsed_s);

    // Asked to stop after step 3: the step in flight finishes, a checkpoint of the last step
    // is kept, and the run resumes from it.
    let mut first = TestObserver::new(None, Some(3));
    let stopped = run(Start::Fresh, &mut first);
    let at = stopped.steps;
    assert!(stopped.stopped && (3..6).contains(&at), "stopped at {at}");
    let ck = first.kept.pop().expect("a checkpoint on stop");
    assert_eq!(ck.state.step, at);
    assert_eq!(stopped.checkpoint, Some(format!("checkpoint-{at}")));
    let mut rest = TestObserver::new(None, None);
    let resumed = run(
        Start::Resume {
            name: "ck".into(),
            checkpoint: Box::new(ck),
        },
        &mut rest,
    );
    let key = |r: &StepRecord| (r.step, r.loss, r.grad_norm, r.lr, r.tokens, r.val_loss);
    let got: Vec<_> = first.records.iter().chain(&rest.records).map(key).collect();
    let want_records: Vec<_> = full.records.iter().map(key).collect();
    assert_eq!(got, want_records, "steps of the stopped + resumed run");
    assert_eq!(resumed.params, want.params, "final adapter");
}

/// The memory estimate printed before a run (and checked against the device's limits) covers
/// what the run then holds: on a device of its own (no other test's buffers in its pool), the
/// pool's peak over two steps of 4 × 128 tokens lies within 90-101% of the estimate (the pool
/// rounds each buffer up to 256 bytes, which the estimate leaves out), for f32 and NF4 bases,
/// with and without LoRA dropout and --grad-checkpoint, on GPT-2, Llama and Qwen2.
#[test]
fn the_memory_estimate_covers_the_measured_peak() {
    if crate::common::gpu().is_none() {
        crate::common::note("SKIPPED the_memory_estimate_covers_the_measured_peak: no GPU adapter");
        return;
    }
    let gpu = wgtune::gpu::Gpu::new_blocking().unwrap();
    // Lines long enough to fill 128 tokens, so the batch shapes are not capped by the data.
    let long = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(20);
    let lines: String = (0..8)
        .map(|i| format!("{{\"text\": \"{i} {long}\"}}\n"))
        .collect();
    let ds = data::parse_jsonl(&lines, "long.jsonl", None).unwrap();
    let nf4 = Quant::Nf4 {
        double_quant: false,
    };
    for (model_name, quant, dropout, grad_checkpoint) in [
        ("tiny", nf4, 0.05, false),
        ("tiny", nf4, 0.05, true),
        ("tiny", Quant::F32, 0.0, false),
        ("tiny", Quant::F32, 0.0, true),
        ("llama_tiny", nf4, 0.05, false),
        ("llama_tiny", nf4, 0.05, true),
        ("qwen2_tiny", Quant::F32, 0.0, false),
        ("qwen2_tiny", Quant::F32, 0.0, true),
    ] {
        let files = open_dir(&dir(&format!("models/{model_name}"))).unwrap();
        let (model, tok) = (files.upload(&gpu, quant).unwrap(), &files.tokenizer);
        let settings = TrainSettings {
            quant,
            dropout,
            batch_size: 4,
            seq_len: Some(128),
            max_steps: Some(2),
            grad_checkpoint,
            targets: files.config.default_targets(),
            ..Default::default()
        };
        let what =
            format!("{model_name} {quant}, dropout {dropout}, grad_checkpoint {grad_checkpoint}");
        let prep = PrepareConfig::new(&settings, 128, 999);
        let prepared = prepare(&ds, tok, &prep, &mut |_, _| {}).unwrap();
        let data = TrainData::new(&settings, 128, ("long.jsonl", prepared), None).unwrap();
        let plan = Plan::new(settings, &files.config, "m", 999, data, Start::Fresh).unwrap();
        gpu.pool().trim();
        gpu.pool().reset_peak();
        let mut job = TrainJob::new(&gpu, model.as_ref(), plan).unwrap();
        let estimate = job.estimate.total();
        pollster::block_on(job.run(&gpu, &mut TestObserver::new(None, None))).unwrap();
        // The model's weights were in use before the job; the estimate counts them too.
        let peak = gpu.pool().stats().peak_in_use;
        let ratio = peak as f64 / estimate as f64;
        crate::common::note(&format!(
            "{what}: estimate {estimate} B, measured peak {peak} B ({:.1}%)",
            100.0 * ratio
        ));
        assert!(
            (0.90..=1.01).contains(&ratio),
            "{what}: the pool's peak is {:.1}% of the estimate ({peak} vs {estimate} B)",
            100.0 * ratio
        );
        drop(job);
        drop(model);
    }
}

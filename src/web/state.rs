//! The page's reactive state ([`Ui`]), folded from the engine's events in one exhaustive
//! match ([`fold`]). Signals carry only plain display values; GPU objects stay in the
//! engine's worker.

use leptos::prelude::*;
use wgtune::inspect::Inspection;
use wgtune::inspect::compare::Comparison;
use wgtune::train::job::StepRecord;
use wgtune::train::settings::TrainSettings;

use super::port::{self, AdapterInfo, Command, DataInfo, Evaluation, Event, ModelInfo, TrainEvent};
use super::settings::SampleSettings;
use super::store::{AdapterMeta, CheckpointMeta};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Idle,
    Running,
    Paused,
    Done,
    Failed,
}

/// The "Check this GPU" result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelfTestView {
    pub summary: String,
    pub lines: Vec<String>,
    pub running: bool,
    pub passed: bool,
}

/// The Train section's view of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainView {
    pub phase: Phase,
    pub status: String,
    pub total: u32,
    /// Every step reported (what the chart draws and the metrics download holds).
    pub records: Vec<StepRecord>,
    /// The first step this page saw run (a resumed run's earlier steps came with it).
    pub first_step: u32,
    /// The trainable-parameters line, the plan and the memory estimate.
    pub summary: String,
}

impl TrainView {
    fn apply(&mut self, e: TrainEvent) {
        match e {
            TrainEvent::Started {
                total,
                summary,
                history,
            } => {
                let first_step = history.last().map_or(0, |r| r.step);
                *self = TrainView {
                    phase: Phase::Running,
                    status: format!("step {} of {total}…", first_step + 1),
                    total,
                    records: history,
                    first_step,
                    summary,
                };
            }
            TrainEvent::Step(r) => {
                self.status = step_line(&r, self.total);
                self.records.push(r);
                if self.phase != Phase::Paused {
                    self.phase = Phase::Running;
                }
            }
            TrainEvent::Paused(true) => {
                self.phase = Phase::Paused;
                self.status = format!("paused at step {} of {}", self.step(), self.total);
            }
            TrainEvent::Paused(false) => self.phase = Phase::Running,
            TrainEvent::Finished(status) => {
                self.phase = Phase::Done;
                self.status = status;
            }
            TrainEvent::Failed(status) => {
                self.phase = Phase::Failed;
                self.status = status;
            }
        }
    }

    pub fn step(&self) -> u32 {
        self.records.last().map_or(0, |r| r.step)
    }

    pub fn running(&self) -> bool {
        matches!(self.phase, Phase::Running | Phase::Paused)
    }

    /// Seconds left, from this page's pace so far.
    pub fn eta_s(&self) -> Option<f64> {
        let last = self.records.last()?;
        let done = last.step.checked_sub(self.first_step).filter(|&d| d > 0)?;
        Some(last.elapsed_s / done as f64 * (self.total as f64 - last.step as f64))
    }

    /// The records as the `--metrics` file holds them: one JSON object a line.
    pub fn metrics_jsonl(&self) -> String {
        self.records
            .iter()
            .map(|r| serde_json::to_string(r).expect("a step record serializes") + "\n")
            .collect()
    }
}

fn step_line(r: &StepRecord, total: u32) -> String {
    format!(
        "step {} of {total} · loss {:.4}{} · lr {:.2e} · grad norm {:.3}",
        r.step,
        r.loss,
        r.val_loss
            .map(|l| format!(" · val {l:.4}"))
            .unwrap_or_default(),
        r.lr,
        r.grad_norm
    )
}

/// A status line with an optional progress fraction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub text: String,
    pub fraction: Option<f64>,
    pub busy: bool,
}

/// The page's reactive state, shared by the sections (all fields are cheap `Copy` handles).
#[derive(Clone, Copy)]
pub struct Ui {
    /// The GPU in use, or why there is none (`None`: still opening).
    pub gpu: RwSignal<Option<Result<String, String>>>,
    pub model_status: RwSignal<Progress>,
    pub loading: RwSignal<bool>,
    pub model: RwSignal<Option<ModelInfo>>,
    pub data: RwSignal<Result<Option<DataInfo>, Vec<String>>>,
    pub val_data: RwSignal<Result<Option<DataInfo>, Vec<String>>>,
    /// A data file being tokenized: (file, rows done, rows).
    pub preparing: RwSignal<Option<(String, usize, usize)>>,
    pub settings: RwSignal<TrainSettings>,
    /// The trainable-parameters line and memory estimate for the settings and model.
    pub settings_summary: RwSignal<String>,
    pub adapter: RwSignal<Option<AdapterInfo>>,
    /// The kernel choices in use (the autotuner's line).
    pub kernels: RwSignal<String>,
    /// The selftest: its summary line, one line per kernel, whether it runs, whether it passed.
    pub selftest: RwSignal<SelfTestView>,
    /// The finished adapter kept in browser storage (this visit's or an earlier one's).
    pub kept: RwSignal<Option<AdapterMeta>>,
    /// The checkpoint kept in browser storage, if a run was interrupted.
    pub checkpoint: RwSignal<Option<CheckpointMeta>>,
    pub train: RwSignal<TrainView>,
    pub evaluation: RwSignal<Option<Result<Evaluation, String>>>,
    /// What the adapter in use learned.
    pub learned: RwSignal<Option<Result<Inspection, String>>>,
    /// The base-against-tuned comparison's status line and result.
    pub compare_status: RwSignal<String>,
    pub comparison: RwSignal<Option<Result<Comparison, String>>>,
    pub sample: RwSignal<SampleSettings>,
    pub gen_base: RwSignal<String>,
    pub gen_tuned: RwSignal<String>,
    pub gen_status: RwSignal<Progress>,
    pub export_status: RwSignal<String>,
    pub merge: RwSignal<Progress>,
}

impl Ui {
    pub fn new() -> Self {
        Self {
            gpu: RwSignal::new(None),
            model_status: RwSignal::new(Progress {
                text: "No model loaded.".into(),
                ..Default::default()
            }),
            loading: RwSignal::new(false),
            model: RwSignal::new(None),
            data: RwSignal::new(Ok(None)),
            val_data: RwSignal::new(Ok(None)),
            preparing: RwSignal::new(None),
            settings: RwSignal::new(TrainSettings::default()),
            settings_summary: RwSignal::new(
                "Load a model to see the trainable parameters and the memory estimate.".into(),
            ),
            adapter: RwSignal::new(None),
            kernels: RwSignal::new(String::new()),
            selftest: RwSignal::new(SelfTestView::default()),
            kept: RwSignal::new(None),
            checkpoint: RwSignal::new(None),
            train: RwSignal::new(TrainView::default()),
            evaluation: RwSignal::new(None),
            learned: RwSignal::new(None),
            compare_status: RwSignal::new(String::new()),
            comparison: RwSignal::new(None),
            sample: RwSignal::new(SampleSettings::default()),
            gen_base: RwSignal::new(String::new()),
            gen_tuned: RwSignal::new(String::new()),
            gen_status: RwSignal::new(Progress::default()),
            export_status: RwSignal::new(String::new()),
            merge: RwSignal::new(Progress::default()),
        }
    }

    /// Whether the engine has a GPU (actions that need one are disabled otherwise).
    pub fn gpu_ok(&self) -> bool {
        self.gpu.with(|g| matches!(g, Some(Ok(_))))
    }

    /// Change the settings and tell the engine.
    pub fn edit_settings(&self, edit: impl FnOnce(&mut TrainSettings)) {
        let mut s = self.settings.get_untracked();
        edit(&mut s);
        self.settings.set(s.clone());
        port::send(Command::Settings(s), Vec::new());
    }
}

/// Fold one engine event into the page state.
pub fn fold(ui: Ui, e: Event) {
    match e {
        Event::Gpu(g) => ui.gpu.set(Some(g)),
        Event::Kernels(k) => ui.kernels.set(k),
        Event::SelfTest {
            summary,
            lines,
            done,
            passed,
        } => ui.selftest.set(SelfTestView {
            summary,
            lines,
            running: !done,
            passed,
        }),
        Event::ModelStatus { text, progress } => ui.model_status.set(Progress {
            text,
            fraction: progress,
            busy: false,
        }),
        Event::Loading(b) => ui.loading.set(b),
        Event::Model(m) => ui.model.set(m),
        Event::Data { validation, info } => {
            if validation {
                ui.val_data.set(info)
            } else {
                ui.data.set(info)
            }
        }
        Event::Preparing { what, done, total } => ui
            .preparing
            .set((done < total).then_some((what, done, total))),
        Event::Settings(s) => ui.settings.set(s),
        Event::Summary(s) => ui.settings_summary.set(s),
        Event::Adapter(a) => ui.adapter.set(a),
        Event::Kept(k) => ui.kept.set(k),
        Event::Checkpoint(c) => ui.checkpoint.set(c),
        Event::Train(t) => ui.train.update(|v| v.apply(t)),
        Event::Evaluation(r) => ui.evaluation.set(Some(r)),
        Event::Learned(l) => {
            // Another adapter: an earlier comparison no longer describes it.
            ui.comparison.set(None);
            ui.compare_status.set(String::new());
            ui.learned.set(l)
        }
        Event::Compared { status, result } => {
            ui.compare_status.set(status);
            if result.is_some() {
                ui.comparison.set(result);
            }
        }
        Event::Generated { tuned, piece } => {
            let out = if tuned { ui.gen_tuned } else { ui.gen_base };
            out.update(|t| t.push_str(&piece));
        }
        Event::GenerateStatus { text, busy } => ui.gen_status.set(Progress {
            text,
            fraction: None,
            busy,
        }),
        Event::ExportStatus(s) => ui.export_status.set(s),
        Event::MergeStatus {
            text,
            progress,
            busy,
        } => ui.merge.set(Progress {
            text,
            fraction: progress,
            busy,
        }),
        Event::Log(text) => port::console_error(&format!("engine: {text}")),
    }
}

//! The page: its reactive state and the six sections, Model → Data → Settings → Train → Try →
//! Export. Signals carry only plain display values; GPU objects stay in the engine's worker,
//! which holds a mirror of the same state (`mirror`) and runs what the sections ask
//! (`port::Command`).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::settings::{SampleSettings, Settings};
use super::store::{AdapterMeta, CheckpointMeta};
use super::{
    browser, data_panel, export_panel, mirror, model_panel, port, settings_panel, train_panel,
    try_panel,
};

/// What the page shows about the loaded model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_positions: usize,
    pub vocab_size: usize,
    pub params: usize,
    pub quant: String,
    pub weight_bytes: u64,
}

/// One row of the data preview: the untrained (prompt) and trained parts of a line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreviewRow {
    pub line: usize,
    pub parts: Vec<(String, bool)>,
    pub tokens: Option<usize>,
}

/// What the page shows about the dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub name: String,
    pub format: String,
    pub lines: usize,
    /// (tokens, trained tokens, examples kept, lines skipped) once a model's tokenizer is known.
    pub tokens: Option<(usize, usize, usize, Vec<usize>)>,
    pub preview: Vec<PreviewRow>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    #[default]
    Idle,
    Running,
    Paused,
    Done,
    Failed,
}

/// The training section's view of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainView {
    pub phase: Phase,
    pub status: String,
    pub step: u32,
    pub total: u32,
    pub losses: Vec<(u32, f32)>,
    pub val_losses: Vec<(u32, f32)>,
    pub tokens_per_s: f64,
    pub eta_s: f64,
    /// Mean token loss over the data file with the final adapter (as `wgtune eval`).
    pub eval_loss: Option<(f64, usize)>,
    pub trainable: String,
}

/// The page's reactive state, shared by the sections (all fields are cheap `Copy` handles);
/// every field is mirrored in the engine's worker (`mirror`).
#[derive(Clone, Copy)]
pub struct Ui {
    pub gpu_line: RwSignal<String>,
    pub webgpu: RwSignal<Option<Result<(), String>>>,
    pub model_status: RwSignal<String>,
    pub model_progress: RwSignal<Option<f64>>,
    pub model: RwSignal<Option<ModelInfo>>,
    pub loading: RwSignal<bool>,
    pub data: RwSignal<Option<DataInfo>>,
    pub data_errors: RwSignal<Vec<String>>,
    pub settings: RwSignal<Settings>,
    /// The trainable-parameters line and memory estimate for the settings and model.
    pub settings_summary: RwSignal<String>,
    pub train: RwSignal<TrainView>,
    pub adapter_ready: RwSignal<bool>,
    pub sample: RwSignal<SampleSettings>,
    /// A generation is running.
    pub gen_busy: RwSignal<bool>,
    pub gen_base: RwSignal<String>,
    pub gen_tuned: RwSignal<String>,
    pub gen_status: RwSignal<String>,
    /// The checkpoint kept in browser storage, if a run was interrupted.
    pub checkpoint: RwSignal<Option<CheckpointMeta>>,
    /// The finished adapter kept in browser storage (this visit's or an earlier one's).
    pub kept: RwSignal<Option<AdapterMeta>>,
    pub export_status: RwSignal<String>,
    pub merge_status: RwSignal<String>,
    pub merge_progress: RwSignal<Option<f64>>,
    pub merging: RwSignal<bool>,
}

impl Ui {
    pub fn new() -> Self {
        Self {
            gpu_line: RwSignal::new("Opening WebGPU…".into()),
            webgpu: RwSignal::new(None),
            model_status: RwSignal::new("No model loaded.".into()),
            model_progress: RwSignal::new(None),
            model: RwSignal::new(None),
            loading: RwSignal::new(false),
            data: RwSignal::new(None),
            data_errors: RwSignal::new(Vec::new()),
            settings: RwSignal::new(Settings::default()),
            settings_summary: RwSignal::new(
                "Load a model to see the trainable parameters and the memory estimate.".into(),
            ),
            train: RwSignal::new(TrainView::default()),
            adapter_ready: RwSignal::new(false),
            sample: RwSignal::new(SampleSettings::default()),
            gen_busy: RwSignal::new(false),
            gen_base: RwSignal::new(String::new()),
            gen_tuned: RwSignal::new(String::new()),
            gen_status: RwSignal::new(String::new()),
            checkpoint: RwSignal::new(None),
            kept: RwSignal::new(None),
            export_status: RwSignal::new(String::new()),
            merge_status: RwSignal::new(String::new()),
            merge_progress: RwSignal::new(None),
            merging: RwSignal::new(false),
        }
    }
}

#[component]
pub fn App() -> impl IntoView {
    let ui = Ui::new();
    if browser::has_webgpu() {
        start_engine(ui);
    } else {
        let msg = "This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, \
                   Edge or Safari, or Firefox with WebGPU enabled; wgtune trains on your GPU \
                   through WebGPU and cannot run without it.";
        ui.gpu_line.set(msg.into());
        ui.webgpu.set(Some(Err(msg.into())));
    }
    view! {
        <header>
            <h1>"wgtune"</h1>
            <p class="lead">
                "Fine-tune GPT-2 with LoRA / QLoRA on your own GPU, in this page. Nothing leaves your machine."
            </p>
            <p class="gpu" data-testid="gpu-info" class:bad=move || matches!(ui.webgpu.get(), Some(Err(_)))>
                {move || ui.gpu_line.get()}
            </p>
        </header>
        <main>
            {model_panel::view(ui)}
            {data_panel::view(ui)}
            {settings_panel::view(ui)}
            {train_panel::view(ui)}
            {try_panel::view(ui)}
            {export_panel::view(ui)}
        </main>
    }
}

/// Start the engine's worker and mirror the page state with it. It opens the GPU (its
/// adapter line, or why not, arrives as `gpu_line` / `webgpu`) and restores what an earlier
/// visit kept.
fn start_engine(ui: Ui) {
    let on_message = move |m| match m {
        port::Message::Field { name, json } => mirror::apply(ui, &name, &json),
        port::Message::Download { name, blob } => {
            if let Err(e) = browser::offer_download(&name, &blob) {
                browser::console_error(&e);
            }
        }
        port::Message::Log(text) => browser::console_error(&format!("engine: {text}")),
        port::Message::Ready | port::Message::Command { .. } => {}
    };
    let on_error = move |e: String| {
        browser::console_error(&e);
        ui.gpu_line.set(e.clone());
        ui.webgpu.set(Some(Err(e)));
    };
    match port::spawn(on_message, on_error) {
        Ok(()) => mirror::connect(ui),
        Err(e) => on_error(e),
    }
}

//! The page: its reactive state and the six sections, Model → Data → Settings → Train → Try →
//! Export. Signals carry only plain display values; GPU objects stay in `engine`.

use leptos::prelude::*;

use super::settings::{SampleSettings, Settings};
use super::store::{AdapterMeta, CheckpointMeta};
use super::{
    browser, data_panel, export_panel, model_panel, settings_panel, train_panel, try_panel,
};

/// What the page shows about the loaded model.
#[derive(Clone, Debug, PartialEq)]
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
#[derive(Clone, Debug, PartialEq)]
pub struct PreviewRow {
    pub line: usize,
    pub parts: Vec<(String, bool)>,
    pub tokens: Option<usize>,
}

/// What the page shows about the dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct DataInfo {
    pub name: String,
    pub format: String,
    pub lines: usize,
    /// (tokens, trained tokens, examples kept, lines skipped) once a model's tokenizer is known.
    pub tokens: Option<(usize, usize, usize, Vec<usize>)>,
    pub preview: Vec<PreviewRow>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Idle,
    Running,
    Paused,
    Done,
    Failed,
}

/// The training section's view of a run.
#[derive(Clone, Debug, Default, PartialEq)]
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

/// The page's reactive state, shared by the sections (all fields are cheap `Copy` handles).
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
    pub train: RwSignal<TrainView>,
    pub adapter_ready: RwSignal<bool>,
    pub sample: RwSignal<SampleSettings>,
    pub gen_base: RwSignal<String>,
    pub gen_tuned: RwSignal<String>,
    pub gen_status: RwSignal<String>,
    /// The checkpoint kept in browser storage, if a run was interrupted.
    pub checkpoint: RwSignal<Option<CheckpointMeta>>,
    /// The finished adapter kept in browser storage (this visit's or an earlier one's).
    pub kept: RwSignal<Option<AdapterMeta>>,
}

impl Ui {
    fn new() -> Self {
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
            train: RwSignal::new(TrainView::default()),
            adapter_ready: RwSignal::new(false),
            sample: RwSignal::new(SampleSettings::default()),
            gen_base: RwSignal::new(String::new()),
            gen_tuned: RwSignal::new(String::new()),
            gen_status: RwSignal::new(String::new()),
            checkpoint: RwSignal::new(None),
            kept: RwSignal::new(None),
        }
    }
}

#[component]
pub fn App() -> impl IntoView {
    let ui = Ui::new();
    if browser::has_webgpu() {
        leptos::task::spawn_local(async move {
            match super::engine::gpu().await {
                Ok(gpu) => {
                    let i = &gpu.adapter_info;
                    let l = &gpu.limits;
                    // Browsers may hide the adapter's name (wgpu's web backend reports none).
                    let name = if i.name.is_empty() {
                        "WebGPU adapter"
                    } else {
                        &i.name
                    };
                    ui.gpu_line.set(format!(
                        "{name} ({:?}, {:?}) · max buffer {} MiB · max binding {} MiB · shader-f16 {}",
                        i.backend,
                        i.device_type,
                        l.max_buffer_size >> 20,
                        l.max_storage_buffer_binding_size >> 20,
                        if gpu.features.contains(wgpu::Features::SHADER_F16) {
                            "yes"
                        } else {
                            "no"
                        },
                    ));
                    ui.webgpu.set(Some(Ok(())));
                }
                Err(e) => {
                    ui.gpu_line.set(format!("No WebGPU adapter: {e}"));
                    ui.webgpu.set(Some(Err(e)));
                }
            }
        });
    } else {
        let msg = "This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, \
                   Edge or Safari, or Firefox with WebGPU enabled; wgtune trains on your GPU \
                   through WebGPU and cannot run without it.";
        ui.gpu_line.set(msg.into());
        ui.webgpu.set(Some(Err(msg.into())));
    }
    // What an earlier visit left: a finished adapter, an interrupted run's checkpoint.
    leptos::task::spawn_local(async move {
        if let Some(a) = super::store::kept_adapter().await {
            super::engine::set_adapter_files(a.weights, a.config);
            ui.kept.set(Some(a.meta));
            ui.adapter_ready.set(true);
        }
        ui.checkpoint
            .set(super::store::kept_checkpoint_meta().await);
    });
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

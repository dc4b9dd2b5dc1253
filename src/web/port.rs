//! The typed channel between the page and the engine's dedicated worker. Commands go page →
//! worker, events worker → page, each a serde enum sent as JSON; `File`s (a picked model or
//! data file) and `Blob`s (a download) travel beside them by the browser's structured clone,
//! so a picked file is a handle, never copied through wasm memory. The page folds events
//! into its state in one exhaustive match (`state::fold`); nothing is synced by name.
//!
//! The page queues what it posts until the worker says it is listening ([`Message::Ready`]).

use std::cell::RefCell;

use js_sys::{Array, Object, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Blob, File, MessageEvent, Worker, WorkerOptions, WorkerType};
use wgtune::inspect::Inspection;
use wgtune::inspect::compare::Comparison;
use wgtune::lora::LoraConfig;
use wgtune::train::job::{Control, StepRecord};
use wgtune::train::settings::TrainSettings;

use super::browser;
use super::settings::SampleSettings;
use super::store::{AdapterMeta, CheckpointMeta};

/// What the user asked the engine to do. Files ride beside the command (see [`Message`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Load the Hugging Face–layout folder at this base URL (a preset's or the user's).
    LoadUrl { base: String },
    /// Load the model files attached to the message.
    LoadFiles,
    /// Take the attached JSONL file as the training data, or as the validation data.
    Data { validation: bool },
    /// Forget the validation file.
    ClearValidation,
    /// The settings the page shows, after every edit.
    Settings(TrainSettings),
    /// Take the attached PEFT adapter files (adapter_config.json, adapter_model.safetensors).
    PickAdapter,
    /// Forget the picked adapter: training starts from a fresh one.
    ForgetAdapter,
    /// Start training, or resume the kept checkpoint.
    Train { resume: bool },
    /// Pause, resume or stop the run between optimizer steps.
    Control(Control),
    /// Forget the kept checkpoint.
    DiscardCheckpoint,
    /// The loss of the base model and of the adapter in use on the data.
    Evaluate,
    /// Generate from `prompt` with the base model and with the adapter in use.
    Generate {
        prompt: String,
        sample: SampleSettings,
    },
    /// Base against tuned on up to 8 validation examples: losses and greedy generations.
    Compare,
    /// Download the adapter's files.
    SaveAdapter(AdapterFiles),
    /// Run the selftest: every kernel against its CPU reference on this GPU (odd shapes).
    CheckGpu,
    /// Write the merged model into the file the message carries (a `FileSystemFileHandle`
    /// the user chose with the browser's save dialog), or, without one, refuse with the size
    /// the browser would have to hold.
    Merge,
}

/// Which of the adapter's files to download.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdapterFiles {
    Both,
    Weights,
    Config,
}

/// What the page shows about the loaded model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    /// "GPT-2", "Llama" or "Qwen2".
    pub family: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_positions: usize,
    pub vocab_size: usize,
    pub params: usize,
    pub quant: String,
    pub weight_bytes: u64,
    /// The model has a chat template (Try renders prompts with it).
    pub chat_template: bool,
}

/// One row of the data preview: the untrained (prompt) and trained parts of a line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreviewRow {
    pub line: usize,
    pub parts: Vec<(String, bool)>,
    pub tokens: Option<usize>,
}

/// Token counts of a data file with the model's tokenizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenCounts {
    pub tokens: usize,
    pub trained: usize,
    pub examples: usize,
    /// Lines with no trained token within the sequence length.
    pub skipped: Vec<usize>,
}

/// What the page shows about a data file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub name: String,
    pub format: String,
    pub lines: usize,
    /// Once a model's tokenizer is known.
    pub tokens: Option<TokenCounts>,
    pub preview: Vec<PreviewRow>,
}

/// The adapter that Try, Evaluate, Merge and Export use, and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// "trained here", "picked: folder", "kept from an earlier visit".
    pub source: String,
    pub r: usize,
    pub alpha: f32,
    pub targets: Vec<String>,
    pub rslora: bool,
    /// Training starts from it (a picked adapter), as `--init-adapter`.
    pub continues: bool,
}

impl AdapterInfo {
    pub fn of(lora: &LoraConfig, source: &str, continues: bool) -> Self {
        Self {
            source: source.to_string(),
            r: lora.r,
            alpha: lora.lora_alpha,
            targets: lora.target_modules.clone(),
            rslora: lora.use_rslora,
            continues,
        }
    }
}

/// A loss and the tokens it was counted over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossFigure {
    pub loss: f64,
    pub tokens: usize,
}

/// An evaluation of the base model and the adapter on the data, with the command that
/// gives the same figure for the downloaded adapter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// What was evaluated, e.g. "the first 200 examples of alpaca.jsonl".
    pub over: String,
    pub base: Option<LossFigure>,
    pub tuned: LossFigure,
    /// `wgtune eval ...` on the downloaded adapter.
    pub command: String,
}

/// A run's progress, as the Train section shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TrainEvent {
    /// The run begins (or resumes, with the steps it had reported).
    Started {
        total: u32,
        summary: String,
        history: Vec<StepRecord>,
    },
    /// One optimizer step, that step only.
    Step(StepRecord),
    Paused(bool),
    /// The run ended (done, or stopped): a status line.
    Finished(String),
    Failed(String),
}

/// What the engine reports, each as it happens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The GPU in use, or why there is none.
    Gpu(Result<String, String>),
    /// The kernel choices in use (the autotuner's summary line).
    Kernels(String),
    /// The selftest's progress (`done: false`), then its result: one line per kernel and the
    /// summary; `passed` is false when a kernel failed.
    SelfTest {
        summary: String,
        lines: Vec<String>,
        done: bool,
        passed: bool,
    },
    ModelStatus {
        text: String,
        progress: Option<f64>,
    },
    Loading(bool),
    Model(Option<ModelInfo>),
    /// The training data (or the validation data), or its bad lines.
    Data {
        validation: bool,
        info: Result<Option<DataInfo>, Vec<String>>,
    },
    /// Tokenizing a data file: rows done of all (`done == total` at the end).
    Preparing {
        what: String,
        done: usize,
        total: usize,
    },
    /// The settings in force, when the engine changed them (an adapter fixes the LoRA ones).
    Settings(TrainSettings),
    /// The trainable-parameters line and the memory estimate for the settings.
    Summary(String),
    Adapter(Option<AdapterInfo>),
    /// The adapter kept in browser storage.
    Kept(Option<AdapterMeta>),
    /// The checkpoint kept in browser storage.
    Checkpoint(Option<CheckpointMeta>),
    Train(TrainEvent),
    Evaluation(Result<Evaluation, String>),
    /// What the adapter in use learned (`wgtune inspect` for it on the loaded model), or why
    /// it cannot be shown; `None` without an adapter.
    Learned(Option<Result<Inspection, String>>),
    /// The base-against-tuned comparison: its progress, then its result.
    Compared {
        status: String,
        result: Option<Result<Comparison, String>>,
    },
    /// Generated text: base or tuned, a piece at a time.
    Generated {
        tuned: bool,
        piece: String,
    },
    GenerateStatus {
        text: String,
        busy: bool,
    },
    ExportStatus(String),
    MergeStatus {
        text: String,
        progress: Option<f64>,
        busy: bool,
    },
    /// An error for the page's console too.
    Log(String),
}

/// One message either way.
pub enum Message {
    /// Worker → page: it is listening.
    Ready,
    /// Page → worker: run this, with these files, and where to save (a
    /// `FileSystemFileHandle`, for [`Command::Merge`]).
    Command {
        command: Command,
        files: Vec<File>,
        save_to: Option<JsValue>,
    },
    /// Worker → page.
    Event(Event),
    /// Worker → page: offer this file to the user.
    Download { name: String, blob: Blob },
}

fn set(o: &Object, key: &str, v: &JsValue) {
    let _ = Reflect::set(o, &key.into(), v);
}

fn get(v: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(v, &key.into())
        .ok()
        .filter(|x| !x.is_undefined())
}

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("{json}: {e}"))
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("messages serialize")
}

impl Message {
    fn to_js(&self) -> JsValue {
        let o = Object::new();
        match self {
            Message::Ready => set(&o, "ready", &true.into()),
            Message::Command {
                command,
                files,
                save_to,
            } => {
                set(&o, "command", &json(command).into());
                set(&o, "files", &files.iter().collect::<Array>());
                if let Some(h) = save_to {
                    set(&o, "saveTo", h);
                }
            }
            Message::Event(e) => set(&o, "event", &json(e).into()),
            Message::Download { name, blob } => {
                set(&o, "download", &name.into());
                set(&o, "blob", blob);
            }
        }
        o.into()
    }

    fn from_js(v: &JsValue) -> Result<Message, String> {
        let text = |key| get(v, key).and_then(|x| x.as_string());
        if get(v, "ready").is_some() {
            Ok(Message::Ready)
        } else if let Some(json) = text("command") {
            let files = get(v, "files")
                .map(|f| Array::from(&f).iter().map(|x| x.unchecked_into()).collect())
                .unwrap_or_default();
            Ok(Message::Command {
                command: parse(&json)?,
                files,
                save_to: get(v, "saveTo"),
            })
        } else if let Some(json) = text("event") {
            Ok(Message::Event(parse(&json)?))
        } else if let (Some(name), Some(blob)) = (text("download"), get(v, "blob")) {
            Ok(Message::Download {
                name,
                blob: blob.unchecked_into(),
            })
        } else {
            Err(format!("unknown message {v:?}"))
        }
    }
}

/// The page's end: the worker, and what was posted before it listened.
struct PageEnd {
    worker: Worker,
    ready: bool,
    queue: Vec<JsValue>,
}

thread_local! {
    static PAGE_END: RefCell<Option<PageEnd>> = const { RefCell::new(None) };
}

/// The worker's script (beside index.html): it loads this same wasm module, whose `main`
/// then runs the engine instead of the page.
const WORKER_SCRIPT: &str = "worker.js";

/// Start the engine's worker (page side). `on_message` gets its messages; `on_error` a line
/// if the worker cannot start or dies.
pub fn spawn(
    on_message: impl Fn(Message) + 'static,
    on_error: impl Fn(String) + 'static,
) -> Result<(), String> {
    let opts = WorkerOptions::new();
    opts.set_type(WorkerType::Module);
    opts.set_name("wgtune-engine");
    let worker = Worker::new_with_options(WORKER_SCRIPT, &opts)
        .map_err(|e| format!("cannot start the engine worker ({WORKER_SCRIPT}): {e:?}"))?;
    let onmessage = Closure::<dyn Fn(MessageEvent)>::new(move |ev: MessageEvent| {
        match Message::from_js(&ev.data()) {
            Ok(Message::Ready) => flush(),
            Ok(m) => on_message(m),
            Err(e) => console_error(&format!("engine worker: {e}")),
        }
    });
    worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    let onerror = Closure::<dyn Fn(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
        let msg = ev.message();
        on_error(if msg.is_empty() {
            format!("the engine worker ({WORKER_SCRIPT}) failed to start")
        } else {
            format!("the engine worker failed: {msg}")
        });
    });
    worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
    onerror.forget();
    PAGE_END.with(|p| {
        *p.borrow_mut() = Some(PageEnd {
            worker,
            ready: false,
            queue: Vec::new(),
        })
    });
    Ok(())
}

fn flush() {
    PAGE_END.with(|p| {
        if let Some(end) = p.borrow_mut().as_mut() {
            end.ready = true;
            for m in end.queue.drain(..) {
                post_js(&end.worker, &m);
            }
        }
    });
}

fn post_js(worker: &Worker, m: &JsValue) {
    if let Err(e) = worker.post_message(m) {
        console_error(&format!("cannot post to the engine worker: {e:?}"));
    }
}

/// Listen to the page (worker side); `on_command` gets every command with what it carries.
/// Tells the page it may send.
pub fn listen(on_command: impl Fn(Command, Vec<File>, Option<JsValue>) + 'static) {
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let onmessage = Closure::<dyn Fn(MessageEvent)>::new(move |ev: MessageEvent| {
        match Message::from_js(&ev.data()) {
            Ok(Message::Command {
                command,
                files,
                save_to,
            }) => on_command(command, files, save_to),
            Ok(_) => console_error("engine worker: the page sent a non-command"),
            Err(e) => console_error(&format!("engine worker: {e}")),
        }
    });
    scope.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    post_from_worker(&Message::Ready);
}

fn post_from_worker(m: &Message) {
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    if let Err(e) = scope.post_message(&m.to_js()) {
        web_sys::console::error_1(&e);
    }
}

/// Report `event` to the page (worker side).
pub fn emit(event: Event) {
    post_from_worker(&Message::Event(event));
}

/// Offer `blob` to the user as the file `name` (worker side).
pub fn offer(name: &str, blob: Blob) {
    post_from_worker(&Message::Download {
        name: name.to_string(),
        blob,
    });
}

/// Ask the worker to run `command` with `files` (page side; queued until it listens).
pub fn send(command: Command, files: Vec<File>) {
    send_saving_to(command, files, None);
}

/// [`send`], with the file handle the command writes into.
pub fn send_saving_to(command: Command, files: Vec<File>, save_to: Option<JsValue>) {
    let js = Message::Command {
        command,
        files,
        save_to,
    }
    .to_js();
    PAGE_END.with(|p| match p.borrow_mut().as_mut() {
        Some(end) if end.ready => post_js(&end.worker, &js),
        Some(end) => end.queue.push(js),
        None => console_error("the engine worker is not running"),
    });
}

/// Log to the page's browser console (errors the page also shows, for whoever debugs it);
/// from the worker, through the page.
pub fn console_error(msg: &str) {
    if browser::in_worker() {
        emit(Event::Log(msg.to_string()));
    } else {
        web_sys::console::error_1(&msg.into());
    }
}

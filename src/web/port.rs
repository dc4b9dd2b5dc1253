//! The channel between the page and the engine's dedicated worker. The page's thread only
//! renders and handles input; loading, quantizing, training, generating and merging run in
//! the worker (`worker.rs`), so none of them can make the page stall. Messages are plain JS
//! objects: serde JSON for values, and `File`s / `Blob`s passed by the browser's structured
//! clone (a picked model file is a handle, never copied through wasm memory).
//!
//! `post` sends to the other side from either one; the page queues what it posts until the
//! worker says it is listening ([`Message::Ready`]).

use std::cell::RefCell;

use js_sys::{Array, Object, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Blob, File, MessageEvent, Worker, WorkerOptions, WorkerType};

use super::browser;

/// What the user asked to run. The worker answers through the mirrored [`super::app::Ui`]
/// state (status lines, progress, results), so a command has no reply of its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Load the Hugging Face–layout folder at this base URL (a preset's or the user's).
    LoadUrl { base: String, quant: String },
    /// Load the model files attached to the message.
    LoadFiles { quant: String },
    /// Take the attached JSONL file as the training data (`None`: detect the format).
    Data { format: Option<String> },
    /// Start training, or resume the kept checkpoint.
    Train { resume: bool },
    /// Pause, resume or stop the run between optimizer steps.
    Control(Control),
    /// Forget the kept checkpoint.
    DiscardCheckpoint,
    /// Generate from `prompt` with the base model and with the adapter.
    Generate { prompt: String },
    /// Download the adapter's files.
    SaveAdapter(AdapterFiles),
    /// Download the merged model.
    Merge,
}

/// What the user asked the running training loop to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    Run,
    Pause,
    Stop,
}

/// Which of the adapter's files to download.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdapterFiles {
    Both,
    Weights,
    Config,
}

/// One message either way.
pub enum Message {
    /// Worker → page: it is listening.
    Ready,
    /// Either way: a mirrored field of the page state changed (see `mirror`).
    Field { name: String, json: String },
    /// Page → worker: run this, with these files.
    Command { command: Command, files: Vec<File> },
    /// Worker → page: offer this file to the user.
    Download { name: String, blob: Blob },
    /// Worker → page: log an error in the page's console too.
    Log(String),
}

fn set(o: &Object, key: &str, v: &JsValue) {
    let _ = Reflect::set(o, &key.into(), v);
}

fn get(v: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(v, &key.into())
        .ok()
        .filter(|x| !x.is_undefined())
}

impl Message {
    fn to_js(&self) -> JsValue {
        let o = Object::new();
        match self {
            Message::Ready => set(&o, "ready", &true.into()),
            Message::Field { name, json } => {
                set(&o, "field", &name.into());
                set(&o, "json", &json.into());
            }
            Message::Command { command, files } => {
                let json = serde_json::to_string(command).expect("commands serialize");
                set(&o, "command", &json.into());
                set(&o, "files", &files.iter().collect::<Array>());
            }
            Message::Download { name, blob } => {
                set(&o, "download", &name.into());
                set(&o, "blob", blob);
            }
            Message::Log(text) => set(&o, "log", &text.into()),
        }
        o.into()
    }

    fn from_js(v: &JsValue) -> Result<Message, String> {
        let text = |key| get(v, key).and_then(|x| x.as_string());
        if get(v, "ready").is_some() {
            Ok(Message::Ready)
        } else if let (Some(name), Some(json)) = (text("field"), text("json")) {
            Ok(Message::Field { name, json })
        } else if let Some(json) = text("command") {
            let command = serde_json::from_str(&json).map_err(|e| format!("{json}: {e}"))?;
            let files = get(v, "files")
                .map(|f| Array::from(&f).iter().map(|x| x.unchecked_into()).collect())
                .unwrap_or_default();
            Ok(Message::Command { command, files })
        } else if let (Some(name), Some(blob)) = (text("download"), get(v, "blob")) {
            Ok(Message::Download {
                name,
                blob: blob.unchecked_into(),
            })
        } else if let Some(text) = text("log") {
            Ok(Message::Log(text))
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
            Err(e) => browser::console_error(&format!("engine worker: {e}")),
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
        browser::console_error(&format!("cannot post to the engine worker: {e:?}"));
    }
}

/// Listen to the page (worker side); `on_message` gets every message. Tells the page it
/// may send.
pub fn listen(on_message: impl Fn(Message) + 'static) {
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let onmessage = Closure::<dyn Fn(MessageEvent)>::new(move |ev: MessageEvent| {
        match Message::from_js(&ev.data()) {
            Ok(m) => on_message(m),
            Err(e) => browser::console_error(&format!("engine worker: {e}")),
        }
    });
    scope.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    post(Message::Ready);
}

/// Send `m` to the other side: from the worker to the page, or from the page to the worker
/// (queued until it listens).
pub fn post(m: Message) {
    let js = m.to_js();
    if browser::in_worker() {
        let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
        if let Err(e) = scope.post_message(&js) {
            web_sys::console::error_1(&e);
        }
        return;
    }
    PAGE_END.with(|p| match p.borrow_mut().as_mut() {
        Some(end) if end.ready => post_js(&end.worker, &js),
        Some(end) => end.queue.push(js),
        None => browser::console_error("the engine worker is not running"),
    });
}

/// Ask the worker to run `command` (page side).
pub fn send(command: Command, files: Vec<File>) {
    post(Message::Command { command, files });
}

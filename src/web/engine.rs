//! What the engine worker holds: the GPU, the loaded model and tokenizer, the data files
//! (parsed, and tokenized for the current settings), the settings the page shows and the
//! adapter in use. These are not `Send` (GPU handles), so they live in a thread-local of
//! the worker's one thread.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;

use wgtune::chat::ChatTemplate;
use wgtune::data::{Dataset, Format, jsonl_errors, parse_jsonl_bytes};
use wgtune::gpu::Gpu;
use wgtune::lora::LoraConfig;
use wgtune::model::stream_load::StreamLoader;
use wgtune::model::{Model, ModelConfig, ModelRef, Quant, check_tokenizer};
use wgtune::tokenizer::Tokenizer;
use wgtune::train::job::Control;
use wgtune::train::prepare::{PrepareConfig, Prepared};
use wgtune::train::settings::TrainSettings;

use super::browser::{self, Chunks};
use super::port::AdapterInfo;

/// A model ready to train or generate with.
pub struct LoadedModel {
    pub model: Model,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    /// The Llama family's chat template (tokenizer_config.json); none for GPT-2.
    pub chat: Option<ChatTemplate>,
    /// How the adapter's `base_model_name_or_path` names it (hub id, URL or "local").
    pub name: String,
    /// Where its model.safetensors came from, to be read again for the merged download.
    pub weights: WeightsSource,
}

impl LoadedModel {
    pub fn eos(&self) -> u32 {
        self.config.eos_with(&self.tokenizer)
    }

    pub fn model(&self) -> ModelRef<'_> {
        self.model.as_ref()
    }

    /// How lines become examples for this model (as `wgtune train` prepares them: the
    /// Llama family's chat template and tokenizer prefix; GPT-2's plain rendering).
    pub fn prepare_config(
        &self,
        s: &TrainSettings,
        seq_len: usize,
    ) -> Result<PrepareConfig, String> {
        match self.config {
            ModelConfig::Gpt2(_) => Ok(PrepareConfig::new(s, seq_len, self.eos())),
            ModelConfig::Llama(_) => {
                let (tok, chat) = (&self.tokenizer, self.chat.clone());
                PrepareConfig::for_model(s, seq_len, self.eos(), tok, chat)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Where a loaded model's model.safetensors can be streamed from again: the URL (served by
/// the Cache API once stored), or the file the user picked (a handle; nothing is copied).
#[derive(Clone)]
pub enum WeightsSource {
    Url(String),
    File(web_sys::File),
}

impl WeightsSource {
    /// Open model.safetensors again as a stream.
    pub async fn open(&self) -> Result<browser::Download, String> {
        match self {
            WeightsSource::Url(url) => browser::open_cached(url)
                .await?
                .ok_or_else(|| format!("{url}: not found (404)")),
            WeightsSource::File(f) => Ok(browser::Download::of_file(f.clone())),
        }
    }
}

/// Examples of a file for one (format, preparation).
pub type PreparedFor = (Option<Format>, PrepareConfig, Rc<Prepared>);

/// A JSONL file the user gave: its bytes, parsed in the format asked, and its examples for
/// the last preparation asked (both kept until a setting they depend on changes).
pub struct LoadedData {
    pub name: String,
    pub bytes: Vec<u8>,
    pub parsed: RefCell<Option<(Option<Format>, Rc<Dataset>)>>,
    pub prepared: RefCell<Option<PreparedFor>>,
}

impl LoadedData {
    pub fn new(name: String, bytes: Vec<u8>) -> Self {
        Self {
            name,
            bytes,
            parsed: RefCell::new(None),
            prepared: RefCell::new(None),
        }
    }

    /// The file parsed as `format` says (`None`: detected); on failure, every bad line's
    /// error (up to [`MAX_LISTED_ERRORS`]).
    pub fn dataset(&self, format: Option<Format>) -> Result<Rc<Dataset>, Vec<String>> {
        if let Some((f, d)) = &*self.parsed.borrow()
            && *f == format
        {
            return Ok(d.clone());
        }
        let d = Rc::new(
            parse_jsonl_bytes(&self.bytes, &self.name, format).map_err(|first| {
                match std::str::from_utf8(&self.bytes) {
                    Ok(text) => jsonl_errors(text, &self.name, format, MAX_LISTED_ERRORS),
                    Err(_) => vec![first.to_string()],
                }
            })?,
        );
        *self.parsed.borrow_mut() = Some((format, d.clone()));
        Ok(d)
    }
}

/// The adapter that Try, Evaluate, Merge and Export use.
pub struct Adapter {
    pub lora: LoraConfig,
    pub params: Vec<f32>,
    /// Its PEFT files (adapter_model.safetensors, adapter_config.json): what Export offers.
    pub files: Rc<(Vec<u8>, Vec<u8>)>,
    pub info: AdapterInfo,
}

#[derive(Default)]
struct State {
    gpu: Option<Rc<Gpu>>,
    model: Option<Rc<LoadedModel>>,
    data: Option<Rc<LoadedData>>,
    val_data: Option<Rc<LoadedData>>,
    settings: TrainSettings,
    adapter: Option<Rc<Adapter>>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
    static CONTROL: Cell<Control> = const { Cell::new(Control::Run) };
}

pub fn control() -> Control {
    CONTROL.with(|c| c.get())
}

pub fn set_control(c: Control) {
    CONTROL.with(|x| x.set(c));
}

/// The GPU, opened once with the adapter's real limits.
pub async fn gpu() -> Result<Rc<Gpu>, String> {
    if let Some(g) = STATE.with(|s| s.borrow().gpu.clone()) {
        return Ok(g);
    }
    let gpu = Rc::new(Gpu::new().await.map_err(|e| e.to_string())?);
    STATE.with(|s| s.borrow_mut().gpu = Some(gpu.clone()));
    Ok(gpu)
}

/// The GPU if it is already open.
pub fn gpu_now() -> Option<Rc<Gpu>> {
    STATE.with(|s| s.borrow().gpu.clone())
}

pub fn model() -> Option<Rc<LoadedModel>> {
    STATE.with(|s| s.borrow().model.clone())
}

pub fn data() -> Option<Rc<LoadedData>> {
    STATE.with(|s| s.borrow().data.clone())
}

pub fn val_data() -> Option<Rc<LoadedData>> {
    STATE.with(|s| s.borrow().val_data.clone())
}

pub fn set_val_data(d: Option<Rc<LoadedData>>) {
    STATE.with(|s| s.borrow_mut().val_data = d);
}

pub fn settings() -> TrainSettings {
    STATE.with(|s| s.borrow().settings.clone())
}

pub fn set_settings(settings: TrainSettings) {
    STATE.with(|s| s.borrow_mut().settings = settings);
}

pub fn adapter() -> Option<Rc<Adapter>> {
    STATE.with(|s| s.borrow().adapter.clone())
}

pub fn set_adapter(a: Option<Adapter>) {
    STATE.with(|s| s.borrow_mut().adapter = a.map(Rc::new));
}

/// The tokenizer files of a model: tokenizer.json, or GPT-2's older vocab.json + merges.txt.
pub enum TokenizerBytes {
    Json(Vec<u8>),
    VocabMerges(Vec<u8>, Vec<u8>),
}

/// The small files of a Hugging Face GPT-2 folder, read into memory (the weights are
/// streamed: [`build_model`]).
pub struct ModelBytes {
    pub config: Vec<u8>,
    pub tokenizer: TokenizerBytes,
    /// tokenizer_config.json, where the folder has one (the chat template).
    pub tokenizer_config: Option<Vec<u8>>,
}

/// A model's files parsed and checked, before any weight is read.
pub type ParsedModel = (ModelConfig, Tokenizer, Option<ChatTemplate>);

/// Parse and check config.json and the tokenizer (`name` labels errors), before any weight is
/// read.
pub fn parse_model_files(name: &str, files: &ModelBytes) -> Result<ParsedModel, String> {
    let text = std::str::from_utf8(&files.config)
        .map_err(|e| format!("{name}/config.json: not UTF-8 text: {e}"))?;
    let config = ModelConfig::from_json(text, &Path::new(name).join("config.json"))
        .map_err(|e| e.to_string())?;
    let tokenizer = match &files.tokenizer {
        TokenizerBytes::Json(b) => {
            Tokenizer::from_json_bytes(b, &Path::new(name).join("tokenizer.json"))
        }
        TokenizerBytes::VocabMerges(v, m) => Tokenizer::from_vocab_merges_bytes(
            v,
            m,
            &Path::new(name).join("vocab.json"),
            &Path::new(name).join("merges.txt"),
        ),
    }
    .map_err(|e| e.to_string())?;
    check_tokenizer(config.vocab_size(), &tokenizer, name).map_err(|e| e.to_string())?;
    // GPT-2 keeps its plain `role: content` rendering of messages, template or not.
    let chat = match (&config, &files.tokenizer_config) {
        (ModelConfig::Llama(_), Some(bytes)) => {
            let origin = format!("{name}/tokenizer_config.json");
            let text =
                std::str::from_utf8(bytes).map_err(|e| format!("{origin}: not UTF-8 text: {e}"))?;
            ChatTemplate::from_tokenizer_config(Some(text), None, &origin)
                .map_err(|e| e.to_string())?
        }
        _ => None,
    };
    Ok((config, tokenizer, chat))
}

/// How far [`build_model`] got: bytes of model.safetensors received, its size when known,
/// and bytes whose tensors are on the GPU.
#[derive(Clone, Copy, Debug)]
pub struct BuildProgress {
    pub received: u64,
    pub total: Option<u64>,
    pub built: u64,
}

/// Report progress (and give the event loop a turn) at least this often (ms).
pub const PAINT_EVERY_MS: f64 = 50.0;

/// Build the model on the GPU from `weights` (model.safetensors, streamed chunk by chunk so
/// that the host holds about one tensor at a time), quantizing as asked, and keep it,
/// replacing any earlier one and the adapter in use. `name` labels errors and the exported
/// adapter; `progress` is called (and the event loop given a turn) every
/// [`PAINT_EVERY_MS`]. `source` is where `weights` came from.
#[allow(clippy::too_many_arguments)]
pub async fn build_model(
    gpu: &Gpu,
    name: &str,
    source: WeightsSource,
    (config, tokenizer, chat): ParsedModel,
    weights: &mut Chunks,
    total: Option<u64>,
    quant: Quant,
    mut progress: impl FnMut(BuildProgress),
) -> Result<Rc<LoadedModel>, String> {
    // Drop the old model first: its GPU buffers return to the pool for the new one.
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.model = None;
        s.adapter = None;
    });
    let path = Path::new(name).join("model.safetensors");
    let mut loader = StreamLoader::new(gpu, config.clone(), quant, &path);
    let report = |l: &StreamLoader| BuildProgress {
        received: l.received(),
        total: l.total().or(total),
        built: l.built(),
    };
    let mut painted = browser::now_ms();
    while let Some(chunk) = weights.next().await? {
        loader.push(&chunk).map_err(|e| e.to_string())?;
        if browser::now_ms() - painted > PAINT_EVERY_MS {
            progress(report(&loader));
            browser::yield_now(0).await;
            painted = browser::now_ms();
        }
    }
    progress(report(&loader));
    let model = loader.finish().map_err(|e| e.to_string())?;
    let loaded = Rc::new(LoadedModel {
        model,
        config,
        tokenizer,
        chat,
        name: name.to_string(),
        weights: source,
    });
    STATE.with(|s| s.borrow_mut().model = Some(loaded.clone()));
    Ok(loaded)
}

/// Bad lines listed at most, so that a wrong file does not flood the page.
const MAX_LISTED_ERRORS: usize = 20;

/// Keep `data` as the training data.
pub fn set_data(data: Rc<LoadedData>) {
    STATE.with(|s| s.borrow_mut().data = Some(data));
}

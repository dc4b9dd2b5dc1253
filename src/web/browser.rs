//! Browser plumbing: reading picked files, fetching with progress through the Cache API (so a
//! model downloads once), making and offering downloads, time and yielding. Everything but
//! the page-only helpers (`query_param`, `offer_download`) works in the page and in the
//! engine's worker alike: both scopes have fetch, the Cache API, timers and performance.

use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, BlobPropertyBag, Cache, Response, Url};

/// The Cache API bucket holding downloaded model files, keyed by URL.
const MODEL_CACHE: &str = "wgtune-models-v1";

fn js_err(what: &str, e: JsValue) -> String {
    let detail = e
        .as_string()
        .or_else(|| {
            Reflect::get(&e, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{e:?}"));
    format!("{what}: {detail}")
}

/// The global scope this code runs in: the page's window or the engine's dedicated worker.
enum Scope {
    Window(web_sys::Window),
    Worker(web_sys::WorkerGlobalScope),
}

fn scope() -> Scope {
    let global = js_sys::global();
    match global.dyn_into::<web_sys::Window>() {
        Ok(w) => Scope::Window(w),
        Err(g) => Scope::Worker(g.unchecked_into()),
    }
}

/// Whether this code runs in a worker rather than the page.
pub fn in_worker() -> bool {
    matches!(scope(), Scope::Worker(_))
}

fn window() -> web_sys::Window {
    web_sys::window().expect("the page runs in a window")
}

fn caches() -> Result<web_sys::CacheStorage, JsValue> {
    match scope() {
        Scope::Window(w) => w.caches(),
        Scope::Worker(w) => w.caches(),
    }
}

fn fetch(url: &str) -> js_sys::Promise {
    match scope() {
        Scope::Window(w) => w.fetch_with_str(url),
        Scope::Worker(w) => w.fetch_with_str(url),
    }
}

/// The page's query parameter `key` (`?hub=...`), decoded.
pub fn query_param(key: &str) -> Option<String> {
    let search = window().location().search().ok()?;
    search.trim_start_matches('?').split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key)
            .then(|| js_sys::decode_uri_component(&v.replace('+', " ")).ok())
            .flatten()
            .map(String::from)
    })
}

/// Where WebGPU runs, and how to check it: what the page says when it finds none.
pub const NO_WEBGPU_HELP: &str = "wgtune trains on your GPU through WebGPU, which Chrome and Edge (113 or newer, on Windows, macOS, ChromeOS and Android; on Linux behind chrome://flags/#enable-unsafe-webgpu), Safari 26 or newer, and Firefox 141 or newer on Windows provide. To check, open chrome://gpu (edge://gpu) and look for \"WebGPU: Hardware accelerated\"; a blocklisted GPU or driver shows there too.";

/// Whether this scope exposes WebGPU at all (`navigator.gpu`).
pub fn has_webgpu() -> bool {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"gpu".into()))
        .is_ok_and(|g| !g.is_undefined())
}

/// Bytes in MiB, for progress lines.
pub fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// How far `done` is through `total` (when known and not zero), and " of X.Y" (MiB) to
/// follow a MiB figure in a progress line.
pub fn progress_of(done: u64, total: Option<u64>) -> (Option<f64>, String) {
    let fraction = total.filter(|&t| t > 0).map(|t| done as f64 / t as f64);
    let of = total
        .map(|t| format!(" of {:.1}", mib(t)))
        .unwrap_or_default();
    (fraction, of)
}

/// Milliseconds since this scope started, for tokens/s and ETA.
pub fn now_ms() -> f64 {
    let performance = match scope() {
        Scope::Window(w) => w.performance(),
        Scope::Worker(w) => w.performance(),
    };
    performance
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

/// Let the event loop run (render and handle clicks in the page; take the page's messages
/// in the worker) before continuing.
pub async fn yield_now(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = match scope() {
            Scope::Window(w) => {
                w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            }
            Scope::Worker(w) => {
                w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            }
        };
    });
    let _ = JsFuture::from(promise).await;
}

/// The whole content of a file the user picked or dropped.
pub async fn read_file(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buf = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| js_err(&format!("{}: cannot read", file.name()), e))?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// The files of a file input, in order.
pub fn files_of(list: Option<web_sys::FileList>) -> Vec<web_sys::File> {
    let Some(list) = list else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

async fn open_cache() -> Option<Cache> {
    // The Cache API exists only in secure contexts (https, localhost); without it, download.
    let caches = caches().ok()?;
    JsFuture::from(caches.open(MODEL_CACHE))
        .await
        .ok()?
        .dyn_into::<Cache>()
        .ok()
}

/// A body read chunk by chunk, so that a model larger than wasm memory can be streamed into
/// the GPU: a fetch Response's stream, or a picked file read in slices.
pub enum Chunks {
    Body {
        reader: web_sys::ReadableStreamDefaultReader,
        what: String,
    },
    File {
        file: web_sys::File,
        pos: f64,
    },
}

/// Slice size when reading a picked file.
const FILE_SLICE: f64 = (16 << 20) as f64;

impl Chunks {
    /// A picked file, read 16 MiB at a time.
    pub fn of_file(file: web_sys::File) -> Self {
        Chunks::File { file, pos: 0.0 }
    }

    /// The next chunk, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        match self {
            Chunks::Body { reader, what } => {
                let chunk = JsFuture::from(reader.read())
                    .await
                    .map_err(|e| js_err(&format!("{what}: download interrupted"), e))?;
                let done = Reflect::get(&chunk, &"done".into())
                    .map(|d| d.is_truthy())
                    .unwrap_or(true);
                if done {
                    return Ok(None);
                }
                let value = Reflect::get(&chunk, &"value".into()).map_err(|e| js_err(what, e))?;
                Ok(Some(Uint8Array::new(&value).to_vec()))
            }
            Chunks::File { file, pos } => {
                let size = file.size();
                if *pos >= size {
                    return Ok(None);
                }
                let end = (*pos + FILE_SLICE).min(size);
                let slice = file
                    .slice_with_f64_and_f64(*pos, end)
                    .map_err(|e| js_err(&format!("{}: cannot read", file.name()), e))?;
                let buf = JsFuture::from(slice.array_buffer())
                    .await
                    .map_err(|e| js_err(&format!("{}: cannot read", file.name()), e))?;
                *pos = end;
                Ok(Some(Uint8Array::new(&buf).to_vec()))
            }
        }
    }
}

/// A GET in progress: its body as [`Chunks`], its length when the server says it, and the
/// pending store of a network response into the model cache.
pub struct Download {
    pub chunks: Chunks,
    pub total: Option<u64>,
    store: Option<js_sys::Promise>,
}

impl Download {
    /// A picked file, read in slices.
    pub fn of_file(file: web_sys::File) -> Self {
        Self {
            total: Some(file.size() as u64),
            chunks: Chunks::of_file(file),
            store: None,
        }
    }

    /// Wait until the copy going into the model cache is stored (after the body was read).
    /// A failed store (quota) only means the next visit downloads again: it is logged as a
    /// console warning, not reported as an error.
    pub async fn stored(self) {
        if let (Some(p), Chunks::Body { what, .. }) = (self.store, &self.chunks)
            && let Err(e) = JsFuture::from(p).await
        {
            let msg = js_err(&format!("{what}: not kept in browser storage"), e);
            web_sys::console::warn_1(&msg.into());
        }
    }
}

fn body_of(url: &str, resp: &Response) -> Result<Chunks, String> {
    let body = resp
        .body()
        .ok_or_else(|| format!("{url}: the response has no body"))?;
    let reader = body
        .get_reader()
        .dyn_into()
        .map_err(|e| js_err(url, e.into()))?;
    Ok(Chunks::Body {
        reader,
        what: url.to_string(),
    })
}

/// GET `url`, from the model cache when an earlier visit stored it, else from the network;
/// a network response is stored in the cache while it is read (`cache.put` of a clone), so
/// neither copy is ever whole in wasm memory. `Ok(None)` when the server answers 404.
pub async fn open_cached(url: &str) -> Result<Option<Download>, String> {
    let cache = open_cache().await;
    if let Some(cache) = &cache {
        let hit = JsFuture::from(cache.match_with_str(url))
            .await
            .map_err(|e| js_err(url, e))?;
        if let Ok(resp) = hit.dyn_into::<Response>() {
            return Ok(Some(Download {
                total: content_length(&resp),
                chunks: body_of(url, &resp)?,
                store: None,
            }));
        }
    }
    let resp: Response = JsFuture::from(fetch(url))
        .await
        .map_err(|e| {
            js_err(
                &format!(
                    "{url}: cannot download (offline, or the server refuses cross-origin requests?)"
                ),
                e,
            )
        })?
        .dyn_into()
        .map_err(|e| js_err(url, e))?;
    if resp.status() == 404 {
        return Ok(None);
    }
    if !resp.ok() {
        return Err(format!(
            "{url}: the server answered {} {}",
            resp.status(),
            resp.status_text()
        ));
    }
    let store = match (&cache, resp.clone()) {
        (Some(cache), Ok(copy)) => Some(cache.put_with_str(url, &copy)),
        _ => None,
    };
    Ok(Some(Download {
        total: content_length(&resp),
        chunks: body_of(url, &resp)?,
        store,
    }))
}

fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok())
}

/// Progress of a download: bytes so far and the total when the server says it.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

/// The whole of `url` (a small file: config.json, a tokenizer) through [`open_cached`].
pub async fn fetch_cached(url: &str, progress: Progress<'_>) -> Result<Option<Vec<u8>>, String> {
    let Some(mut dl) = open_cached(url).await? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(dl.total.unwrap_or(0) as usize);
    progress(0, dl.total);
    while let Some(chunk) = dl.chunks.next().await? {
        out.extend_from_slice(&chunk);
        progress(out.len() as u64, dl.total);
    }
    dl.stored().await;
    Ok(Some(out))
}

/// Bytes of wasm linear memory this scope's instance holds (it grows and never shrinks: the
/// high-water mark of the host side).
pub fn wasm_memory_bytes() -> f64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

/// `bytes` as a Blob (outside wasm memory), to be offered as a download.
pub fn blob_of(bytes: &[u8], mime: &str) -> Result<Blob, String> {
    let parts = Array::new();
    parts.push(&Uint8Array::from(bytes));
    blob_of_parts(&parts, mime)
}

/// The concatenation of `parts` (JS `Uint8Array`s, which live outside wasm memory) as a
/// Blob assembled by the browser, so that a file larger than wasm memory (a merged gpt2-xl)
/// can be offered.
pub fn blob_of_parts(parts: &Array, mime: &str) -> Result<Blob, String> {
    let opts = BlobPropertyBag::new();
    opts.set_type(mime);
    Blob::new_with_u8_array_sequence_and_options(parts, &opts)
        .map_err(|e| js_err("cannot make the download", e))
}

/// Offer `blob` to the user as a file download named `name` (page only: it clicks a link).
/// Open the browser's save dialog for `suggested` (page side, from a click), if the browser
/// has the File System Access API: resolves to the chosen `FileSystemFileHandle`, or to why
/// there is none (the user cancelled). `None` without the API (Firefox, Safari).
pub fn save_file_picker(
    suggested: &str,
) -> Option<impl std::future::Future<Output = Result<JsValue, String>> + use<>> {
    let w = window();
    let picker = Reflect::get(&w, &"showSaveFilePicker".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())?;
    let opts = js_sys::Object::new();
    let _ = Reflect::set(&opts, &"suggestedName".into(), &suggested.into());
    let called = picker.call1(&w, &opts);
    Some(async move {
        let promise: js_sys::Promise = called
            .map_err(|e| js_err("the save dialog", e))?
            .dyn_into()
            .map_err(|_| "the save dialog gave no promise".to_string())?;
        JsFuture::from(promise)
            .await
            .map_err(|e| js_err("no file chosen", e))
    })
}

pub fn offer_download(name: &str, blob: &Blob) -> Result<(), String> {
    let url = Url::create_object_url_with_blob(blob).map_err(|e| js_err(name, e))?;
    let doc = window().document().expect("a document");
    let a: web_sys::HtmlAnchorElement = doc
        .create_element("a")
        .map_err(|e| js_err(name, e))?
        .dyn_into()
        .map_err(|e| js_err(name, e.into()))?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    let _ = Url::revoke_object_url(&url);
    Ok(())
}

/// The Cache API bucket of what the page keeps between visits (adapter, checkpoint).
const KEEP_CACHE: &str = "wgtune-kept-v1";

async fn open_keep() -> Result<Cache, String> {
    let caches = caches().map_err(|e| js_err("browser storage (Cache API) is unavailable", e))?;
    JsFuture::from(caches.open(KEEP_CACHE))
        .await
        .map_err(|e| js_err("cannot open browser storage", e))?
        .dyn_into::<Cache>()
        .map_err(|e| js_err("cannot open browser storage", e))
}

/// Keep `bytes` under `key` (a path such as "/wgtune/adapter/config") in browser storage.
pub async fn keep(key: &str, bytes: &[u8]) -> Result<(), String> {
    let cache = open_keep().await?;
    let mut copy = bytes.to_vec();
    let resp = Response::new_with_opt_u8_array(Some(&mut copy)).map_err(|e| js_err(key, e))?;
    JsFuture::from(cache.put_with_str(key, &resp))
        .await
        .map_err(|e| js_err(&format!("{key}: cannot store (browser storage full?)"), e))?;
    Ok(())
}

/// What [`keep`] stored under `key`, if anything.
pub async fn kept(key: &str) -> Option<Vec<u8>> {
    let cache = open_keep().await.ok()?;
    let hit = JsFuture::from(cache.match_with_str(key)).await.ok()?;
    let resp = hit.dyn_into::<Response>().ok()?;
    let buf = JsFuture::from(resp.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&buf).to_vec())
}

/// Forget what is kept under `key`.
pub async fn forget(key: &str) {
    if let Ok(cache) = open_keep().await {
        let _ = JsFuture::from(cache.delete_with_str(key)).await;
    }
}

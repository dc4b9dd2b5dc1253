//! "Save merged model…": the base model.safetensors streamed again from where it came
//! (the Cache API / URL, or the picked file), through `merge::MergeStream`, straight into the
//! file the user chose in the browser's save dialog (File System Access API), so that wasm
//! memory and the JS heap hold about one tensor at a time however large the model. The
//! browser writes into a temporary file and puts it in place on `close()`; a failure aborts
//! the write, and the file the user chose keeps what it held. Browsers without the API would
//! have to hold the whole file in memory (6.4 GB for gpt2-xl): there the merge is refused,
//! with that size, before it starts.

use std::path::Path;

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{FileSystemFileHandle, FileSystemWritableFileStream};
use wgtune::merge::MergeStream;

use super::browser;
use super::engine;

/// How far the merge got: input bytes read, output bytes made, the output's size once known.
#[derive(Clone, Copy, Debug)]
pub struct MergeProgress {
    pub read: u64,
    pub written: u64,
    pub total: Option<u64>,
}

fn js_err(what: &str, e: JsValue) -> String {
    let detail = js_sys::Reflect::get(&e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    format!("{what}: {detail}")
}

/// The merged file's size: every weight in F32 (as `wgtune merge` writes it), header aside.
fn merged_bytes(config: &wgtune::model::ModelConfig) -> u64 {
    4 * config.num_params() as u64
}

/// Merge the adapter in use into the loaded model's weights and write the result into
/// `save_to` (a `FileSystemFileHandle`); its size on success.
pub async fn download(
    save_to: Option<JsValue>,
    mut progress: impl FnMut(MergeProgress),
) -> Result<u64, String> {
    let model =
        engine::model().ok_or("load the model the adapter was trained on first (section 1)")?;
    let adapter = engine::adapter().ok_or(
        "no adapter for the loaded model: train or pick one (section 4), or load the model the kept adapter was trained on",
    )?;
    let Some(handle) = save_to.and_then(|h| h.dyn_into::<FileSystemFileHandle>().ok()) else {
        return Err(format!(
            "this browser cannot write a file as it is made (no File System Access API; Chrome and Edge have it): the merged model.safetensors ({:.1} MiB) would have to be held in memory whole. Use a browser with the API, or download the adapter and run wgtune merge --model {} --adapter DIR --out DIR",
            browser::mib(merged_bytes(&model.config)),
            model.name
        ));
    };
    let writable: FileSystemWritableFileStream = JsFuture::from(handle.create_writable())
        .await
        .map_err(|e| js_err("cannot open the chosen file for writing", e))?
        .unchecked_into();
    match write_merged(&model, &adapter, &writable, &mut progress).await {
        Ok(size) => {
            JsFuture::from(writable.close())
                .await
                .map_err(|e| js_err("cannot finish writing the chosen file", e))?;
            Ok(size)
        }
        Err(e) => {
            // Discard what was written: the chosen file keeps what it held.
            let _ = JsFuture::from(writable.abort()).await;
            Err(e)
        }
    }
}

/// Write `bytes` at the end of `out`, waiting until the browser took them.
async fn write_chunk(out: &FileSystemWritableFileStream, bytes: &[u8]) -> Result<(), String> {
    // A copy in the JS heap: a view of wasm memory could move while the write is queued.
    let chunk = Uint8Array::from(bytes);
    let promise = out
        .write_with_js_u8_array(&chunk)
        .map_err(|e| js_err("cannot write the chosen file", e))?;
    JsFuture::from(promise)
        .await
        .map_err(|e| js_err("cannot write the chosen file (disk full?)", e))?;
    Ok(())
}

/// Stream the merge into `out`, one input chunk's output at a time.
async fn write_merged(
    model: &engine::LoadedModel,
    adapter: &engine::Adapter,
    out: &FileSystemWritableFileStream,
    progress: &mut impl FnMut(MergeProgress),
) -> Result<u64, String> {
    let mut input = model.weights.open().await?;
    let path = Path::new(&model.name).join("model.safetensors");
    let mut merge = MergeStream::new(
        model.config.clone(),
        &adapter.lora,
        adapter.params.clone(),
        &path,
    );
    // What one input chunk made, written (and awaited) before the next chunk is merged.
    let mut pending: Vec<u8> = Vec::new();
    let report = |m: &MergeStream| MergeProgress {
        read: m.received(),
        written: m.emitted(),
        total: m.total(),
    };
    let mut painted = browser::now_ms();
    while let Some(chunk) = input.chunks.next().await? {
        merge
            .push(&chunk, &mut |bytes: &[u8]| {
                pending.extend_from_slice(bytes);
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        if !pending.is_empty() {
            write_chunk(out, &pending).await?;
            pending.clear();
        }
        if browser::now_ms() - painted > engine::PAINT_EVERY_MS {
            progress(report(&merge));
            browser::yield_now(0).await;
            painted = browser::now_ms();
        }
    }
    progress(report(&merge));
    let size = merge.emitted();
    merge.finish().map_err(|e| e.to_string())?;
    input.stored().await;
    Ok(size)
}

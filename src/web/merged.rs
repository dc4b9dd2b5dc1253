//! "Download merged model": the base model.safetensors streamed again from where it came
//! (the Cache API / URL, or the picked file), through `merge::MergeStream`, into a Blob.
//! The output chunks are copied into JS `Uint8Array`s as they come, so wasm memory holds
//! about one tensor at a time however large the model; the Blob is the browser's, handed to
//! the page to offer.

use std::path::Path;

use js_sys::{Array, Uint8Array};
use wgtune::merge::MergeStream;

use super::browser;
use super::engine;
use super::port;

/// How far the merge got: input bytes read, output bytes made, the output's size once known.
#[derive(Clone, Copy, Debug)]
pub struct MergeProgress {
    pub read: u64,
    pub written: u64,
    pub total: Option<u64>,
}

/// Merge the adapter in use into the loaded model's weights and offer the result as
/// `model.safetensors`; its size on success.
pub async fn download(mut progress: impl FnMut(MergeProgress)) -> Result<u64, String> {
    let model =
        engine::model().ok_or("load the model the adapter was trained on first (section 1)")?;
    let adapter = engine::adapter().ok_or(
        "no adapter for the loaded model: train or pick one (section 4), or load the model the kept adapter was trained on",
    )?;
    let mut input = model.weights.open().await?;
    let path = Path::new(&model.name).join("model.safetensors");
    let mut merge = MergeStream::new(
        model.model.config.clone(),
        &adapter.lora,
        adapter.params.clone(),
        &path,
    );
    let parts = Array::new();
    let mut emit = |bytes: &[u8]| {
        parts.push(&Uint8Array::from(bytes));
        Ok(())
    };
    let report = |m: &MergeStream| MergeProgress {
        read: m.received(),
        written: m.emitted(),
        total: m.total(),
    };
    let mut painted = browser::now_ms();
    while let Some(chunk) = input.chunks.next().await? {
        merge.push(&chunk, &mut emit).map_err(|e| e.to_string())?;
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
    let blob = browser::blob_of_parts(&parts, "application/octet-stream")?;
    port::offer("model.safetensors", blob);
    Ok(size)
}

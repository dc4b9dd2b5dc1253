//! The engine's dedicated worker: the same wasm module as the page, started by `worker.js`.
//! It opens the GPU, holds the model, data and adapter (`engine`), and runs the page's
//! commands (`tasks`), reporting through events, so that quantizing a 3 GiB model or
//! encoding a training step never blocks the page's thread.

use super::browser::{self, NO_WEBGPU_HELP};
use super::port::{self, Event, emit};
use super::{engine, gpu_check, store, tasks};

/// Run the engine: listen for commands, open the GPU, restore what an earlier visit kept.
pub fn start() {
    port::listen(tasks::execute);
    wasm_bindgen_futures::spawn_local(open_gpu());
    wasm_bindgen_futures::spawn_local(restore());
}

/// Open the GPU with the adapter's real limits and describe it, or say plainly why not.
async fn open_gpu() {
    if !browser::has_webgpu() {
        emit(Event::Gpu(Err(format!(
            "This browser has no WebGPU (navigator.gpu is missing in its workers). {NO_WEBGPU_HELP}"
        ))));
        return;
    }
    match engine::gpu().await {
        Ok(gpu) => {
            let i = &gpu.adapter_info;
            let l = &gpu.limits;
            // Browsers may hide the adapter's name (wgpu's web backend reports none).
            let name = if i.name.is_empty() {
                "WebGPU adapter"
            } else {
                &i.name
            };
            emit(Event::Gpu(Ok(format!(
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
            ))));
            gpu_check::restore_kernels(&gpu).await;
        }
        Err(e) => {
            port::console_error(&format!("no WebGPU adapter: {e}"));
            emit(Event::Gpu(Err(format!(
                "This browser has WebGPU but gave no GPU adapter (it may be disabled or the GPU blocklisted). {NO_WEBGPU_HELP}"
            ))));
        }
    }
}

/// What an earlier visit left: a finished adapter, an interrupted run's checkpoint.
async fn restore() {
    emit(Event::Kept(store::kept_adapter().await.map(|a| a.meta)));
    let checkpoint = store::kept_checkpoint_meta().await;
    if let Some(c) = &checkpoint {
        // The interrupted run's settings, so that its model loads as it was (--quant).
        engine::set_settings(c.settings.clone());
        emit(Event::Settings(c.settings.clone()));
    }
    emit(Event::Checkpoint(checkpoint));
}

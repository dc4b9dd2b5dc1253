//! The engine's dedicated worker: the same wasm module as the page, started by `worker.js`.
//! It opens the GPU, holds the model, data and adapter (`engine`), and runs the page's
//! commands (`tasks`), writing progress into its mirror of the page state (`mirror`), so
//! that quantizing a 3 GiB model or encoding a training step never blocks the page's
//! thread.

use leptos::prelude::*;

use super::app::Ui;
use super::port::{self, Message};
use super::{browser, engine, mirror, preview, store, tasks};

/// Run the engine: mirror the page state, listen for commands, open the GPU.
pub fn start() {
    let _ = any_spawner::Executor::init_wasm_bindgen();
    // The owner of the worker's signals and effects, alive as long as the worker.
    let owner = Owner::new();
    owner.set();
    let ui = Ui::new();
    mirror::connect(ui);
    preview::watch(ui);
    port::listen(move |m| match m {
        Message::Field { name, json } => mirror::apply(ui, &name, &json),
        Message::Command { command, files } => tasks::execute(ui, command, files),
        Message::Ready | Message::Download { .. } | Message::Log(_) => {}
    });
    leptos::task::spawn_local(open_gpu(ui));
    leptos::task::spawn_local(restore(ui));
    std::mem::forget(owner);
}

/// Open the GPU with the adapter's real limits and describe it, or say why not.
async fn open_gpu(ui: Ui) {
    if !browser::has_webgpu() {
        let msg = "This browser has no WebGPU in workers (navigator.gpu is missing there). Use \
                   a recent Chrome, Edge or Safari, or Firefox with WebGPU enabled; wgtune \
                   trains on your GPU through WebGPU and cannot run without it.";
        ui.gpu_line.set(msg.into());
        ui.webgpu.set(Some(Err(msg.into())));
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
}

/// What an earlier visit left: a finished adapter, an interrupted run's checkpoint.
async fn restore(ui: Ui) {
    if let Some(a) = store::kept_adapter().await {
        engine::set_adapter_files(a.weights, a.config);
        ui.kept.set(Some(a.meta));
        ui.adapter_ready.set(true);
    }
    ui.checkpoint.set(store::kept_checkpoint_meta().await);
}

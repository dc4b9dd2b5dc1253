//! The web app (wasm32 only): a leptos page that loads a GPT-2, takes a JSONL file, trains a
//! LoRA adapter on the user's GPU through WebGPU, compares base and tuned generations and
//! downloads a PEFT adapter. Layering: this module drives the core library (`wgtune::*`); the
//! core never depends on it.
//!
//! Two threads run this module. The page (`app`, one file per section `model_panel` …
//! `export_panel`, `chart`) renders the reactive state (`state::Ui`) and handles input; the engine,
//! in a dedicated worker (`worker`), does all GPU and heavy CPU work so the page never
//! stalls: `tasks` runs the page's commands, `load` loads models, `preview` tokenizes the
//! data and sums up the settings, `run` trains (the core's `TrainJob`) and evaluates,
//! `merged` makes the merged download, `gpu_check` checks the GPU's kernels and keeps the
//! autotuner's choices; `engine` keeps the GPU-side objects, `store` what
//! survives a reload. `port` carries typed commands (page → worker) and events (worker →
//! page), which `state::fold` turns into the page state; `browser` wraps the web APIs for
//! either scope.

mod app;
mod browser;
mod chart;
mod data_panel;
mod engine;
mod export_panel;
mod gpu_check;
mod learned;
mod learned_panel;
mod load;
mod merged;
mod model_panel;
mod port;
mod preview;
mod run;
mod settings;
mod settings_panel;
mod state;
mod store;
mod tasks;
mod train_panel;
mod try_panel;
mod worker;

/// Mount the page, or, in the engine's worker (the same module, loaded by `worker.js`), run
/// the engine. Panics are printed to the page's console instead of an opaque "unreachable".
pub fn start() {
    std::panic::set_hook(Box::new(|info| port::console_error(&info.to_string())));
    if browser::in_worker() {
        worker::start();
    } else {
        leptos::mount::mount_to_body(app::App);
    }
}

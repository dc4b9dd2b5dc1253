//! Section 4, Train: an optional PEFT adapter to start from (`--init-adapter`), start /
//! pause / stop, the checkpoint kept in this browser (`--resume`), progress, tokens/s, ETA,
//! the loss chart, the metrics download (`--metrics`), and the evaluation of the adapter in
//! use against the base model. The run itself is the engine worker's (`run`).

use leptos::prelude::*;
use wgtune::train::job::Control;

use super::browser;
use super::chart;
use super::port::{self, Command, Evaluation};
use super::state::{Phase, Ui};

pub fn view(ui: Ui) -> impl IntoView {
    let running = move || ui.train.with(|v| v.running());
    let launch = move |resume: bool| {
        if !running() {
            ui.evaluation.set(None);
            port::send(Command::Train { resume }, Vec::new());
        }
    };
    let start = move |_| launch(false);
    let resume = move |_| launch(true);
    let discard = move |_| port::send(Command::DiscardCheckpoint, Vec::new());
    let pause = move |_| {
        let next = match ui.train.with_untracked(|v| v.phase) {
            Phase::Paused => Control::Run,
            _ => Control::Pause,
        };
        port::send(Command::Control(next), Vec::new());
    };
    let stop = move |_| {
        port::send(
            Command::Control(Control::Stop { checkpoint: false }),
            Vec::new(),
        )
    };
    let can_start = move || {
        ui.gpu_ok()
            && ui.model.with(|m| m.is_some())
            && ui.data.with(|d| matches!(d, Ok(Some(_))))
            && !running()
    };
    let metrics = move |_| {
        let text = ui.train.with_untracked(|v| v.metrics_jsonl());
        let offered = browser::blob_of(text.as_bytes(), "application/x-ndjson")
            .and_then(|b| browser::offer_download("metrics.jsonl", &b));
        if let Err(e) = offered {
            port::console_error(&e);
        }
    };
    let evaluate = move |_| {
        ui.evaluation.set(None);
        port::send(Command::Evaluate, Vec::new());
    };
    view! {
        <section id="train">
            <h2>"4 · Train"</h2>
            {adapter_picker(ui)}
            <div class="row">
                <button data-testid="train-start" on:click=start disabled=move || !can_start()>
                    "Start"
                </button>
                <button data-testid="train-pause" on:click=pause disabled=move || !running()>
                    {move || if ui.train.with(|v| v.phase) == Phase::Paused { "Resume" } else { "Pause" }}
                </button>
                <button data-testid="train-stop" on:click=stop disabled=move || !running()>
                    "Stop"
                </button>
            </div>
            <Show when=move || ui.checkpoint.with(|c| c.is_some())>
                <p class="row" data-testid="checkpoint-status">
                    {move || {
                        ui.checkpoint
                            .get()
                            .map(|c| {
                                format!(
                                    "An interrupted run is kept in this browser: step {} of {} on {} with {}. Load that model and data file, then resume it.",
                                    c.step, c.total_steps, c.model, c.data
                                )
                            })
                            .unwrap_or_default()
                    }}
                    <button data-testid="train-resume" on:click=resume disabled=move || !can_start()>
                        "Resume"
                    </button>
                    <button data-testid="train-discard" on:click=discard disabled=running>
                        "Discard"
                    </button>
                </p>
            </Show>
            <progress
                max=move || ui.train.with(|v| v.total.max(1))
                value=move || ui.train.with(|v| v.step())
            ></progress>
            <p data-testid="train-status" class="status" class:bad=move || ui.train.with(|v| v.phase == Phase::Failed)>
                {move || ui.train.with(|v| v.status.clone())}
            </p>
            <p class="figures" data-testid="train-figures">
                {move || {
                    ui.train.with(|v| {
                        let Some(r) = v.records.last() else { return String::new() };
                        let eta = match (v.phase, v.eta_s()) {
                            (Phase::Done, _) | (_, None) => "—".to_string(),
                            (_, Some(s)) => eta_text(s),
                        };
                        format!("{:.0} tokens/s (evaluation not counted) · ETA {eta}", r.tokens_per_s)
                    })
                }}
            </p>
            {chart::view(ui)}
            <div class="row">
                <button data-testid="download-metrics" on:click=metrics disabled=move || ui.train.with(|v| v.records.is_empty())>
                    "Download metrics.jsonl"
                </button>
                <button data-testid="evaluate" on:click=evaluate disabled=move || running() || ui.adapter.with(|a| a.is_none()) || ui.data.with(|d| !matches!(d, Ok(Some(_))))>
                    "Evaluate the adapter on the data"
                </button>
            </div>
            <div data-testid="evaluation" class="status">{move || ui.evaluation.get().map(evaluation_view)}</div>
            <p class="small">{move || ui.train.with(|v| v.summary.clone())}</p>
        </section>
    }
}

/// Pick a PEFT adapter (ours or PEFT's) to continue training from, to try, evaluate and
/// merge.
fn adapter_picker(ui: Ui) -> impl IntoView {
    let files: NodeRef<leptos::html::Input> = NodeRef::new();
    let pick = move |_| {
        let picked = files
            .get_untracked()
            .map(|i| browser::files_of(i.files()))
            .unwrap_or_default();
        port::send(Command::PickAdapter, picked);
    };
    let forget = move |_| port::send(Command::ForgetAdapter, Vec::new());
    view! {
        <div class="row">
            <label>
                "Start from a PEFT adapter " <code>"--init-adapter"</code> " (optional: adapter_config.json + adapter_model.safetensors) "
                <input data-testid="adapter-files" node_ref=files type="file" multiple=true accept=".json,.safetensors" />
            </label>
            <button data-testid="adapter-pick" on:click=pick disabled=move || ui.model.with(|m| m.is_none())>
                "Use it"
            </button>
            <button data-testid="adapter-forget" on:click=forget disabled=move || ui.adapter.with(|a| a.is_none())>
                "Forget the adapter"
            </button>
        </div>
        <p class="small" data-testid="adapter-status">
            {move || match ui.adapter.get() {
                None => "Adapter in use: none (training starts from a fresh one).".to_string(),
                Some(a) => format!(
                    "Adapter in use: {} · r={}, alpha {}, targets {}{}{}",
                    a.source,
                    a.r,
                    a.alpha,
                    a.targets.join(","),
                    if a.rslora { ", rsLoRA" } else { "" },
                    if a.continues { " · training continues from it" } else { "" }
                ),
            }}
        </p>
    }
}

fn evaluation_view(e: Result<Evaluation, String>) -> impl IntoView {
    match e {
        Err(e) => format!("evaluation: error: {e}"),
        Ok(e) => {
            let base = e
                .base
                .map(|b| format!("base model {:.6} · ", b.loss))
                .unwrap_or_default();
            format!(
                "loss over {}: {base}with the adapter {:.6} ({} tokens)\nthe same figure for the downloaded adapter: {}",
                e.over, e.tuned.loss, e.tuned.tokens, e.command
            )
        }
    }
}

fn eta_text(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

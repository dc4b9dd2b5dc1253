//! Section 4, Train: start / pause / stop, progress, tokens/s, ETA, the loss chart, and the
//! adapter, backend and limits in use. The run itself is the engine worker's (`run`).

use leptos::prelude::*;

use super::app::{Phase, Ui};
use super::chart;
use super::port::{self, Command, Control};

pub fn view(ui: Ui) -> impl IntoView {
    let running = move || matches!(ui.train.with(|v| v.phase), Phase::Running | Phase::Paused);
    let launch = move |resume: bool| {
        if !running() {
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
    let stop = move |_| port::send(Command::Control(Control::Stop), Vec::new());
    let can_start =
        move || ui.model.with(|m| m.is_some()) && ui.data.with(|d| d.is_some()) && !running();
    view! {
        <section id="train">
            <h2>"4 · Train"</h2>
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
                                    c.state.step, c.state.total_steps, c.model, c.data
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
                value=move || ui.train.with(|v| v.step)
            ></progress>
            <p data-testid="train-status" class="status" class:bad=move || ui.train.with(|v| v.phase == Phase::Failed)>
                {move || ui.train.with(|v| v.status.clone())}
            </p>
            <p class="figures" data-testid="train-figures">
                {move || {
                    ui.train.with(|v| {
                        if v.step == 0 {
                            String::new()
                        } else {
                            format!(
                                "{:.0} tokens/s · ETA {}",
                                v.tokens_per_s,
                                if v.phase == Phase::Done { "—".to_string() } else { eta(v.eta_s) }
                            )
                        }
                    })
                }}
            </p>
            {chart::view(ui)}
            <p class="small">{move || ui.train.with(|v| v.trainable.clone())}</p>
            <p class="small">{move || format!("GPU: {}", ui.gpu_line.get())}</p>
        </section>
    }
}

fn eta(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

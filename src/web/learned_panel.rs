//! Section 6, What LoRA learned: the adapter in use, read as `wgtune inspect` reads it. Each
//! adapted module's update ΔW = scale·B·A as its singular values (a few large ones: the update
//! is low-rank), a strip of ‖ΔW‖/‖W‖ over layers × modules, the memory a full fine-tune
//! would need against this adapter's, and the base model's answers beside the tuned one's on
//! validation examples (`wgtune compare`).

use leptos::prelude::*;
use wgtune::inspect::compare::Comparison;
use wgtune::inspect::{Inspection, ModuleUpdate};
use wgtune::lora::trainable_line;

use super::browser::mib;
use super::port::{self, Command};
use super::state::Ui;

pub fn view(ui: Ui) -> impl IntoView {
    let compare = move |_| {
        // At once, not when the worker's first event arrives: the last comparison's summary
        // must not stand for this one.
        ui.comparison.set(None);
        ui.compare_status.set("comparing…".into());
        port::send(Command::Compare, Vec::new());
    };
    let can_compare =
        move || ui.gpu_ok() && ui.adapter.with(|a| a.is_some()) && !ui.train.with(|t| t.running());
    view! {
        <section id="learned">
            <h2>"6 · What LoRA learned"</h2>
            <p class="small">
                "LoRA trains, for each adapted layer, two thin matrices A (r × in) and B (out × r); the layer's weight changes by ΔW = scale · B·A, a matrix of rank at most r. "
                "Below: how large each update is against the frozen weight, its singular values (how many directions it really uses), and what training only these few parameters saves."
            </p>
            {move || match ui.learned.get() {
                None => view! { <p class="small">"Train an adapter, or pick one in section 4, to see what it learned."</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" data-testid="learned-error">{e}</p> }.into_any(),
                Some(Ok(i)) => figures(i).into_any(),
            }}
            <h3>"Base against tuned"</h3>
            <p class="small">
                "The loss of each reference answer under the base model and under base + adapter, and both models' greedy continuations of its prompt, on up to 8 validation examples (as "
                <code>"wgtune compare"</code> ")."
            </p>
            <div class="row">
                <button data-testid="learned-compare" on:click=compare disabled=move || !can_compare()>
                    "Compare base and tuned"
                </button>
            </div>
            <p class="status" data-testid="learned-compare-status">{move || ui.compare_status.get()}</p>
            {move || match ui.comparison.get() {
                Some(Ok(c)) => compare_table(c).into_any(),
                _ => ().into_any(),
            }}
        </section>
    }
}

fn figures(i: Inspection) -> impl IntoView {
    let summary = match &i.base {
        Some(b) => trainable_line(i.trainable, b.base_params),
        None => format!("trainable params: {}", i.trainable),
    };
    let head = format!(
        "r = {}, lora_alpha = {}, {}scale {:.4}, {} adapted modules",
        i.r,
        i.lora_alpha,
        if i.use_rslora { "rsLoRA, " } else { "" },
        i.scale,
        i.modules.len()
    );
    view! {
        <p data-testid="learned-summary">{head} <br /> {summary}</p>
        {i.base.as_ref().map(|b| memory_bars(&b.memory))}
        <h3>"‖ΔW‖ / ‖W‖ by layer and module"</h3>
        {norm_strip(&i.modules)}
        <h3>"Singular values of ΔW"</h3>
        <p class="small">
            "Largest first, each module scaled to its own largest. Effective rank: exp of the entropy of the normalised singular values (1 = one direction, r = all equal)."
        </p>
        <div class="sv-grid">{i.modules.iter().map(sv_chart).collect_view()}</div>
    }
}

fn memory_bars(m: &wgtune::inspect::MemoryComparison) -> impl IntoView + use<> {
    let (full, lora) = (m.full_finetune, m.lora_total());
    let width = |x: u64| {
        format!(
            "width: {:.2}%",
            100.0 * x as f64 / full.max(lora).max(1) as f64
        )
    };
    let lora_label = format!(
        "LoRA on the {} base: {:.1} MiB (frozen base {:.1} + adapter with gradients and moments {:.1})",
        m.quant,
        mib(lora),
        mib(m.base_weights),
        mib(m.adapter_state)
    );
    view! {
        <div class="bars" data-testid="learned-memory" data-full=full data-lora=lora>
            <p class="small">"Weights, gradients and AdamW moments (activations aside):"</p>
            <div class="bar-row">
                <span class="bar full" style=width(full)></span>
                <span class="small">{format!("full fine-tune (f32): {:.1} MiB", mib(full))}</span>
            </div>
            <div class="bar-row">
                <span class="bar lora" style=width(lora)></span>
                <span class="small">{lora_label}</span>
            </div>
            <p class="small">{format!("{:.1}× less", full as f64 / lora.max(1) as f64)}</p>
        </div>
    }
}

/// Layers as columns, module kinds as rows; each cell's shade is its ‖ΔW‖/‖W‖ against the
/// largest (or ‖ΔW‖ when the base's norm is unknown).
fn norm_strip(modules: &[ModuleUpdate]) -> impl IntoView + use<> {
    let value = |m: &ModuleUpdate| m.relative_norm().unwrap_or(m.norm);
    let max = modules.iter().map(value).fold(0.0, f64::max).max(1e-300);
    let mut kinds: Vec<String> = modules.iter().map(|m| m.module.clone()).collect();
    kinds.sort();
    kinds.dedup();
    let layers = modules
        .iter()
        .filter_map(|m| m.layer)
        .max()
        .map_or(0, |l| l + 1);
    let rows = kinds
        .into_iter()
        .map(|kind| {
            let cells = (0..layers)
                .map(|l| {
                    match modules.iter().find(|m| m.layer == Some(l) && m.module == kind) {
                        Some(m) => {
                            let v = value(m);
                            let title = format!(
                                "{}: ‖ΔW‖ {:.3e}{}",
                                m.name,
                                m.norm,
                                m.relative_norm()
                                    .map(|r| format!(", ‖ΔW‖/‖W‖ {r:.3e}"))
                                    .unwrap_or_default()
                            );
                            let style = format!("background: rgba(58, 92, 204, {:.3})", 0.08 + 0.92 * v / max);
                            view! {
                                <td class="cell" data-testid="learned-norm" data-name=m.name.clone() data-norm=m.norm title=title style=style></td>
                            }
                            .into_any()
                        }
                        None => view! { <td class="cell none"></td> }.into_any(),
                    }
                })
                .collect_view();
            view! { <tr><th>{kind}</th>{cells}</tr> }
        })
        .collect_view();
    let header = (0..layers).map(|l| view! { <th>{l}</th> }).collect_view();
    view! {
        <table class="strip">
            <tr><th>"layer"</th>{header}</tr>
            {rows}
        </table>
        <p class="small">{format!("darkest: {max:.3e}")}</p>
    }
}

const SV_W: f64 = 150.0;
const SV_H: f64 = 48.0;

fn sv_chart(m: &ModuleUpdate) -> impl IntoView + use<> {
    let top = m
        .singular_values
        .first()
        .copied()
        .unwrap_or(0.0)
        .max(1e-300);
    let n = m.singular_values.len().max(1) as f64;
    let bw = SV_W / n;
    let bars = m
        .singular_values
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let h = (SV_H - 2.0) * s / top;
            view! { <rect x=i as f64 * bw + 0.5 y=SV_H - h width=(bw - 1.0).max(0.5) height=h class="sv" /> }
        })
        .collect_view();
    let values = m
        .singular_values
        .iter()
        .map(|s| format!("{s:e}"))
        .collect::<Vec<_>>()
        .join(",");
    view! {
        <figure class="sv-chart" data-testid="learned-sv" data-name=m.name.clone() data-values=values>
            <svg viewBox=format!("0 0 {SV_W} {SV_H}") role="img" aria-label=format!("singular values of {}", m.name)>
                {bars}
            </svg>
            <figcaption class="small">
                {format!("{} · σ₁ {:.2e} · eff. rank {:.2}", m.name.trim_start_matches("transformer."), top, m.effective_rank)}
            </figcaption>
        </figure>
    }
}

fn compare_table(c: Comparison) -> impl IntoView {
    let rows = c
        .rows
        .into_iter()
        .map(|r| {
            let better = r.tuned_loss < r.base_loss;
            view! {
                <tr data-testid="learned-compare-row" data-line=r.line data-base=r.base_loss data-tuned=r.tuned_loss>
                    <td>{r.line}</td>
                    <td class="text">{tail(&r.prompt, 160)}</td>
                    <td class="text">{shown(r.base_output)}</td>
                    <td class="text">{shown(r.tuned_output)}</td>
                    <td>{format!("{:.4}", r.base_loss)}</td>
                    <td class:better=better class:worse=!better>{format!("{:.4}", r.tuned_loss)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="preview compare" data-testid="learned-compare-table">
            <tr><th>"line"</th><th>"prompt"</th><th>"base"</th><th>"tuned"</th><th>"base loss"</th><th>"tuned loss"</th></tr>
            {rows}
        </table>
    }
}

/// A generation on one line (new lines as ⏎, as `wgtune compare` prints them); an empty one
/// says why.
fn shown(s: String) -> String {
    if s.is_empty() {
        "(nothing: the first token was EOS)".into()
    } else {
        s.replace('\n', "⏎")
    }
}

/// The end of `s`, at most `max` characters (a prompt's instruction comes last).
fn tail(s: &str, max: usize) -> String {
    let chars: Vec<char> = s.trim_end().chars().collect();
    if chars.len() <= max {
        chars.into_iter().collect()
    } else {
        "…".to_string() + &chars[chars.len() - max..].iter().collect::<String>()
    }
}

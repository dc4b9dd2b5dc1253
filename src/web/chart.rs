//! The live loss chart: train loss per step as a line, validation loss as dots, in SVG.

use leptos::prelude::*;

use super::state::Ui;

const W: f64 = 640.0;
const H: f64 = 220.0;
const PAD: f64 = 36.0;

/// Screen coordinates of (step, loss) points for steps 0..=total and losses in [lo, hi].
fn points(data: &[(u32, f32)], total: u32, lo: f32, hi: f32) -> Vec<(f64, f64)> {
    let span = (hi - lo).max(1e-6) as f64;
    data.iter()
        .map(|&(s, l)| {
            let x = PAD + (W - 2.0 * PAD) * s as f64 / total.max(1) as f64;
            let y = H - PAD - (H - 2.0 * PAD) * (l - lo) as f64 / span;
            (x, y)
        })
        .collect()
}

pub fn view(ui: Ui) -> impl IntoView {
    let drawing = move || {
        ui.train.with(|v| {
            let losses: Vec<(u32, f32)> = v.records.iter().map(|r| (r.step, r.loss)).collect();
            let val_losses: Vec<(u32, f32)> = v
                .records
                .iter()
                .filter_map(|r| r.val_loss.map(|l| (r.step, l)))
                .collect();
            let all = losses.iter().chain(&val_losses).map(|p| p.1);
            let lo = all.clone().fold(f32::INFINITY, f32::min);
            let hi = all.fold(f32::NEG_INFINITY, f32::max);
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let line = points(&losses, v.total, lo, hi)
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect::<Vec<_>>()
                .join(" ");
            let dots = points(&val_losses, v.total, lo, hi)
                .into_iter()
                .map(|(x, y)| view! { <circle cx=x cy=y r="3.5" class="val" /> })
                .collect_view();
            view! {
                <polyline points=line class="train" fill="none" />
                {dots}
                <text x=PAD - 4.0 y=PAD text-anchor="end" class="axis">{format!("{hi:.3}")}</text>
                <text x=PAD - 4.0 y=H - PAD text-anchor="end" class="axis">{format!("{lo:.3}")}</text>
                <text x=W - PAD y=H - PAD + 16.0 text-anchor="end" class="axis">{format!("step {}", v.total)}</text>
            }
        })
    };
    view! {
        <svg
            data-testid="loss-chart"
            data-points=move || ui.train.with(|v| v.records.len())
            viewBox=format!("0 0 {W} {H}")
            class="chart"
            role="img"
            aria-label="training and validation loss by step"
        >
            <line x1=PAD y1=H - PAD x2=W - PAD y2=H - PAD class="frame" />
            <line x1=PAD y1=PAD x2=PAD y2=H - PAD class="frame" />
            {drawing}
        </svg>
        <p class="legend">
            <span class="train">"— train loss"</span>
            " "
            <span class="val">"● validation loss"</span>
        </p>
    }
}

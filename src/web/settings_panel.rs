//! Section 3, Settings: the `wgtune train` flags, with PEFT's trainable-parameters line and a
//! GPU memory estimate that follow every change.

use leptos::prelude::*;

use super::app::Ui;
use super::settings::Settings;

/// A labelled input bound to one field of [`Settings`]; unparsable text is refused with a
/// message and the field keeps its last good value.
fn field(
    ui: Ui,
    label: &'static str,
    testid: &'static str,
    get: fn(&Settings) -> String,
    set: fn(&mut Settings, &str) -> Result<(), String>,
) -> impl IntoView {
    let error = RwSignal::new(String::new());
    view! {
        <label class="field">
            <span>{label}</span>
            <input
                data-testid=testid
                prop:value=move || ui.settings.with(get)
                on:change=move |ev| {
                    let text = event_target_value(&ev);
                    let mut s = ui.settings.get_untracked();
                    match set(&mut s, text.trim()) {
                        Ok(()) => {
                            error.set(String::new());
                            ui.settings.set(s);
                        }
                        Err(e) => error.set(e),
                    }
                }
            />
            <small class="bad">{move || error.get()}</small>
        </label>
    }
}

fn checkbox(
    ui: Ui,
    label: &'static str,
    testid: &'static str,
    get: fn(&Settings) -> bool,
    set: fn(&mut Settings, bool),
) -> impl IntoView {
    view! {
        <label class="field check">
            <input
                data-testid=testid
                type="checkbox"
                prop:checked=move || ui.settings.with(get)
                on:change=move |ev| {
                    let on = event_target_checked(&ev);
                    ui.settings.update(|s| set(s, on));
                }
            />
            <span>{label}</span>
        </label>
    }
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{what}: {text:?} is not a valid number"))
}

macro_rules! num_field {
    ($ui:expr, $label:literal, $testid:literal, $field:ident) => {
        field(
            $ui,
            $label,
            $testid,
            |s| s.$field.to_string(),
            |s, t| {
                s.$field = parse(t, $label)?;
                Ok(())
            },
        )
    };
}

pub fn view(ui: Ui) -> impl IntoView {
    view! {
        <section id="settings">
            <h2>"3 · Settings"</h2>
            <div class="grid">
                {num_field!(ui, "LoRA rank", "setting-rank", rank)}
                {num_field!(ui, "alpha", "setting-alpha", alpha)}
                {num_field!(ui, "dropout", "setting-dropout", dropout)}
                {field(
                    ui,
                    "target modules",
                    "setting-targets",
                    |s| s.targets.clone(),
                    |s, t| {
                        s.targets = t.to_string();
                        Ok(())
                    },
                )}
                {num_field!(ui, "learning rate", "setting-lr", lr)}
                {field(
                    ui,
                    "scheduler (linear, cosine, constant)",
                    "setting-scheduler",
                    |s| s.scheduler.clone(),
                    |s, t| {
                        t.parse::<wgtune::train::schedule::Scheduler>()?;
                        s.scheduler = t.to_string();
                        Ok(())
                    },
                )}
                {num_field!(ui, "warmup steps", "setting-warmup", warmup_steps)}
                {num_field!(ui, "max steps (0: use epochs)", "max-steps", max_steps)}
                {num_field!(ui, "epochs", "setting-epochs", epochs)}
                {num_field!(ui, "batch size", "setting-batch", batch_size)}
                {num_field!(ui, "gradient accumulation", "setting-grad-accum", grad_accum)}
                {num_field!(ui, "sequence length", "setting-seq-len", seq_len)}
                {num_field!(ui, "seed", "setting-seed", seed)}
                {num_field!(ui, "validation split", "setting-val-split", val_split)}
                {num_field!(ui, "evaluate every N steps (0: auto)", "setting-eval-every", eval_every)}
                {num_field!(ui, "weight decay", "setting-weight-decay", weight_decay)}
                {num_field!(ui, "max grad norm", "setting-max-grad-norm", max_grad_norm)}
                {checkbox(ui, "rsLoRA (alpha / √r)", "setting-rslora", |s| s.rslora, |s, v| s.rslora = v)}
                {checkbox(ui, "gradient checkpointing", "setting-grad-checkpoint", |s| s.grad_checkpoint, |s, v| s.grad_checkpoint = v)}
                {checkbox(ui, "train on prompt tokens too", "setting-train-on-prompt", |s| s.train_on_prompt, |s, v| s.train_on_prompt = v)}
            </div>
            <p data-testid="settings-summary" class="status">{move || ui.settings_summary.get()}</p>
        </section>
    }
}

//! Section 3, Settings: every `wgtune train` setting, labelled with its flag and holding the
//! CLI's default (the core's `TrainSettings`, edited as it is), with PEFT's
//! trainable-parameters line and a GPU memory estimate that follow every change. The base
//! weight format (`--quant`) sits in the Model section and the data format (`--format`) in
//! the Data section, where they act.

use leptos::prelude::*;
use wgtune::train::settings::TrainSettings;

use super::state::Ui;

/// A labelled text input bound to one setting; unparsable text is refused with a message
/// and the setting keeps its last good value. `locked` disables it (a picked adapter fixes
/// the LoRA settings).
pub fn field(
    ui: Ui,
    label: &'static str,
    flag: &'static str,
    get: fn(&TrainSettings) -> String,
    set: fn(&mut TrainSettings, &str) -> Result<(), String>,
    locked: Signal<bool>,
) -> impl IntoView {
    let error = RwSignal::new(String::new());
    let testid = format!("setting-{}", flag.trim_start_matches('-'));
    view! {
        <label class="field">
            <span><code>{flag}</code> " " {label}</span>
            <input
                data-testid=testid
                prop:value=move || ui.settings.with(get)
                disabled=move || locked.get()
                on:change=move |ev| {
                    let text = event_target_value(&ev);
                    let mut s = ui.settings.get_untracked();
                    match set(&mut s, text.trim()) {
                        Ok(()) => {
                            error.set(String::new());
                            ui.edit_settings(|x| *x = s);
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
    flag: &'static str,
    get: fn(&TrainSettings) -> bool,
    set: fn(&mut TrainSettings, bool),
    locked: Signal<bool>,
) -> impl IntoView {
    let testid = format!("setting-{}", flag.trim_start_matches('-'));
    view! {
        <label class="field check">
            <input
                data-testid=testid
                type="checkbox"
                prop:checked=move || ui.settings.with(get)
                disabled=move || locked.get()
                on:change=move |ev| {
                    let on = event_target_checked(&ev);
                    ui.edit_settings(|s| set(s, on));
                }
            />
            <span><code>{flag}</code> " " {label}</span>
        </label>
    }
}

/// Parse a setting's text as the command line would.
pub fn parse<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not a valid value"))
}

/// Parse an optional setting: empty text is "not set".
fn parse_opt<T: std::str::FromStr>(text: &str, flag: &str) -> Result<Option<T>, String> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse(text, flag).map(Some)
    }
}

fn show_opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

macro_rules! value_field {
    ($ui:expr, $label:literal, $flag:literal, $field:ident, $locked:expr) => {
        field(
            $ui,
            $label,
            $flag,
            |s| s.$field.to_string(),
            |s, t| {
                s.$field = parse(t, $flag)?;
                Ok(())
            },
            $locked,
        )
    };
}

macro_rules! optional_field {
    ($ui:expr, $label:literal, $flag:literal, $field:ident) => {
        field(
            $ui,
            $label,
            $flag,
            |s| show_opt(&s.$field),
            |s, t| {
                s.$field = parse_opt(t, $flag)?;
                Ok(())
            },
            Signal::from(false),
        )
    };
}

pub fn view(ui: Ui) -> impl IntoView {
    // A picked adapter to continue from fixes the LoRA settings (as --init-adapter does).
    let lora_locked =
        Signal::derive(move || ui.adapter.with(|a| a.as_ref().is_some_and(|a| a.continues)));
    let free = Signal::from(false);
    view! {
        <section id="settings">
            <h2>"3 · Settings"</h2>
            <p class="small">
                "The flags of " <code>"wgtune train"</code> " with its defaults; an empty box is a flag not given."
                {move || lora_locked.get().then_some(" The LoRA settings are the picked adapter's.")}
            </p>
            <h3>"LoRA"</h3>
            <div class="grid">
                {value_field!(ui, "rank", "--rank", rank, lora_locked)}
                {value_field!(ui, "alpha", "--alpha", alpha, lora_locked)}
                {value_field!(ui, "dropout", "--dropout", dropout, lora_locked)}
                {field(
                    ui,
                    "target modules (c_attn, c_proj, c_fc, all-linear)",
                    "--targets",
                    |s| s.targets.join(","),
                    |s, t| {
                        s.targets = t.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
                        Ok(())
                    },
                    lora_locked,
                )}
                {checkbox(ui, "alpha / √r", "--rslora", |s| s.rslora, |s, v| s.rslora = v, lora_locked)}
            </div>
            <h3>"Optimizer"</h3>
            <div class="grid">
                {value_field!(ui, "learning rate", "--lr", lr, free)}
                {value_field!(ui, "linear, cosine or constant", "--scheduler", scheduler, free)}
                {value_field!(ui, "warmup steps", "--warmup-steps", warmup_steps, free)}
                {value_field!(ui, "weight decay", "--weight-decay", weight_decay, free)}
                {value_field!(ui, "gradient clip (0: off)", "--max-grad-norm", max_grad_norm, free)}
            </div>
            <h3>"Steps and batches"</h3>
            <div class="grid">
                {value_field!(ui, "passes over the data", "--epochs", epochs, free)}
                {optional_field!(ui, "steps (instead of epochs)", "--max-steps", max_steps)}
                {value_field!(ui, "sequences per batch", "--batch-size", batch_size, free)}
                {value_field!(ui, "batches per step", "--grad-accum", grad_accum, free)}
                {optional_field!(ui, "tokens per sequence (default min(512, n_positions))", "--seq-len", seq_len)}
                {value_field!(ui, "seed", "--seed", seed, free)}
                {checkbox(ui, "keep the file order", "--no-shuffle", |s| s.no_shuffle, |s, v| s.no_shuffle = v, free)}
                {checkbox(ui, "concatenate examples into full rows", "--packing", |s| s.packing, |s, v| s.packing = v, free)}
                {checkbox(ui, "train on prompt tokens too", "--train-on-prompt", |s| s.train_on_prompt, |s, v| s.train_on_prompt = v, free)}
                {checkbox(ui, "recompute activations (less memory)", "--grad-checkpoint", |s| s.grad_checkpoint, |s, v| s.grad_checkpoint = v, free)}
            </div>
            <h3>"Validation and checkpoints"</h3>
            <div class="grid">
                {optional_field!(ui, "held-out fraction (or a validation file in section 2)", "--val-split", val_split)}
                {value_field!(ui, "validate every N steps (0: at the end)", "--eval-every", eval_every, free)}
                {value_field!(ui, "batches per validation (or all)", "--val-batches", val_batches, free)}
                {value_field!(ui, "checkpoint every N steps, kept in this browser (0: never)", "--save-every", save_every, free)}
            </div>
            <p data-testid="settings-summary" class="status">{move || ui.settings_summary.get()}</p>
        </section>
    }
}

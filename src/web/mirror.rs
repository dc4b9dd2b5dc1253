//! The page's state ([`Ui`]) exists twice: in the page, where the sections render it and
//! the user edits settings, and in the engine's worker, where loading, training and
//! generation write their progress and results. Each side posts every change of a field as
//! JSON and applies the other side's, so both hold the same values and the page's code reads
//! like the single-threaded version it replaces.
//!
//! Echoes are cut by remembering, per field, the JSON last sent or received: a received value
//! is set (when it differs) and its effect's re-post is then recognised and skipped. The
//! first effect run posts nothing, as both sides start from the same defaults.

use std::cell::RefCell;
use std::collections::HashMap;

use leptos::prelude::*;
use serde::Serialize;

use super::app::Ui;
use super::port::{Message, post};

thread_local! {
    static LAST: RefCell<HashMap<&'static str, String>> = RefCell::new(HashMap::new());
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("page state serializes")
}

/// Remember `json` as the field's synced value; whether it differs from the last one.
fn remember(name: &'static str, json: &str) -> bool {
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        if l.get(name).is_some_and(|j| j == json) {
            false
        } else {
            l.insert(name, json.to_string());
            true
        }
    })
}

macro_rules! mirrored {
    ($($field:ident),* $(,)?) => {
        /// Post every later change of `ui`'s fields to the other side.
        pub fn connect(ui: Ui) {
            $({
                let signal = ui.$field;
                let name = stringify!($field);
                remember(name, &signal.with_untracked(to_json));
                Effect::new(move |_| {
                    let json = signal.with(to_json);
                    if remember(name, &json) {
                        post(Message::Field { name: name.to_string(), json });
                    }
                });
            })*
        }

        /// Apply a change the other side posted.
        pub fn apply(ui: Ui, name: &str, json: &str) {
            match name {
                $(stringify!($field) => match serde_json::from_str(json) {
                    Ok(v) => {
                        remember(stringify!($field), json);
                        if ui.$field.with_untracked(|cur| *cur != v) {
                            ui.$field.set(v);
                        }
                    }
                    Err(e) => super::browser::console_error(&format!("page state {name}: {e}")),
                },)*
                _ => super::browser::console_error(&format!("page state: no field {name}")),
            }
        }
    };
}

mirrored!(
    gpu_line,
    webgpu,
    model_status,
    model_progress,
    model,
    loading,
    data,
    data_errors,
    settings,
    settings_summary,
    train,
    adapter_ready,
    sample,
    gen_busy,
    gen_base,
    gen_tuned,
    gen_status,
    checkpoint,
    kept,
    export_status,
    merge_status,
    merge_progress,
    merging,
);

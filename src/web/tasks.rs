//! The commands the page sends (`port::Command`), run in the engine worker. Each reports
//! through the mirrored page state; downloads go back to the page as Blobs.

use leptos::prelude::*;
use wgtune::adapter::{CONFIG_FILE, WEIGHTS_FILE};
use wgtune::lora::GpuAdapter;
use wgtune::model::generate::{GenerateConfig, generate};
use wgtune::sample::Sampling;

use super::app::{Phase, TrainView, Ui};
use super::browser::{self, yield_now};
use super::engine;
use super::load::{self, Source};
use super::merged;
use super::port::{self, AdapterFiles, Command, Control, Message};
use super::{preview, run, store};

/// Run `command` (with the files the page attached).
pub fn execute(ui: Ui, command: Command, files: Vec<web_sys::File>) {
    match command {
        Command::LoadUrl { base, quant } => load::start(ui, Source::Url(base), &quant),
        Command::LoadFiles { quant } => load::start(ui, Source::Files(files), &quant),
        Command::Data { format } => {
            if let Some(file) = files.into_iter().next() {
                preview::take_data(ui, file, format);
            }
        }
        Command::Train { resume } => train(ui, resume),
        Command::Control(c) => engine::set_control(c),
        Command::DiscardCheckpoint => leptos::task::spawn_local(async move {
            store::forget_checkpoint().await;
            ui.checkpoint.set(None);
        }),
        Command::Generate { prompt } => generate_both(ui, prompt),
        Command::SaveAdapter(which) => match save_adapter(which) {
            Ok(()) => ui.export_status.set("saved: put both files in one folder and load it with PeftModel.from_pretrained(model, folder) or wgtune eval --adapter folder".into()),
            Err(e) => ui.export_status.set(format!("error: {e}")),
        },
        Command::Merge => merge(ui),
    }
}

fn train(ui: Ui, resume: bool) {
    if matches!(
        ui.train.with_untracked(|v| v.phase),
        Phase::Running | Phase::Paused
    ) {
        return;
    }
    engine::set_control(Control::Run);
    ui.train.set(TrainView {
        phase: Phase::Running,
        status: "preparing the data…".into(),
        ..Default::default()
    });
    leptos::task::spawn_local(async move {
        if let Err(e) = run::train(ui, resume).await {
            browser::console_error(&e);
            let kept = ui
                .checkpoint
                .get_untracked()
                .map(|c| {
                    format!(
                        " · the checkpoint of step {} is kept: press Resume to go on from it",
                        c.state.step
                    )
                })
                .unwrap_or_default();
            ui.train.update(|v| {
                v.phase = Phase::Failed;
                v.status = format!("error: {e}{kept}");
            });
        }
    });
}

/// Offer `bytes` to the user as the file `name`.
pub fn offer(name: &str, bytes: &[u8], mime: &str) -> Result<(), String> {
    let blob = browser::blob_of(bytes, mime)?;
    port::post(Message::Download {
        name: name.to_string(),
        blob,
    });
    Ok(())
}

fn save_adapter(which: AdapterFiles) -> Result<(), String> {
    let files = engine::adapter_files().ok_or("train an adapter first (section 4)")?;
    if matches!(which, AdapterFiles::Both | AdapterFiles::Weights) {
        offer(WEIGHTS_FILE, &files.0, "application/octet-stream")?;
    }
    if matches!(which, AdapterFiles::Both | AdapterFiles::Config) {
        offer(CONFIG_FILE, &files.1, "application/json")?;
    }
    Ok(())
}

fn merge(ui: Ui) {
    if ui.merging.get_untracked() {
        return;
    }
    ui.merging.set(true);
    ui.merge_progress.set(Some(0.0));
    ui.merge_status
        .set("Merging: reading model.safetensors again…".into());
    leptos::task::spawn_local(async move {
        let progress = |p: merged::MergeProgress| {
            if let Some(t) = p.total.filter(|&t| t > 0) {
                ui.merge_progress.set(Some(p.written as f64 / t as f64));
            }
            ui.merge_status.set(format!(
                "Merging: {:.1} MiB read, {:.1}{} MiB of the merged model.safetensors made",
                mib(p.read),
                mib(p.written),
                p.total
                    .map(|t| format!(" of {:.1}", mib(t)))
                    .unwrap_or_default()
            ));
        };
        match merged::download(progress).await {
            Ok(size) => ui.merge_status.set(format!(
                "saved model.safetensors ({:.1} MiB, F32): put it in one folder with the base model's config.json and tokenizer files (tokenizer.json, or vocab.json + merges.txt), then load it with GPT2LMHeadModel.from_pretrained(folder) or wgtune eval --model folder",
                mib(size)
            )),
            Err(e) => {
                browser::console_error(&e);
                ui.merge_status.set(format!("error: {e}"));
            }
        }
        ui.merge_progress.set(None);
        ui.merging.set(false);
    });
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn generate_both(ui: Ui, prompt: String) {
    if ui.gen_busy.get_untracked() {
        return;
    }
    ui.gen_busy.set(true);
    leptos::task::spawn_local(async move {
        if let Err(e) = generate_pair(ui, &prompt).await {
            browser::console_error(&e);
            ui.gen_status.set(format!("error: {e}"));
        }
        ui.gen_busy.set(false);
    });
}

async fn generate_pair(ui: Ui, prompt: &str) -> Result<(), String> {
    let gpu = engine::gpu().await?;
    let m = engine::model().ok_or("load a model first (section 1)")?;
    let s = ui.sample.get_untracked();
    let cfg = GenerateConfig {
        max_new_tokens: s.max_new_tokens,
        sampling: Sampling {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
        },
        seed: s.seed,
    };
    ui.gen_base.set(String::new());
    ui.gen_tuned.set(String::new());
    ui.gen_status.set("generating with the base model…".into());
    generate(&gpu, &m.model, &m.tokenizer, None, prompt, &cfg, |piece| {
        ui.gen_base.update(|t| t.push_str(piece))
    })
    .await
    .map_err(|e| e.to_string())?;
    yield_now(0).await;
    let Some(trained) = engine::adapter() else {
        ui.gen_tuned
            .set("(no adapter yet: train one in section 4)".into());
        ui.gen_status.set("done (base only)".into());
        return Ok(());
    };
    ui.gen_status.set("generating with the adapter…".into());
    let adapter = GpuAdapter::new(&gpu, &m.model.config, trained.lora.clone(), &trained.params);
    generate(
        &gpu,
        &m.model,
        &m.tokenizer,
        Some(&adapter.as_ref()),
        prompt,
        &cfg,
        |piece| ui.gen_tuned.update(|t| t.push_str(piece)),
    )
    .await
    .map_err(|e| e.to_string())?;
    ui.gen_status.set("done".into());
    Ok(())
}

//! The commands the page sends (`port::Command`), run in the engine worker. Each reports
//! through events; downloads go back to the page as Blobs.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;

use wasm_bindgen::JsValue;
use wgtune::adapter::{CONFIG_FILE, WEIGHTS_FILE, params_from_weights, parse_config_for};
use wgtune::lora::GpuAdapter;
use wgtune::model::generate::{GenerateConfig, generate_ids, prompt_ids};
use wgtune::sample::Sampling;
use wgtune::train::job::Control;
use wgtune::train::settings::Given;

use super::browser::{self, mib, yield_now};
use super::engine::{self, Adapter};
use super::load::{self, Source};
use super::port::{self, AdapterFiles, AdapterInfo, Command, Event, TrainEvent, emit};
use super::settings::SampleSettings;
use super::{gpu_check, merged};
use super::{learned, preview, run, store};

thread_local! {
    static TRAINING: Cell<bool> = const { Cell::new(false) };
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Run `command` (with the files the page attached).
pub fn execute(command: Command, files: Vec<web_sys::File>, save_to: Option<JsValue>) {
    match command {
        Command::LoadUrl { base } => exclusive(load::run(Source::Url(base)), load::refused),
        Command::LoadFiles => exclusive(load::run(Source::Files(files)), load::refused),
        Command::Data { validation } => {
            if let Some(file) = files.into_iter().next() {
                preview::take_data(file, validation);
            }
        }
        Command::ClearValidation => {
            engine::set_val_data(None);
            emit(Event::Data {
                validation: true,
                info: Ok(None),
            });
            preview::refresh();
        }
        Command::Settings(s) => preview::take_settings(s),
        Command::PickAdapter => wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = pick_adapter(files).await {
                emit(Event::ExportStatus(format!("error: {e}")));
                emit(Event::Log(e));
            }
        }),
        Command::ForgetAdapter => {
            learned::use_adapter(None);
            preview::refresh();
        }
        Command::Train { resume } => train(resume),
        Command::Control(c) => engine::set_control(c),
        Command::DiscardCheckpoint => wasm_bindgen_futures::spawn_local(async move {
            store::forget_checkpoint().await;
            emit(Event::Checkpoint(None));
        }),
        Command::Evaluate => exclusive(
            async {
                emit(Event::Evaluation(run::evaluate().await));
            },
            |e| emit(Event::Evaluation(Err(e))),
        ),
        Command::Compare => exclusive(learned::run_compare(), |e| {
            emit(Event::Compared {
                status: format!("error: {e}"),
                result: None,
            })
        }),
        Command::Generate { prompt, sample } => generate_both(prompt, sample),
        Command::SaveAdapter(which) => emit(Event::ExportStatus(match save_adapter(which) {
            Ok(()) => "saved: put both files in one folder and load it with PeftModel.from_pretrained(model, folder) or wgtune eval --adapter folder".into(),
            Err(e) => format!("error: {e}"),
        })),
        Command::Merge => merge(save_to),
        Command::CheckGpu => exclusive(gpu_check::check_gpu(), |e| {
            emit(Event::SelfTest {
                summary: e,
                lines: Vec::new(),
                done: true,
                passed: false,
            })
        }),
    }
}

/// Run `task` unless a run, a load, a generation, an evaluation or a merge is going on (they
/// share the GPU and the model); `refused` tells the user otherwise.
fn exclusive(task: impl std::future::Future<Output = ()> + 'static, refused: impl FnOnce(String)) {
    if TRAINING.with(|t| t.get()) || BUSY.with(|b| b.replace(true)) {
        refused(
            "busy: wait until the run, load, generation, evaluation or merge in progress ends (or stop the run)".into(),
        );
        return;
    }
    wasm_bindgen_futures::spawn_local(async move {
        task.await;
        BUSY.with(|b| b.set(false));
    });
}

fn train(resume: bool) {
    if BUSY.with(|b| b.get()) {
        let busy =
            "error: busy: wait until the load, generation, evaluation or merge in progress ends";
        emit(Event::Train(TrainEvent::Failed(busy.into())));
        return;
    }
    if TRAINING.with(|t| t.replace(true)) {
        return;
    }
    engine::set_control(Control::Run);
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = run::train(resume).await {
            port::console_error(&e);
            let kept = store::kept_checkpoint_meta()
                .await
                .map(|c| {
                    format!(
                        " · the checkpoint of step {} is kept: press Resume to go on from it",
                        c.step
                    )
                })
                .unwrap_or_default();
            emit(Event::Train(TrainEvent::Failed(format!(
                "error: {e}{kept}"
            ))));
        }
        TRAINING.with(|t| t.set(false));
    });
}

/// Take a PEFT adapter the user picked (its two files) as the adapter in use: Try,
/// Evaluate and Merge use it, and training continues from it (`--init-adapter`), with the
/// LoRA settings it fixes.
async fn pick_adapter(files: Vec<web_sys::File>) -> Result<(), String> {
    let m = engine::model().ok_or("load the model the adapter belongs to first (section 1)")?;
    let find = |name: &str| {
        files.iter().find(|f| f.name() == name).ok_or_else(|| {
            format!("{name} is missing among the chosen files: choose {CONFIG_FILE} and {WEIGHTS_FILE} together")
        })
    };
    let config = browser::read_file(find(CONFIG_FILE)?).await?;
    let weights = browser::read_file(find(WEIGHTS_FILE)?).await?;
    let cfg = &m.config;
    let text =
        std::str::from_utf8(&config).map_err(|_| format!("{CONFIG_FILE}: not UTF-8 text"))?;
    let lora = parse_config_for(text, Path::new(CONFIG_FILE), cfg).map_err(|e| e.to_string())?;
    let params = params_from_weights(&weights, Path::new(WEIGHTS_FILE), cfg, &lora)
        .map_err(|e| e.to_string())?;
    let mut s = engine::settings();
    s.adopt_lora(&lora, &Given::Only(Vec::new()), cfg, "the picked adapter")
        .map_err(|e| e.to_string())?;
    engine::set_settings(s.clone());
    emit(Event::Settings(s));
    let info = AdapterInfo::of(&lora, "picked", true);
    learned::use_adapter(Some(Adapter {
        lora,
        params,
        files: Rc::new((weights, config)),
        info,
    }));
    preview::refresh();
    Ok(())
}

fn save_adapter(which: AdapterFiles) -> Result<(), String> {
    let a = engine::adapter().ok_or("train or pick an adapter first (section 4)")?;
    let (weights, config) = &*a.files;
    if matches!(which, AdapterFiles::Both | AdapterFiles::Weights) {
        port::offer(
            WEIGHTS_FILE,
            browser::blob_of(weights, "application/octet-stream")?,
        );
    }
    if matches!(which, AdapterFiles::Both | AdapterFiles::Config) {
        port::offer(CONFIG_FILE, browser::blob_of(config, "application/json")?);
    }
    Ok(())
}

fn merge(save_to: Option<JsValue>) {
    exclusive(
        async move {
            let status = |text: String, progress: Option<f64>, busy: bool| {
                emit(Event::MergeStatus {
                    text,
                    progress,
                    busy,
                })
            };
            status(
                "Merging: reading model.safetensors again…".into(),
                Some(0.0),
                true,
            );
            let progress = |p: merged::MergeProgress| {
                let (fraction, total) = browser::progress_of(p.written, p.total);
                status(
                    format!(
                        "Merging: {:.1} MiB read, {:.1}{total} MiB of the merged model.safetensors made",
                        mib(p.read),
                        mib(p.written)
                    ),
                    fraction,
                    true,
                );
            };
            match merged::download(save_to, progress).await {
                Ok(size) => status(
                    format!(
                        "saved model.safetensors ({:.1} MiB, F32) where you chose: put it in one folder with the base model's config.json and tokenizer files (tokenizer.json, or vocab.json + merges.txt), then load it with GPT2LMHeadModel.from_pretrained(folder) or wgtune eval --model folder",
                        mib(size)
                    ),
                    None,
                    false,
                ),
                Err(e) => {
                    port::console_error(&e);
                    status(format!("error: {e}"), None, false);
                }
            }
        },
        |e| {
            emit(Event::MergeStatus {
                text: e,
                progress: None,
                busy: false,
            })
        },
    );
}

fn generate_both(prompt: String, sample: SampleSettings) {
    let failed = |e: String| {
        emit(Event::GenerateStatus {
            text: format!("error: {e}"),
            busy: false,
        })
    };
    exclusive(
        async move {
            if let Err(e) = generate_pair(&prompt, &sample).await {
                port::console_error(&e);
                failed(e);
            }
        },
        failed,
    );
}

async fn generate_pair(prompt: &str, s: &SampleSettings) -> Result<(), String> {
    let gpu = engine::gpu().await?;
    let m = engine::model().ok_or("load a model first (section 1)")?;
    let cfg = GenerateConfig {
        max_new_tokens: s.max_new_tokens,
        sampling: Sampling {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
        },
        seed: s.seed,
    };
    let status = |text: &str, busy: bool| {
        emit(Event::GenerateStatus {
            text: text.into(),
            busy,
        })
    };
    let chat = m.chat.as_ref().filter(|_| !s.ignore_chat_template);
    let ids = prompt_ids(&m.tokenizer, chat, prompt).map_err(|e| e.to_string())?;
    status("generating with the base model…", true);
    generate_ids(
        &gpu,
        m.model(),
        &m.tokenizer,
        None,
        ids.clone(),
        &cfg,
        |piece| {
            emit(Event::Generated {
                tuned: false,
                piece: piece.to_string(),
            })
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    yield_now(0).await;
    let Some(a) = engine::adapter() else {
        emit(Event::Generated {
            tuned: true,
            piece: "(no adapter yet: train or pick one in section 4)".into(),
        });
        status("done (base only)", false);
        return Ok(());
    };
    status("generating with the adapter…", true);
    let adapter = GpuAdapter::new(&gpu, &m.config, a.lora.clone(), &a.params);
    generate_ids(
        &gpu,
        m.model(),
        &m.tokenizer,
        Some(&adapter.as_ref()),
        ids,
        &cfg,
        |piece| {
            emit(Event::Generated {
                tuned: true,
                piece: piece.to_string(),
            })
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    status(
        if chat.is_some() {
            "done (the prompt as a user message of the model's chat template)"
        } else {
            "done"
        },
        false,
    );
    Ok(())
}

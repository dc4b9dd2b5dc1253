//! Training in the engine worker: the core's `TrainJob`, as `wgtune train` runs it, with an
//! observer that posts each step to the page, yields to the worker's event loop between
//! steps (so Pause and Stop arrive), and keeps `--save-every` checkpoints in browser storage
//! so that a run interrupted by a reload or a crashed tab resumes with the same losses. At
//! the end the adapter is kept, and evaluated as `wgtune eval --adapter` would.

use wgtune::lora::GpuAdapter;
use wgtune::model::ModelConfig;
use wgtune::model::eval::eval_loss;
use wgtune::train::checkpoint::Checkpoint;
use wgtune::train::job::{Control, Observer, Outcome, StepRecord, TrainJob};
use wgtune::train::plan::{Plan, Start};
use wgtune::train::prepare::TrainData;
use wgtune::train::settings::{Given, TrainSettings};

use super::browser::{now_ms, yield_now};
use super::engine::{self, Adapter};
use super::port::{self, AdapterInfo, Evaluation, Event, LossFigure, TrainEvent, emit};
use super::store::{self, AdapterMeta, CheckpointMeta, KeptAdapter};
use super::{learned, preview};

/// Sequences per batch of the end-of-run evaluation (`wgtune eval`'s default).
pub const EVAL_BATCH: usize = 8;

/// Train as the settings say, from the adapter in use when it continues, or from the kept
/// checkpoint (`resume`).
pub async fn train(resume: bool) -> Result<(), String> {
    let gpu = engine::gpu().await?;
    let m = engine::model().ok_or("load a model first (section 1)")?;
    let d = engine::data().ok_or("choose a JSONL file first (section 2)")?;
    let cfg = &m.config;
    let (start, given, history) = start_of(resume, &m.name, &d.name, cfg).await?;
    let err = |e: wgtune::error::Error| e.to_string();
    let mut s = engine::settings();
    start.resolve(&mut s, &given, cfg).map_err(err)?;
    if s != engine::settings() {
        engine::set_settings(s.clone());
        emit(Event::Settings(s.clone()));
    }
    let seq_len = s.seq_len_for(cfg).map_err(err)?;
    // The examples the Data section tokenized for these settings (once).
    let train = (*preview::prepared(&d, &m, &s)?).clone();
    let val = match engine::val_data() {
        Some(v) => Some((v.name.clone(), (*preview::prepared(&v, &m, &s)?).clone())),
        None => None,
    };
    let val = val.as_ref().map(|(n, p)| (n.as_str(), p.clone()));
    let data = TrainData::new(&s, seq_len, (&d.name, train), val).map_err(err)?;
    let plan = Plan::new(s, cfg, &m.name, m.eos(), data, start).map_err(err)?;
    let mut job = TrainJob::new(&gpu, m.model(), plan).map_err(err)?;
    let p = &job.plan;
    let mut notes = p.data.notes.clone();
    notes.extend([p.trainable_line(cfg), p.describe(), job.estimate.line()]);
    emit(Event::Train(TrainEvent::Started {
        total: p.total_steps as u32,
        summary: notes.join(" · "),
        history: history.clone(),
    }));
    let meta = CheckpointMeta {
        model: m.name.clone(),
        data: d.name.clone(),
        step: 0,
        total_steps: p.total_steps,
        settings: p.settings.clone(),
    };
    let mut obs = PageObserver {
        records: history,
        paused: false,
        meta,
        config: cfg.clone(),
    };
    let o = job.run(&gpu, &mut obs).await.map_err(err)?;
    let files = job.adapter_files(&o.params).map_err(err)?;
    keep_trained(&job.plan.lora, &o, files, &m.name, &d.name).await;
    let val = o.val_loss.map(|v| format!(" · validation loss {v:.4}"));
    let ending = if o.stopped { "stopped; done" } else { "done" };
    // The evaluation comes first: once the page says "done", all of the run's work is.
    emit(Event::Evaluation(evaluate().await));
    emit(Event::Train(TrainEvent::Finished(format!(
        "{ending} after {} of {} steps · loss {:.4}{} · {:.0} tokens/s over {:.1} s of training, {:.1} s of evaluation",
        o.steps,
        o.total_steps,
        o.final_loss,
        val.unwrap_or_default(),
        o.tokens_per_s,
        o.train_s,
        o.eval_s
    ))));
    Ok(())
}

/// Where a run starts: the kept checkpoint (with its settings and steps so far), the adapter
/// in use when training continues from it, or a fresh adapter.
async fn start_of(
    resume: bool,
    model: &str,
    data: &str,
    cfg: &ModelConfig,
) -> Result<(Start, Given, Vec<StepRecord>), String> {
    if resume {
        let (meta, ck, records) = store::kept_checkpoint(cfg).await?;
        if meta.model != model || meta.data != data {
            return Err(format!(
                "the checkpoint is of a run on model {} with data {}: load those to resume (loaded: {model} and {data})",
                meta.model, meta.data
            ));
        }
        let start = Start::Resume {
            name: "the checkpoint kept in this browser".into(),
            checkpoint: Box::new(ck),
        };
        // The checkpoint's settings, all of them: the page then shows what the run uses.
        return Ok((start, Given::Only(Vec::new()), records));
    }
    let start = match engine::adapter().filter(|a| a.info.continues) {
        Some(a) => Start::Adapter {
            name: a.info.source.clone(),
            lora: a.lora.clone(),
            params: a.params.clone(),
        },
        None => Start::Fresh,
    };
    Ok((start, Given::All, Vec::new()))
}

/// The trained adapter becomes the adapter in use, kept in browser storage for the next
/// visit; the run's checkpoint is no longer needed.
async fn keep_trained(
    lora: &wgtune::lora::LoraConfig,
    o: &Outcome,
    (weights, config): (Vec<u8>, Vec<u8>),
    model: &str,
    data: &str,
) {
    let kept = KeptAdapter {
        meta: AdapterMeta {
            model: model.to_string(),
            data: data.to_string(),
            steps: o.steps,
        },
        weights,
        config,
    };
    if let Err(e) = store::keep_adapter(&kept).await {
        port::console_error(&format!("the adapter is not kept for the next visit: {e}"));
    }
    store::forget_checkpoint().await;
    emit(Event::Checkpoint(None));
    emit(Event::Kept(Some(kept.meta.clone())));
    let info = AdapterInfo::of(lora, "trained here", false);
    learned::use_adapter(Some(Adapter {
        lora: lora.clone(),
        params: o.params.clone(),
        files: std::rc::Rc::new((kept.weights, kept.config)),
        info,
    }));
}

/// The page's view of a run: each step posted (that step only), checkpoints in browser
/// storage, the event loop given a turn between steps and while paused.
struct PageObserver {
    /// Every step so far (what a checkpoint keeps for the chart after a reload).
    records: Vec<StepRecord>,
    paused: bool,
    meta: CheckpointMeta,
    config: ModelConfig,
}

impl Observer for PageObserver {
    fn now_s(&self) -> f64 {
        now_ms() / 1000.0
    }

    fn control(&self) -> Control {
        engine::control()
    }

    fn kernels_tuned(&mut self, _line: &str) {
        // Kept for the next visit (and a resumed run), and shown on the GPU line.
        if let Some(gpu) = engine::gpu_now() {
            wasm_bindgen_futures::spawn_local(async move {
                super::gpu_check::keep_kernels(&gpu).await;
            });
        }
    }

    fn step(&mut self, r: &StepRecord) -> wgtune::error::Result<()> {
        if std::mem::take(&mut self.paused) {
            emit(Event::Train(TrainEvent::Paused(false)));
        }
        self.records.push(r.clone());
        emit(Event::Train(TrainEvent::Step(r.clone())));
        Ok(())
    }

    async fn checkpoint(&mut self, ck: Checkpoint) -> wgtune::error::Result<String> {
        let meta = CheckpointMeta {
            step: ck.state.step,
            ..self.meta.clone()
        };
        // A full browser storage only costs the ability to resume.
        match store::keep_checkpoint(&meta, &ck, &self.config, &self.records).await {
            Ok(()) => {
                emit(Event::Checkpoint(Some(meta.clone())));
            }
            Err(e) => port::console_error(&format!("the checkpoint is not kept: {e}")),
        }
        Ok(format!(
            "the checkpoint of step {} kept in this browser",
            meta.step
        ))
    }

    async fn idle(&mut self, paused: bool) {
        if paused && !self.paused {
            self.paused = true;
            emit(Event::Train(TrainEvent::Paused(true)));
        }
        yield_now(if paused { 100 } else { 0 }).await;
    }
}

/// The loss of the base model and of the adapter in use on the training file's first
/// `--val-batches` batches of 8 lines (all of them with "all"), tokenized as `wgtune eval`
/// does, with the command line that gives the same figure for the downloaded adapter.
pub async fn evaluate() -> Result<Evaluation, String> {
    let gpu = engine::gpu().await?;
    let m = engine::model().ok_or("load a model first (section 1)")?;
    let d = engine::data().ok_or("choose a JSONL file first (section 2)")?;
    let a = engine::adapter().ok_or("train or pick an adapter first")?;
    let s = engine::settings();
    let cfg = &m.config;
    let seq_len = s.seq_len_for(cfg).map_err(|e| e.to_string())?;
    let ds = d
        .dataset(s.data_format().map_err(|e| e.to_string())?)
        .map_err(|e| e.join("; "))?;
    let rows = s.val_batches.take(&ds.rows, EVAL_BATCH).len();
    let prep = m.prepare_config(&s, seq_len)?;
    let eos = prep.eos;
    let examples = (0..rows)
        .map(|i| wgtune::train::prepare::example(&ds, i, &m.tokenizer, &prep))
        .collect::<wgtune::error::Result<Vec<_>>>()
        .map_err(|e| format!("{}: {e}", d.name))?;
    let figure = |l: wgtune::model::eval::EvalLoss| LossFigure {
        loss: l.loss,
        tokens: l.tokens,
    };
    let base = eval_loss(&gpu, m.model(), None, &examples, EVAL_BATCH, eos)
        .await
        .map_err(|e| format!("{}: {e}", d.name))?;
    yield_now(0).await;
    let adapter = GpuAdapter::new(&gpu, cfg, a.lora.clone(), &a.params);
    let tuned = eval_loss(
        &gpu,
        m.model(),
        Some(&adapter.as_ref()),
        &examples,
        EVAL_BATCH,
        eos,
    )
    .await
    .map_err(|e| format!("{}: {e}", d.name))?;
    let over = if rows < ds.rows.len() {
        format!(
            "the first {} of {} lines of {} (--val-batches {} of {EVAL_BATCH})",
            rows,
            ds.rows.len(),
            d.name,
            s.val_batches
        )
    } else {
        format!("all {} lines of {}", rows, d.name)
    };
    Ok(Evaluation {
        over,
        base: Some(figure(base)),
        tuned: figure(tuned),
        command: eval_command(
            &s,
            &m.name,
            &d.name,
            seq_len,
            &m.model().quant().to_string(),
        ),
    })
}

/// `wgtune eval` with the settings of [`evaluate`], for the downloaded adapter.
fn eval_command(s: &TrainSettings, model: &str, data: &str, seq_len: usize, quant: &str) -> String {
    let mut c = format!(
        "wgtune eval --model {model} --adapter ADAPTER_DIR --data {data} --seq-len {seq_len} --quant {quant} --batch-size {EVAL_BATCH} --val-batches {}",
        s.val_batches
    );
    if s.format != "auto" {
        c.push_str(&format!(" --format {}", s.format));
    }
    if s.train_on_prompt {
        c.push_str(" --train-on-prompt");
    }
    c
}

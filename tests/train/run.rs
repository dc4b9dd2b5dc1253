use crate::fixtures::dir;
use crate::gpu_or_skip;
use wgtune::data::{self, Example};
use wgtune::lora::{Layout, LoraConfig, init_params};
use wgtune::model::{Quant, load_dir};
use wgtune::train::checkpoint;
use wgtune::train::schedule::Scheduler;
use wgtune::train::session::{RunConfig, Session};
use wgtune::train::{LoraTrainer, OptimConfig};

/// A small synthetic instruction task: each prompt has one fixed answer.
fn examples(tok: &wgtune::tokenizer::Tokenizer) -> Vec<Example> {
    let lines: Vec<String> = [
        ("red", "apple"),
        ("yellow", "banana"),
        ("green", "lime"),
        ("purple", "grape"),
        ("orange", "carrot"),
        ("brown", "bread"),
    ]
    .iter()
    .map(|(c, f)| {
        format!("{{\"prompt\":\"The {c} food is\",\"completion\":\" a {f}, of course.\"}}")
    })
    .collect();
    let ds = data::parse_jsonl(&lines.join("\n"), "synthetic", None).unwrap();
    ds.rows
        .iter()
        .map(|(l, s)| data::tokenize(tok, s, 999, false, 64, *l).unwrap())
        .collect()
}

fn lora() -> LoraConfig {
    LoraConfig {
        r: 8,
        lora_alpha: 16.0,
        lora_dropout: 0.05,
        target_modules: vec!["all-linear".into()],
        use_rslora: false,
    }
}

fn run_cfg(total: usize) -> RunConfig {
    RunConfig {
        batch_size: 3,
        grad_accum: 2,
        lr: 1e-2,
        scheduler: Scheduler::Cosine,
        warmup_steps: 2,
        total_steps: total,
        seed: 7,
        shuffle: true,
        pad: 999,
    }
}

/// QLoRA on the tiny model learns the synthetic task: the loss of the last steps is well
/// below a third of the first step's.
#[test]
fn loss_falls_on_a_synthetic_instruction_task() {
    let gpu = gpu_or_skip!();
    let (m, tok) = load_dir(
        gpu,
        &dir("models/tiny"),
        Quant::Nf4 {
            double_quant: false,
        },
    )
    .unwrap();
    let train = examples(&tok);
    let layout = Layout::new(&m.model_config(), &lora());
    let params = init_params(&layout, 8, 1);
    let mut trainer = LoraTrainer::new(gpu, &m, lora(), OptimConfig::default(), &params).unwrap();
    let mut s = Session::new(&mut trainer, &train, run_cfg(60), None);
    let mut losses = Vec::new();
    while !s.done() {
        losses.push(pollster::block_on(s.step(gpu)).unwrap().loss);
    }
    let first = losses[0];
    let last = losses[losses.len() - 5..].iter().sum::<f32>() / 5.0;
    assert!(first > 5.0, "initial loss {first}");
    assert!(
        last < first / 3.0,
        "loss did not fall: {first} -> {last} ({losses:?})"
    );
}

/// Interrupt after 4 steps, save a checkpoint, resume in a new trainer: the remaining
/// losses and the final adapter are identical to an uninterrupted run (same data order,
/// same dropout masks, same AdamW state).
#[test]
fn resume_reproduces_the_uninterrupted_run() {
    let gpu = gpu_or_skip!();
    let (m, tok) = load_dir(gpu, &dir("models/tiny"), Quant::F32).unwrap();
    let train = examples(&tok);
    let layout = Layout::new(&m.model_config(), &lora());
    let params = init_params(&layout, 8, 3);
    let total = 8;

    let mut t1 = LoraTrainer::new(gpu, &m, lora(), OptimConfig::default(), &params).unwrap();
    let mut s1 = Session::new(&mut t1, &train, run_cfg(total), None);
    let mut want = Vec::new();
    while !s1.done() {
        want.push(pollster::block_on(s1.step(gpu)).unwrap().loss);
    }
    let want_params = pollster::block_on(t1.params_host(gpu)).unwrap();

    let ck = std::env::temp_dir().join(format!("wgtune-resume-{}", std::process::id()));
    let mut t2 = LoraTrainer::new(gpu, &m, lora(), OptimConfig::default(), &params).unwrap();
    let mut got = Vec::new();
    {
        let mut s2 = Session::new(&mut t2, &train, run_cfg(total), None);
        for _ in 0..4 {
            got.push(pollster::block_on(s2.step(gpu)).unwrap().loss);
        }
        let state = s2.state.clone();
        let p = pollster::block_on(s2.trainer.params_host(gpu)).unwrap();
        let (ma, va) = pollster::block_on(s2.trainer.optimizer_state(gpu)).unwrap();
        let c = checkpoint::Checkpoint {
            lora: lora(),
            params: p,
            exp_avg: ma,
            exp_avg_sq: va,
            state,
            settings: Default::default(),
            data_fingerprint: String::new(),
            base_model: "tiny".into(),
        };
        checkpoint::save(&ck, &c, &m.model_config()).unwrap();
    }
    drop(t2);

    let c = checkpoint::load(&ck, &m.model_config()).unwrap();
    let mut t3 =
        LoraTrainer::new(gpu, &m, c.lora.clone(), OptimConfig::default(), &c.params).unwrap();
    t3.set_optimizer_state(gpu, &c.exp_avg, &c.exp_avg_sq, c.state.step)
        .unwrap();
    let mut s3 = Session::new(&mut t3, &train, run_cfg(total), Some(c.state.clone()));
    while !s3.done() {
        got.push(pollster::block_on(s3.step(gpu)).unwrap().loss);
    }
    assert_eq!(got, want, "losses after resume");
    assert_eq!(
        pollster::block_on(t3.params_host(gpu)).unwrap(),
        want_params,
        "final adapter"
    );
    std::fs::remove_dir_all(&ck).unwrap();
}

/// Gradient checkpointing (recomputing each layer in the backward pass, dropout masks
/// included) gives bit-identical gradients. (Its memory saving is measured by the CLI's
/// peak_gpu_mib, not here: tests share the GPU pool concurrently.)
#[test]
fn gradient_checkpointing_gives_identical_gradients() {
    let gpu = gpu_or_skip!();
    let (m, tok) = load_dir(
        gpu,
        &dir("models/tiny"),
        Quant::Nf4 {
            double_quant: false,
        },
    )
    .unwrap();
    let train = examples(&tok);
    let layout = Layout::new(&m.model_config(), &lora());
    let mut params = init_params(&layout, 8, 5);
    // B != 0 so that every gradient is non-trivial.
    for s in &layout.slots {
        for (i, v) in params[s.b..s.b + s.n_out * 8].iter_mut().enumerate() {
            *v = ((i * 7919 % 101) as f32 / 101.0 - 0.5) * 0.02;
        }
    }
    let batch = wgtune::train::batches::make_batch(&train.iter().collect::<Vec<_>>(), 999);
    let mut grads = Vec::new();
    for checkpoint in [false, true] {
        let mut t = LoraTrainer::new(gpu, &m, lora(), OptimConfig::default(), &params).unwrap();
        t.grad_checkpoint = checkpoint;
        grads.push(pollster::block_on(t.gradients(gpu, std::slice::from_ref(&batch), 11)).unwrap());
    }
    assert_eq!(grads[0].0, grads[1].0, "loss");
    assert_eq!(grads[0].1, grads[1].1, "gradients");
    assert!(grads[0].1.iter().any(|&g| g != 0.0));
}

/// Submitting the next step before reading the previous one back (no GPU idle between steps)
/// reports the same losses and ends with the same adapter as stepping synchronously.
#[test]
fn pipelined_steps_report_the_same_as_synchronous_ones() {
    let gpu = gpu_or_skip!();
    let (m, tok) = load_dir(gpu, &dir("models/tiny"), Quant::F32).unwrap();
    let train = examples(&tok);
    let layout = Layout::new(&m.model_config(), &lora());
    let params = init_params(&layout, 8, 9);
    let mut results = Vec::new();
    for pipelined in [false, true] {
        let mut t = LoraTrainer::new(gpu, &m, lora(), OptimConfig::default(), &params).unwrap();
        let mut s = Session::new(&mut t, &train, run_cfg(5), None);
        let mut reports = Vec::new();
        while !s.finished() {
            let r = if pipelined {
                pollster::block_on(s.next_report(gpu, |_| false)).unwrap()
            } else {
                pollster::block_on(s.step(gpu)).unwrap()
            };
            reports.push((r.step, r.loss, r.grad_norm, r.tokens));
        }
        results.push((reports, pollster::block_on(t.params_host(gpu)).unwrap()));
    }
    assert_eq!(results[0].0.len(), 5);
    assert_eq!(results[0], results[1]);
}

/// Five QLoRA steps with f16 arithmetic in the NF4 and f16-wte matmuls (the tuning's `f16_math`,
/// what real GPUs with shader-f16 run) stay close to the same steps with f32 arithmetic: each
/// matmul errs by a few units of f16's 2^-11 per 4-term partial sum (see
/// tests/kernels/matmul_f16.rs). Measured on lavapipe: losses within 1.5e-5 relative, grad
/// norms within 6.2e-5; bounds 1e-3. The final LoRA parameters are compared as a whole
/// (relative L2 distance, bound 1e-2): element by element, Adam turns the rounding of a
/// near-zero gradient into a step of ±lr, so one or two of the 16,384 parameters may end a
/// whole step apart (9e-2 of the largest magnitude) with one draw of dropout masks and not
/// another. Measured over run seeds 1-5 and 7: relative L2 3.1e-4 to 3.2e-3, at most 2
/// elements beyond 2e-2 of the largest magnitude.
#[test]
fn f16_math_training_stays_close_to_f32_math() {
    let _ = gpu_or_skip!();
    let mut results = Vec::new();
    for f16 in [false, true] {
        // A device of its own, so that the shared one keeps its tuning.
        let mut gpu = wgtune::gpu::Gpu::new_blocking().unwrap();
        if f16
            && !crate::common::has_feature(
                &gpu,
                wgpu::Features::SHADER_F16,
                "f16-math training steps",
            )
        {
            return;
        }
        wgtune::kernels::tuning_mut(&mut gpu).f16_math = f16;
        let (m, tok) = load_dir(
            &gpu,
            &dir("models/tiny"),
            Quant::Nf4 {
                double_quant: false,
            },
        )
        .unwrap();
        let train = examples(&tok);
        let layout = Layout::new(&m.model_config(), &lora());
        let params = init_params(&layout, 8, 3);
        let mut t = LoraTrainer::new(&gpu, &m, lora(), OptimConfig::default(), &params).unwrap();
        let mut s = Session::new(&mut t, &train, run_cfg(5), None);
        let mut reports = Vec::new();
        while !s.finished() {
            let r = pollster::block_on(s.step(&gpu)).unwrap();
            reports.push((r.loss, r.grad_norm));
        }
        results.push((reports, pollster::block_on(t.params_host(&gpu)).unwrap()));
    }
    let ((r32, p32), (r16, p16)) = (&results[0], &results[1]);
    let sq = |v: f32| (v as f64) * (v as f64);
    let l2 = (p32.iter().zip(p16).map(|(a, b)| sq(a - b)).sum::<f64>()
        / p32.iter().map(|&a| sq(a)).sum::<f64>())
    .sqrt();
    for (a, b) in r32.iter().zip(r16) {
        assert!((a.0 - b.0).abs() <= 1e-3 * a.0, "loss {} vs {}", a.0, b.0);
        assert!(
            (a.1 - b.1).abs() <= 1e-3 * a.1,
            "grad norm {} vs {}",
            a.1,
            b.1
        );
    }
    assert!(
        l2 <= 1e-2,
        "final parameters: relative L2 distance {l2:.3e}"
    );
}

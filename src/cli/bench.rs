//! `wgtune bench kernels`: GFLOP/s of the matmul kernels at GPT-2 shapes. Figures, not tests.
//! The kernel variants are the device's (`kernels::tuning`; `WGTUNE_KERNELS=tiled` or `-tiled`
//! picks the matmul), printed with the figures.

use std::time::Instant;

use clap::Subcommand;
use wgtune::gpu::Gpu;
use wgtune::kernels::matmul::{Weight, linear_backward_input, linear_forward};
use wgtune::kernels::nf4::upload_conv1d_nf4;
use wgtune::kernels::tuning;
use wgtune::model::ModelConfig;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training, prefill and decode speed of a GPT-2- or Llama-shaped model with random weights
    /// (no download) and a LoRA adapter on `--targets` (inference runs with it), as one JSON
    /// object.
    Model(ModelBench),
    /// Matmul and NF4 matmul GFLOP/s at GPT-2 shapes (768×2304, 768×3072, 3072×768, 768×50257),
    /// with the kernel variants the device's tuning picks: `WGTUNE_KERNELS=f16` runs f16 and NF4
    /// weights with f16 arithmetic (where the device has shader-f16), `-f16` with f32.
    Kernels {
        /// Rows of the activation matrix (batch × sequence tokens).
        #[arg(long, default_value_t = 128)]
        tokens: usize,
        /// Timed repetitions per case (after one warm-up).
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Weight formats to measure.
        #[arg(long, value_delimiter = ',', default_value = "f32,f16,nf4")]
        formats: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct ModelBench {
    /// distilgpt2, gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny (the fixture shape), or a
    /// Llama-family shape: smollm2-135m, smollm2-360m, qwen2.5-0.5b, llama-3.2-1b.
    #[arg(long, default_value = "tiny")]
    pub shape: String,
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Base weight format: nf4, nf4-dq, f16 or f32.
    #[arg(long, default_value = "nf4")]
    pub quant: wgtune::model::Quant,
    #[arg(long, value_delimiter = ',', default_value = "c_attn")]
    pub targets: Vec<String>,
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// Timed training steps (after two warm-up steps: the first meets every shape and is
    /// followed by autotuning, the second runs the tuned kernels and caches its bind groups).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Decode steps timed after the prefill (and one untimed decode step, which compiles the
    /// decode kernels).
    #[arg(long, default_value_t = 16)]
    pub decode_tokens: usize,
    #[arg(long)]
    pub grad_checkpoint: bool,
    /// Only measure peak GPU memory: record and submit one training step, print the buffer
    /// pool's allocation peak and exit without waiting for the GPU (a full step of a large
    /// shape takes hours on CPU Vulkan). A step takes every buffer it uses from the pool while
    /// it is recorded and holds it until submission, so this is the same peak a timed run
    /// reports.
    #[arg(long)]
    pub memory_only: bool,
}

pub fn run(cmd: BenchCommand) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        BenchCommand::Model(a) => model(a),
        BenchCommand::Kernels {
            tokens,
            iters,
            formats,
        } => kernels(tokens, iters, &formats),
    }
}

/// GPT-2 small's Conv1D shapes (in, out); 768×50257 is the tied LM head.
const SHAPES: [(usize, usize); 4] = [(768, 2304), (768, 3072), (3072, 768), (768, 50257)];

fn kernels(m: usize, iters: usize, formats: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new_blocking()?;
    println!(
        "adapter: {} ({:?}, {:?}); kernels: {}; M = {m} tokens; {iters} timed runs after a warm-up",
        gpu.adapter_info.name,
        gpu.adapter_info.backend,
        gpu.adapter_info.device_type,
        tuning(&gpu)
    );
    println!("kernels: {} (WGTUNE_KERNELS to change)", tuning(&gpu));
    println!(
        "{:<6} {:>5} {:>6} {:>6} {:>8} {:>12} {:>12}",
        "format", "math", "in", "out", "pass", "ms", "GFLOP/s"
    );
    for format in formats {
        // f32 weights always run the f32 kernel.
        let math = if tuning(&gpu).f16_math && format != "f32" {
            "f16"
        } else {
            "f32"
        };
        for &(k, n) in &SHAPES {
            let w_host: Vec<f32> = (0..k * n)
                .map(|i| ((i as u64 * 2654435761 % 1000) as f32 / 1000.0 - 0.5) * 0.05)
                .collect();
            let pieces = split_columns(&gpu, &w_host, k, n, format)?;
            let x = gpu.upload_f32(&vec![0.01; m * k]);
            let dy = gpu.upload_f32(&vec![0.01; m * n.min(pieces[0].1)]);
            let y = gpu.tensor(m * pieces[0].1);
            let dx = gpu.tensor(m * k);
            for pass in ["forward", "backward"] {
                let run_once = || {
                    let mut cmd = gpu.commands();
                    for (w, cols) in &pieces {
                        if pass == "forward" {
                            linear_forward(&mut cmd, &y, &x, w, None, m, k, *cols, false);
                        } else {
                            linear_backward_input(&mut cmd, &dx, &dy, w, m, k, *cols, true);
                        }
                    }
                    cmd.submit();
                    gpu.wait();
                };
                run_once();
                let t0 = Instant::now();
                for _ in 0..iters {
                    run_once();
                }
                let secs = t0.elapsed().as_secs_f64() / iters as f64;
                let gflop = 2.0 * m as f64 * k as f64 * n as f64 / 1e9;
                println!(
                    "{:<6} {:>5} {:>6} {:>6} {:>8} {:>12.2} {:>12.2}",
                    format,
                    math,
                    k,
                    n,
                    pass,
                    secs * 1e3,
                    gflop / secs
                );
            }
        }
    }
    Ok(())
}

/// Upload `w (K,N)` in `format`, split along the output dimension into pieces that fit one
/// shader binding (the LM head is 154 MB in f32: more than lavapipe's 128 MiB bindings).
fn split_columns(
    gpu: &Gpu,
    w: &[f32],
    k: usize,
    n: usize,
    format: &str,
) -> Result<Vec<(Weight, usize)>, Box<dyn std::error::Error>> {
    // NF4 is quantized on the GPU from an f32 upload, so its pieces are sized like f32 ones.
    let words_per_col = match format {
        "f32" | "nf4" => k,
        "f16" => k.div_ceil(2),
        other => return Err(format!("unknown format {other:?} (use f32, f16 or nf4)").into()),
    };
    let cols = (gpu.max_binding_words() / words_per_col / 64 * 64).min(n);
    let mut pieces = Vec::new();
    for c0 in (0..n).step_by(cols) {
        let nc = cols.min(n - c0);
        // Columns c0..c0+nc of the Conv1D weight, as its own (K, nc) matrix.
        let part: Vec<f32> = (0..k)
            .flat_map(|r| w[r * n + c0..r * n + c0 + nc].iter().copied())
            .collect();
        let weight = match format {
            "f32" => Weight::F32(gpu.upload_f32(&part)),
            "f16" => {
                let h: Vec<half::f16> = part.iter().map(|&v| half::f16::from_f32(v)).collect();
                Weight::F16(gpu.upload_bytes(bytemuck::cast_slice(&h)))
            }
            _ => upload_conv1d_nf4(gpu, &part, k, nc),
        };
        pieces.push((weight, nc));
    }
    Ok(pieces)
}

fn tiny_shape() -> wgtune::model::Gpt2Config {
    let mut c = wgtune::model::Gpt2Config::preset_shape("gpt2").expect("preset");
    (c.n_embd, c.n_head, c.n_layer, c.n_positions, c.vocab_size) = (64, 4, 2, 128, 1000);
    c.eos_token_id = Some(999);
    c
}

/// FLOPs of one training step (forward + backward to the LoRA weights, base frozen), counting
/// 2 per multiply-add: each block's Linear matmuls (every weight once per row) forward and
/// input-gradient, causal attention (~T²/2 pairs: QKᵀ and PV forward; four products
/// backward plus the recomputed scores), and the LM head twice (logits, and the
/// softmax-weighted sum of head rows that gives the input gradient in the same sweep).
/// LoRA's rank-r products are small and left out.
fn train_flops(c: &ModelConfig, b: usize, t: usize) -> f64 {
    let weights: usize = c
        .modules()
        .iter()
        .map(|&m| {
            let (k, n) = c.module_dims(m);
            k * n
        })
        .sum();
    let width = match c {
        ModelConfig::Gpt2(g) => g.n_embd,
        ModelConfig::Llama(l) => l.hidden_size,
    } as f64;
    let (rows, l, v) = ((b * t) as f64, c.n_layer() as f64, c.vocab_size() as f64);
    let pairs = b as f64 * (t * (t + 1) / 2) as f64;
    let block_fwd = 2.0 * rows * weights as f64 + 2.0 * 2.0 * pairs * width;
    let block_bwd = 2.0 * rows * weights as f64 + 2.0 * 5.0 * pairs * width;
    l * (block_fwd + block_bwd) + 2.0 * 2.0 * rows * width * v
}

/// The shape `--shape` names: GPT-2 presets (and `tiny`, the fixture's), or the Llama
/// family's.
fn bench_shape(name: &str) -> Result<ModelConfig, String> {
    if name == "tiny" {
        return Ok(ModelConfig::Gpt2(tiny_shape()));
    }
    if let Some(c) = wgtune::model::Gpt2Config::preset_shape(name) {
        return Ok(ModelConfig::Gpt2(c));
    }
    wgtune::model::llama_config::LlamaConfig::preset_shape(name)
        .map(ModelConfig::Llama)
        .ok_or_else(|| format!("unknown --shape {name:?}: use tiny, distilgpt2, gpt2, gpt2-medium, gpt2-large, gpt2-xl, smollm2-135m, smollm2-360m, qwen2.5-0.5b or llama-3.2-1b"))
}

fn model(a: ModelBench) -> Result<(), Box<dyn std::error::Error>> {
    use wgtune::lora::{Layout, LoraConfig, init_params};
    use wgtune::model::Model;
    use wgtune::train::{Batch, LoraTrainer, OptimConfig};
    let cfg = bench_shape(&a.shape)?;
    let n_pos = cfg.n_positions();
    if a.seq_len == 0 || a.seq_len > n_pos || a.batch_size == 0 || a.steps == 0 {
        return Err(
            format!("--seq-len must be 1..={n_pos}, --batch-size and --steps at least 1").into(),
        );
    }
    // GPT-2's default target names no Llama module: the family's default (PEFT's) instead.
    let targets = if a.targets == ["c_attn"] {
        cfg.default_targets()
    } else {
        a.targets.clone()
    };
    let lora = LoraConfig {
        r: a.rank,
        lora_alpha: 2.0 * a.rank as f32,
        lora_dropout: 0.05,
        target_modules: targets.clone(),
        use_rslora: false,
    };
    lora.validate_for(&cfg)?;
    let gpu = Gpu::new_blocking()?;
    let model = match &cfg {
        ModelConfig::Gpt2(c) => {
            Model::Gpt2(wgtune::model::Gpt2::random(&gpu, c.clone(), a.quant, 1))
        }
        ModelConfig::Llama(c) => Model::Llama(wgtune::model::llama::Llama::random(
            &gpu,
            c.clone(),
            a.quant,
            1,
        )),
    };
    let model = model.as_ref();
    let weights_mib = model.weight_bytes() as f64 / 1048576.0;
    let layout = Layout::new(&cfg, &lora);
    let params = init_params(&layout, a.rank, 1);
    // Inference below runs with the same adapter applied (its B is zero at initialisation:
    // the values do not change the work).
    let adapter = wgtune::lora::GpuAdapter::new(&gpu, &cfg, lora.clone(), &params);
    let mut trainer = LoraTrainer::new(&gpu, model, lora, OptimConfig::default(), &params)?;
    trainer.grad_checkpoint = a.grad_checkpoint;
    let (b, t) = (a.batch_size, a.seq_len);
    let ids: Vec<u32> = (0..b * t)
        .map(|i| (i as u64 * 2654435761 % cfg.vocab_size() as u64) as u32)
        .collect();
    let labels: Vec<i32> = ids.iter().map(|&x| x as i32).collect();
    let batch = Batch::from_labels(ids.clone(), vec![1; b * t], &labels, b, t);
    gpu.pool().reset_peak();
    if a.memory_only {
        let _pending = trainer.submit_step(&gpu, std::slice::from_ref(&batch), 1e-4, 0)?;
        let out = serde_json::json!({
            "shape": a.shape, "quant": a.quant.to_string(), "batch_size": b, "seq_len": t,
            "targets": targets, "rank": a.rank, "grad_checkpoint": a.grad_checkpoint,
            "trainable_params": layout.trainable, "base_params": cfg.num_params(),
            "peak_gpu_mib": gpu.pool().stats().peak_allocated as f64 / 1048576.0,
            "weights_mib": weights_mib,
            "peak_measured": "buffer-pool allocation peak of one recorded and submitted step (not awaited)",
            "adapter": adapter_name(&gpu),
            "kernels": tuning(&gpu).to_string(),
        });
        println!("{out}");
        // Leave without waiting for the GPU to run the step.
        std::process::exit(0);
    }
    pollster::block_on(trainer.train_step(&gpu, std::slice::from_ref(&batch), 1e-4, 0))?;
    // The warm-up step met every matmul shape: the autotuner times them now (as the training
    // job does after its first step), so that the timed steps run the kernels it picks.
    let t0 = Instant::now();
    let clock = || t0.elapsed().as_secs_f64() * 1e3;
    let tuned = pollster::block_on(wgtune::kernels::autotune::tune_pending(&gpu, &clock))?;
    let autotune_s = t0.elapsed().as_secs_f64();
    if !tuned.tuned.is_empty() {
        eprintln!(
            "autotuned {} matmul shape classes in {autotune_s:.1} s ({})",
            tuned.tuned.len(),
            tuned.timer
        );
    }
    // Second warm-up: the tuned kernels' first step, and the one after which the pool hands
    // every step the same buffers, so that every bind group is cached (src/gpu/bind_groups.rs).
    pollster::block_on(trainer.train_step(&gpu, std::slice::from_ref(&batch), 1e-4, 0))?;
    let (d0, s0) = gpu.counters();
    let h0 = gpu.host_time();
    let start = Instant::now();
    for i in 0..a.steps {
        pollster::block_on(trainer.train_step(&gpu, std::slice::from_ref(&batch), 1e-4, i as u32))?;
    }
    let train_s = start.elapsed().as_secs_f64() / a.steps as f64;
    let (d1, s1) = gpu.counters();
    let host_step_s = (gpu.host_time() - h0) / a.steps as f64;
    let peak_train = gpu.pool().stats().peak_allocated;
    let flops = train_flops(&cfg, b, t);

    // Inference with the adapter: prefill the sequence, then decode one token at a time with
    // the KV cache.
    let adapter = Some(adapter.as_ref());
    let prompt: Vec<u32> = ids[..t.min(n_pos - (a.decode_tokens + 1).min(n_pos - 1))].to_vec();
    let positions = (prompt.len() + a.decode_tokens + 1).min(n_pos);
    let mut cache = model.kv_cache(&gpu, positions);
    let start = Instant::now();
    let mut logits = pollster::block_on(model.step(&gpu, &mut cache, &prompt, adapter.as_ref()))?;
    let prefill_s = start.elapsed().as_secs_f64();
    if cache.len() < cache.capacity() {
        // Untimed: the first decode step compiles the one-row kernels.
        let id = wgtune::sample::argmax(&logits);
        logits = pollster::block_on(model.step(&gpu, &mut cache, &[id], adapter.as_ref()))?;
    }
    let (dd0, ds0) = gpu.counters();
    let hd0 = gpu.host_time();
    let start = Instant::now();
    let mut decoded = 0;
    while decoded < a.decode_tokens && cache.len() < cache.capacity() {
        let id = wgtune::sample::argmax(&logits);
        logits = pollster::block_on(model.step(&gpu, &mut cache, &[id], adapter.as_ref()))?;
        decoded += 1;
    }
    let decode_s = start.elapsed().as_secs_f64();
    let (dd1, ds1) = gpu.counters();
    let host_token_s = (gpu.host_time() - hd0) / decoded.max(1) as f64;
    let per_token = |x: u64| x as f64 / decoded.max(1) as f64;
    let out = serde_json::json!({
        "shape": a.shape, "quant": a.quant.to_string(), "batch_size": b, "seq_len": t,
        "targets": targets, "rank": a.rank, "grad_checkpoint": a.grad_checkpoint,
        "trainable_params": layout.trainable, "base_params": cfg.num_params(),
        "train_tokens_per_s": (b * t) as f64 / train_s,
        "train_step_s": train_s,
        "train_gflop_per_step": flops / 1e9,
        "train_gflop_per_s": flops / 1e9 / train_s,
        "prefill_tokens_per_s": prompt.len() as f64 / prefill_s,
        "decode_tokens_per_s": decoded as f64 / decode_s.max(1e-9),
        "decode_dispatches_per_token": per_token(dd1 - dd0),
        "decode_submissions_per_token": per_token(ds1 - ds0),
        "peak_gpu_mib": peak_train as f64 / 1048576.0,
        "weights_mib": weights_mib,
        "dispatches_per_step": (d1 - d0) as f64 / a.steps as f64,
        "submissions_per_step": (s1 - s0) as f64 / a.steps as f64,
        "host_ms_per_step": host_step_s * 1e3,
        "host_ms_per_token": host_token_s * 1e3,
        "adapter": adapter_name(&gpu),
        "kernels": tuning(&gpu).to_string(),
        "autotune": wgtune::kernels::state(&gpu).tuned.lock().unwrap().summary(),
        "autotune_s": autotune_s,
    });
    println!("{out}");
    Ok(())
}

pub(super) fn adapter_name(gpu: &Gpu) -> String {
    let i = &gpu.adapter_info;
    format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
}

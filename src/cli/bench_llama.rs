//! `wgtune bench model --shape smollm2-135m|smollm2-360m|qwen2.5-0.5b|llama-3.2-1b`: one
//! LoRA / QLoRA training step of a Llama-family shape with random weights (forward, loss,
//! backward, clipping, AdamW), its speed and the buffer pool's peak GPU memory. Figures, not
//! tests.

use std::time::Instant;

use wgtune::gpu::Gpu;
use wgtune::kernels::optim::{AdamW, NORM_PARTIALS, adamw, grad_norm};
use wgtune::kernels::tuning;
use wgtune::model::forward::AttnSource;
use wgtune::model::llama::{Llama, module_dims};
use wgtune::model::llama_config::LlamaConfig;
use wgtune::model::{AdapterRef, LoraSlot, Module};
use wgtune::train::llama_backward::record_loss_and_backward;

use super::bench::ModelBench;

/// The modules `--targets` names: PEFT's default for Llama (q_proj, v_proj) when it is left
/// at GPT-2's default, `all-linear`, or module names.
fn targets(names: &[String]) -> Result<Vec<Module>, String> {
    if names == ["c_attn"] {
        return Ok(vec![Module::QProj, Module::VProj]);
    }
    if names == ["all-linear"] {
        return Ok(Module::LLAMA.to_vec());
    }
    names
        .iter()
        .map(|n| {
            Module::LLAMA
                .into_iter()
                .find(|m| m.path().ends_with(&format!(".{n}")))
                .ok_or_else(|| format!("--targets {n:?} is not a Llama module: use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj or all-linear"))
        })
        .collect()
}

pub fn run(a: ModelBench, cfg: LlamaConfig) -> Result<(), Box<dyn std::error::Error>> {
    let (b, t) = (a.batch_size, a.seq_len);
    if t == 0 || t > cfg.max_position_embeddings || b == 0 || a.steps == 0 {
        return Err("--seq-len, --batch-size and --steps must be at least 1".into());
    }
    if a.grad_checkpoint {
        return Err("--grad-checkpoint is not implemented for the Llama family yet".into());
    }
    let modules = targets(&a.targets)?;
    let gpu = Gpu::new_blocking()?;
    let model = Llama::random(&gpu, cfg.clone(), a.quant, 1);
    let weights_mib = model.weight_bytes() as f64 / 1048576.0;
    let r = a.rank;
    let mut slots = Vec::new();
    let mut n = 0;
    for layer in 0..cfg.num_hidden_layers {
        for &module in &modules {
            let (k_in, n_out) = module_dims(&cfg, module);
            let (pa, pb) = (n, n + r * k_in);
            n = pb + n_out * r;
            slots.push(LoraSlot {
                layer,
                module,
                k_in,
                n_out,
                a: pa,
                b: pb,
            });
        }
    }
    let init: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 1e-4).collect();
    let params = gpu.upload_f32(&init);
    let (grads, zeros, m1, m2) = (gpu.tensor(n), gpu.zeros(n), gpu.zeros(n), gpu.zeros(n));
    let (norm, partials) = (gpu.zeros(2), gpu.tensor(NORM_PARTIALS));
    let ids: Vec<u32> = (0..b * t)
        .map(|i| (i as u64 * 2654435761 % cfg.vocab_size as u64) as u32)
        .collect();
    // Position i predicts the next token of its sequence; the last predicts nothing.
    let ignore = wgtune::data::IGNORE_INDEX as u32;
    let targets_host: Vec<u32> = (0..b * t)
        .map(|i| if (i + 1) % t == 0 { ignore } else { ids[i + 1] })
        .collect();
    let (ids_t, mask) = (gpu.upload_u32(&ids), gpu.upload_u32(&vec![1; b * t]));
    let targets_t = gpu.upload_u32(&targets_host);
    let loss = gpu.tensor(b * t);
    let mut step = 0u32;
    let mut submit_step = |gpu: &Gpu| {
        step += 1;
        let ad = AdapterRef {
            slots: &slots,
            params: &params,
            rank: r,
            scale: 2.0,
            p_drop: 0.05,
            seed: step,
        };
        let mut cmd = gpu.commands();
        cmd.copy(&zeros, &grads);
        let src = AttnSource::Batch { mask: &mask };
        let acts = model.record_forward(&mut cmd, &ids_t, src, (b, t), Some(&ad), true);
        let scale = 1.0 / (b * t) as f32;
        record_loss_and_backward(
            &model, &mut cmd, &acts, &mask, &targets_t, &loss, &ad, &grads, scale,
        );
        grad_norm(&mut cmd, &norm, &partials, &grads, n, 1.0);
        let h = AdamW {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step,
        };
        adamw(&mut cmd, &params, &m1, &m2, &grads, &norm, n, &h);
        cmd.submit();
    };
    let common = serde_json::json!({
        "shape": a.shape, "quant": a.quant.to_string(), "batch_size": b, "seq_len": t,
        "targets": modules.iter().map(|m| m.path()).collect::<Vec<_>>(), "rank": r,
        "trainable_params": n, "base_params": cfg.num_params(),
        "weights_mib": weights_mib, "adapter": super::bench::adapter_name(&gpu),
    });
    gpu.pool().reset_peak();
    if a.memory_only {
        submit_step(&gpu);
        let mut out = common;
        out["peak_gpu_mib"] = (gpu.pool().stats().peak_allocated as f64 / 1048576.0).into();
        out["peak_measured"] =
            "buffer-pool allocation peak of one recorded and submitted step (not awaited)".into();
        println!("{out}");
        // Leave without waiting for the GPU to run the step.
        std::process::exit(0);
    }
    let wait = |gpu: &Gpu| pollster::block_on(gpu.read_f32(&norm)).map(|v| v[0]);
    submit_step(&gpu);
    wait(&gpu)?;
    let t0 = Instant::now();
    let clock = || t0.elapsed().as_secs_f64() * 1e3;
    let tuned = pollster::block_on(wgtune::kernels::autotune::tune_pending(&gpu, &clock))?;
    let autotune_s = t0.elapsed().as_secs_f64();
    submit_step(&gpu);
    wait(&gpu)?;
    let start = Instant::now();
    for _ in 0..a.steps {
        submit_step(&gpu);
        wait(&gpu)?;
    }
    let train_s = start.elapsed().as_secs_f64() / a.steps as f64;
    let mut out = common;
    out["train_tokens_per_s"] = ((b * t) as f64 / train_s).into();
    out["train_step_s"] = train_s.into();
    out["peak_gpu_mib"] = (gpu.pool().stats().peak_allocated as f64 / 1048576.0).into();
    out["kernels"] = tuning(&gpu).to_string().into();
    out["autotuned_classes"] = tuned.tuned.len().into();
    out["autotune_s"] = autotune_s.into();
    println!("{out}");
    Ok(())
}

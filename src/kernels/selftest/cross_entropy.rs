//! The tied LM head + cross-entropy in vocabulary chunks (`kernels::cross_entropy::
//! lm_head_loss`) against full logits on the CPU (`cpu::cross_entropy`), for both row
//! reductions.

use super::matmul::add_throughput;
use super::{Ctx, KernelReport, Rng};
use crate::cpu;
use crate::data::IGNORE_INDEX;
use crate::kernels::Reduction;
use crate::kernels::cross_entropy::lm_head_loss;
use crate::kernels::matmul::Weight;

/// (rows, C, V, chunk, f16 wte). Vocabularies 1 (one partial chunk), 50 and 1000 (several
/// chunks, a partial last one) and GPT-2's 50257.
const CASES: [(usize, usize, usize, usize, bool); 8] = [
    (3, 8, 1, 64, false),
    (5, 17, 50, 64, false),
    (7, 12, 1000, 128, false),
    (3, 8, 50257, 4096, false),
    // 8-row blocks and 4-aligned runs: the matmuls' fast path, rescaled over 5 chunks.
    (9, 16, 300, 64, false),
    (5, 17, 1000, 128, true),
    (9, 16, 300, 64, true),
    (3, 8, 1, 64, true),
];

/// GPT-2 small's head: a few rows of 768 over the 50257-token vocabulary, as training chunks it.
const GPT2: (usize, usize, usize, usize, bool) = (4, 768, 50257, 4096, false);

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let mut out = Vec::new();
    // The logits' matmul is the device's choice: f16 arithmetic on an f16 wte where it runs
    // f16 math, outside these f32 bounds (f32 tables always run f32 math).
    let f16_tables = super::device_choice_is_f32(cx.gpu);
    for (reduction, suffix, skip) in super::reductions(cx.gpu) {
        let kernel = format!("lm head cross-entropy{suffix}");
        if !cx.wants(&kernel) {
            continue;
        }
        if let Some(why) = skip {
            out.push(KernelReport::skipped(kernel, why));
            continue;
        }
        let mut rep = KernelReport::new(kernel);
        let mut rng = Rng::new(11);
        for &case in &CASES {
            if case.4 && !f16_tables {
                continue;
            }
            check_case(cx, &mut rep, &mut rng, case, reduction).await;
        }
        if cx.opts.gpt2_sizes {
            check_case(cx, &mut rep, &mut rng, GPT2, reduction).await;
        }
        out.push(rep);
    }
    out
}

/// The gradient comes from the one-sweep online form (flash-attention style). Losses:
/// logsumexp over V in f32 → 1e-5·(1+|loss|). dx: sums over V of probabilities times wte →
/// 1e-5 abs + 1e-4 rel. The f16 wte (NF4 / f16 base weights) is checked against the same CPU
/// reference over the f16-rounded table, with the same bounds (f32 arithmetic on both sides;
/// odd C makes rows start mid-word, so chunks are 128 there). With dx (the online sweep) and
/// without (the stats sweep).
async fn check_case(
    cx: &Ctx<'_>,
    rep: &mut KernelReport,
    rng: &mut Rng,
    (rows, c, vocab, chunk, f16): (usize, usize, usize, usize, bool),
    reduction: Reduction,
) {
    let gpu = cx.gpu;
    let x = rng.vec(rows * c, 1.0);
    let wte = rng.vec(vocab * c, 1.0);
    let (wte, table) = if f16 {
        let h: Vec<half::f16> = wte.iter().map(|&x| half::f16::from_f32(x)).collect();
        let table = Weight::F16(gpu.upload_bytes(bytemuck::cast_slice(&h)));
        (cpu::embedding::f16_rounded(&wte), table)
    } else {
        let table = Weight::F32(gpu.upload_f32(&wte));
        (wte, table)
    };
    let mut targets: Vec<i32> = (0..rows).map(|_| rng.below(vocab as u64) as i32).collect();
    targets[rows / 2] = IGNORE_INDEX;
    let trained = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
    let grad_scale = 1.0 / trained as f32;

    let mut logits = vec![0.0; rows * vocab];
    cpu::matmul::gemm(
        &mut logits,
        &x,
        &wte,
        None,
        rows,
        vocab,
        c,
        false,
        true,
        1.0,
        0.0,
    );
    let mut want_loss = vec![0.0; rows];
    cpu::cross_entropy::cross_entropy_forward(&mut want_loss, &logits, &targets, rows, vocab);
    let mut dlogits = vec![0.0; rows * vocab];
    cpu::cross_entropy::cross_entropy_backward(
        &mut dlogits,
        &logits,
        &targets,
        rows,
        vocab,
        grad_scale,
    );
    let mut want_dx = vec![0.0; rows * c];
    cpu::matmul::gemm(
        &mut want_dx,
        &dlogits,
        &wte,
        None,
        rows,
        c,
        vocab,
        false,
        false,
        1.0,
        0.0,
    );

    let x_t = gpu.upload_f32(&x);
    let t_words: Vec<u32> = targets.iter().map(|&t| t as u32).collect();
    let targets_t = gpu.upload_u32(&t_words);
    for with_dx in [true, false] {
        let loss = gpu.tensor(rows);
        let dx = gpu.upload_f32(&vec![f32::NAN; rows * c]);
        let chunk_buf = gpu.tensor(rows * chunk);
        let state = gpu.tensor(rows * 3);
        let record = |cmd: &mut crate::gpu::Commands| {
            lm_head_loss(
                cmd,
                &loss,
                with_dx.then_some(&dx),
                &chunk_buf,
                &state,
                &x_t,
                &table,
                &targets_t,
                rows,
                c,
                vocab,
                chunk,
                grad_scale,
                reduction,
            );
        };
        let mut cmd = gpu.commands();
        record(&mut cmd);
        cmd.submit();
        let name = format!("rows={rows} C={c} V={vocab} chunk={chunk} dx={with_dx} f16 wte={f16}");
        let got = rep.read(gpu, &loss).await;
        rep.close(&format!("{name} loss"), &got, &want_loss, 1e-5, 1e-5);
        if with_dx {
            let got = rep.read(gpu, &dx).await;
            rep.close(&format!("{name} dx"), &got, &want_dx, 1e-5, 1e-4);
            if c == GPT2.1
                && let Some(ms) = cx.time_ms(&record).await
            {
                // The logits' and dx's products over the whole vocabulary.
                let flops = 2.0 * 2.0 * (rows * vocab * c) as f64;
                add_throughput(rep, flops / (ms * 1e6), "GFLOP/s");
            }
        }
    }
}

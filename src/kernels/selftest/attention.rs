//! Causal attention forward (also one row at a time, as generation with a KV cache runs it)
//! and backward (`kernels::attention`) against `cpu::attention`.

use super::matmul::add_throughput;
use super::{Ctx, KernelReport, Rng};
use crate::cpu;
use crate::gpu::Gpu;
use crate::kernels::attention::{AttnDims, attention_backward, attention_forward};

/// (B, T, C, n_head, n_kv_head, padded tail of batch 0): head dims 4, 32, 1, 64, 12, 20;
/// T = 1 and odd T; grouped-query attention with groups of 2 and 3, and one key/value head.
const CASES: [(usize, usize, usize, usize, usize, usize); 8] = [
    (2, 7, 12, 3, 3, 2),
    (1, 1, 8, 2, 2, 0),
    (2, 33, 64, 2, 2, 5),
    (1, 5, 3, 3, 3, 0),
    (1, 20, 128, 2, 2, 3),
    (2, 11, 72, 6, 3, 3),
    (1, 9, 60, 3, 1, 2),
    (2, 5, 36, 6, 2, 1),
];

/// GPT-2 small at 128 tokens: 12 heads of 64, no padding.
const GPT2: (usize, usize, usize, usize, usize, usize) = (1, 128, 768, 12, 12, 0);

fn mask_for(b: usize, t: usize, pad: usize) -> Vec<u32> {
    // Right padding of `pad` tokens on the first sequence (as the trainer pads).
    (0..b * t)
        .map(|i| u32::from(!(i / t == 0 && i % t >= t - pad)))
        .collect()
}

/// Multiply-adds of causal attention's two products (QKᵀ and PV) over the lower triangle.
fn flops(b: usize, t: usize, c: usize) -> f64 {
    2.0 * 2.0 * (b * c) as f64 * (t * (t + 1) / 2) as f64
}

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let mut out = Vec::new();
    let mut cases = CASES.to_vec();
    if cx.opts.gpt2_sizes {
        cases.push(GPT2);
    }
    if cx.wants("attention forward") {
        let mut rep = KernelReport::new("attention forward");
        let mut rng = Rng::new(9);
        for &case in &cases {
            forward(cx, &mut rep, &mut rng, case).await;
        }
        out.push(rep);
    }
    if cx.wants("attention backward") {
        let mut rep = KernelReport::new("attention backward");
        let mut rng = Rng::new(10);
        for &case in &cases {
            backward(cx, &mut rep, &mut rng, case).await;
        }
        out.push(rep);
    }
    out
}

/// Softmax-weighted sums in f32 (online) vs f64 (two-pass): inputs of order 1 → 2e-5.
async fn forward(
    cx: &Ctx<'_>,
    rep: &mut KernelReport,
    rng: &mut Rng,
    (b, t, c, nh, nkv, pad): (usize, usize, usize, usize, usize, usize),
) {
    let gpu: &Gpu = cx.gpu;
    let d = AttnDims {
        b,
        t,
        c,
        n_head: nh,
        n_kv_head: nkv,
    };
    let qkv = rng.vec(b * t * d.width(), 1.5);
    let mask = mask_for(b, t, pad);
    let mut want = vec![0.0; b * t * c];
    cpu::attention::attention_forward(&mut want, &qkv, &mask, b, t, c, nh, nkv);
    let (gq, gm) = (gpu.upload_f32(&qkv), gpu.upload_u32(&mask));
    let (out, lse) = (gpu.tensor(b * t * c), gpu.tensor(b * nh * t));
    // The last position alone, as generation with a KV cache computes it.
    let (last, last_lse) = (gpu.tensor(b * c), gpu.tensor(b * nh));
    let mut cmd = gpu.commands();
    attention_forward(&mut cmd, &out, &lse, &gq, &gm, &d, 0, t);
    attention_forward(&mut cmd, &last, &last_lse, &gq, &gm, &d, t - 1, 1);
    cmd.submit();
    let got = rep.read(gpu, &out).await;
    rep.close(&format!("{b}x{t}x{c}/{nh}/{nkv}"), &got, &want, 2e-5, 2e-5);
    let want_last: Vec<f32> = (0..b)
        .flat_map(|bb| {
            got.get((bb * t + t - 1) * c..)
                .unwrap_or(&[])
                .iter()
                .take(c)
                .copied()
        })
        .collect();
    let got_last = rep.read(gpu, &last).await;
    rep.close(
        &format!("{b}x{t}x{c}/{nh}/{nkv} kv-cache row"),
        &got_last,
        &want_last,
        1e-6,
        1e-6,
    );
    if (b, t, c, nh, nkv, pad) == GPT2 {
        let record = |cmd: &mut crate::gpu::Commands| {
            attention_forward(cmd, &out, &lse, &gq, &gm, &d, 0, t);
        };
        if let Some(ms) = cx.time_ms(&record).await {
            add_throughput(rep, flops(b, t, c) / (ms * 1e6), "GFLOP/s");
        }
    }
}

/// Gradients are sums over up to T terms of products of order-1 values: 5e-5 abs + rel.
async fn backward(
    cx: &Ctx<'_>,
    rep: &mut KernelReport,
    rng: &mut Rng,
    (b, t, c, nh, nkv, pad): (usize, usize, usize, usize, usize, usize),
) {
    let gpu: &Gpu = cx.gpu;
    let d = AttnDims {
        b,
        t,
        c,
        n_head: nh,
        n_kv_head: nkv,
    };
    let qkv = rng.vec(b * t * d.width(), 1.5);
    let dout = rng.vec(b * t * c, 1.0);
    let mask = mask_for(b, t, pad);
    let mut want = vec![0.0; b * t * d.width()];
    cpu::attention::attention_backward(&mut want, &dout, &qkv, &mask, b, t, c, nh, nkv);
    let (gq, gm) = (gpu.upload_f32(&qkv), gpu.upload_u32(&mask));
    let (out, lse, delta) = (
        gpu.tensor(b * t * c),
        gpu.tensor(b * nh * t),
        gpu.tensor(b * nh * t),
    );
    let dqkv = gpu.upload_f32(&vec![f32::NAN; b * t * d.width()]); // every element must be written
    let gdout = gpu.upload_f32(&dout);
    let mut cmd = gpu.commands();
    attention_forward(&mut cmd, &out, &lse, &gq, &gm, &d, 0, t);
    attention_backward(&mut cmd, &dqkv, &delta, &gdout, &out, &gq, &lse, &gm, &d);
    cmd.submit();
    let got = rep.read(gpu, &dqkv).await;
    rep.close(
        &format!("d {b}x{t}x{c}/{nh}/{nkv}"),
        &got,
        &want,
        5e-5,
        5e-5,
    );
    if (b, t, c, nh, nkv, pad) == GPT2 {
        let record = |cmd: &mut crate::gpu::Commands| {
            attention_backward(cmd, &dqkv, &delta, &gdout, &out, &gq, &lse, &gm, &d);
        };
        // The backward's products: dV, dP, dQ, dK.
        if let Some(ms) = cx.time_ms(&record).await {
            add_throughput(rep, 2.0 * flops(b, t, c) / (ms * 1e6), "GFLOP/s");
        }
    }
}

//! RoPE with q/k/v packing and its backward (`kernels::rope`) against `cpu::rope`.

use super::matmul::add_throughput;
use super::{Ctx, KernelReport, Rng};
use crate::cpu;
use crate::kernels::rope::{RopeDims, rope_pack, rope_unpack};

/// (rows, t, pos0, n_head, n_kv_head, head_dim): head dims 2, 12 and 20 (not powers of two),
/// GQA groups of 2 and 3, one KV head, several sequences, a KV-cache step at position 17.
const CASES: [(usize, usize, usize, usize, usize, usize); 6] = [
    (1, 1, 0, 1, 1, 2),
    (14, 7, 0, 6, 3, 12),
    (9, 9, 0, 3, 1, 20),
    (3, 3, 17, 6, 2, 12),
    (10, 5, 0, 4, 4, 64),
    (1, 1, 40, 2, 1, 8),
];

/// SmolLM2-135M at 512 tokens: 9 heads of 64, 3 KV heads.
const SMOLLM2: (usize, usize, usize, usize, usize, usize) = (512, 512, 0, 9, 3, 64);

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    if !cx.wants("rope") {
        return Vec::new();
    }
    let mut rep = KernelReport::new("rope pack and unpack");
    let mut rng = Rng::new(12);
    let mut cases = CASES.to_vec();
    if cx.opts.gpt2_sizes {
        cases.push(SMOLLM2);
    }
    for case in cases {
        check(cx, &mut rep, &mut rng, case).await;
    }
    vec![rep]
}

/// A rotation in f32 vs f64 of values of order 1: 1e-6 absolute + relative.
async fn check(
    cx: &Ctx<'_>,
    rep: &mut KernelReport,
    rng: &mut Rng,
    (rows, t, pos0, nh, nkv, hd): (usize, usize, usize, usize, usize, usize),
) {
    let gpu = cx.gpu;
    let d = RopeDims {
        rows,
        t,
        pos0,
        n_head: nh,
        n_kv_head: nkv,
        head_dim: hd,
    };
    let (c, kv, w) = (nh * hd, nkv * hd, d.width());
    // Frequencies as Llama's (theta 10000), so that angles reach hundreds of radians.
    let inv_freq: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / hd as f32))
        .collect();
    let table = cpu::rope::cos_sin_table(&inv_freq, pos0 + t);
    let (q, k, v) = (
        rng.vec(rows * c, 1.0),
        rng.vec(rows * kv, 1.0),
        rng.vec(rows * kv, 1.0),
    );
    let dqkv = rng.vec(rows * w, 1.0);
    let shape = ((rows, t, pos0), (nh, nkv, hd));
    let mut want = vec![0.0; rows * w];
    cpu::rope::rope_pack(&mut want, &q, &k, &v, &table, shape.0, shape.1);
    let (mut wq, mut wk, mut wv) = (
        vec![0.0; rows * c],
        vec![0.0; rows * kv],
        vec![0.0; rows * kv],
    );
    cpu::rope::rope_unpack(&mut wq, &mut wk, &mut wv, &dqkv, &table, shape.0, shape.1);

    let up = |x: &[f32]| gpu.upload_f32(x);
    let (gq, gk, gv, gt, gd) = (up(&q), up(&k), up(&v), up(&table), up(&dqkv));
    let nan = |n: usize| gpu.upload_f32(&vec![f32::NAN; n]); // every element must be written
    let (gqkv, dq, dk, dv) = (nan(rows * w), nan(rows * c), nan(rows * kv), nan(rows * kv));
    let record = |cmd: &mut crate::gpu::Commands| rope_pack(cmd, &gqkv, &gq, &gk, &gv, &gt, &d);
    let mut cmd = gpu.commands();
    record(&mut cmd);
    rope_unpack(&mut cmd, &dq, &dk, &dv, &gd, &gt, &d);
    cmd.submit();
    let name = format!("{rows}x({nh}+2x{nkv})x{hd} from {pos0}");
    let got = rep.read(gpu, &gqkv).await;
    rep.close(&format!("pack {name}"), &got, &want, 1e-6, 1e-6);
    for (what, g, w) in [("dq", &dq, &wq), ("dk", &dk, &wk), ("dv", &dv, &wv)] {
        let got = rep.read(gpu, g).await;
        rep.close(&format!("unpack {what} {name}"), &got, w, 1e-6, 1e-6);
    }
    if rows >= 512
        && let Some(ms) = cx.time_ms(&record).await
    {
        add_throughput(rep, (8 * rows * w) as f64 / (ms * 1e6), "GB/s");
    }
}

use crate::common::{Rng, assert_close, read_f32};
use crate::gpu_test;
use wgtune::cpu;
use wgtune::gpu::Gpu;
use wgtune::kernels::attention::{AttnDims, attention_backward, attention_forward};

/// (B, T, C, n_head, padded tail of batch 0): head dims 4, 32, 1, 64; T = 1 and odd T.
const CASES: [(usize, usize, usize, usize, usize); 5] = [
    (2, 7, 12, 3, 2),
    (1, 1, 8, 2, 0),
    (2, 33, 64, 2, 5),
    (1, 5, 3, 3, 0),
    (1, 20, 128, 2, 3),
];

fn mask_for(b: usize, t: usize, pad: usize) -> Vec<u32> {
    // Right padding of `pad` tokens on the first sequence (as the trainer pads).
    (0..b * t)
        .map(|i| u32::from(!(i / t == 0 && i % t >= t - pad)))
        .collect()
}

gpu_test!(
    attention_forward_matches_cpu_and_kv_cache_rows_agree,
    check_attention_forward
);
/// Softmax-weighted sums in f32 (online) vs f64 (two-pass): inputs of order 1 → 2e-5.
async fn check_attention_forward(gpu: &Gpu) {
    let mut rng = Rng::new(9);
    for &(b, t, c, nh, pad) in &CASES {
        let qkv = rng.vec(b * t * 3 * c, 1.5);
        let mask = mask_for(b, t, pad);
        let mut want = vec![0.0; b * t * c];
        cpu::attention::attention_forward(&mut want, &qkv, &mask, b, t, c, nh);

        let d = AttnDims {
            b,
            t,
            c,
            n_head: nh,
        };
        let (gq, gm) = (gpu.upload_f32(&qkv), gpu.upload_u32(&mask));
        let (out, lse) = (gpu.tensor(b * t * c), gpu.tensor(b * nh * t));
        // The last position alone, as generation with a KV cache computes it.
        let (last, last_lse) = (gpu.tensor(b * c), gpu.tensor(b * nh));
        let mut cmd = gpu.commands();
        attention_forward(&mut cmd, &out, &lse, &gq, &gm, &d, 0, t);
        attention_forward(&mut cmd, &last, &last_lse, &gq, &gm, &d, t - 1, 1);
        cmd.submit();
        let got = read_f32(gpu, &out).await;
        assert_close(&format!("attn {b}x{t}x{c}/{nh}"), &got, &want, 2e-5, 2e-5);
        let want_last: Vec<f32> = (0..b)
            .flat_map(|bb| got[(bb * t + t - 1) * c..][..c].to_vec())
            .collect();
        assert_close(
            "attn kv-cache row",
            &read_f32(gpu, &last).await,
            &want_last,
            1e-6,
            1e-6,
        );
    }
}

gpu_test!(attention_backward_matches_cpu, check_attention_backward);
/// Gradients are sums over up to T terms of products of order-1 values: 5e-5 abs + rel.
async fn check_attention_backward(gpu: &Gpu) {
    let mut rng = Rng::new(10);
    for &(b, t, c, nh, pad) in &CASES {
        let qkv = rng.vec(b * t * 3 * c, 1.5);
        let dout = rng.vec(b * t * c, 1.0);
        let mask = mask_for(b, t, pad);
        let mut want = vec![0.0; b * t * 3 * c];
        cpu::attention::attention_backward(&mut want, &dout, &qkv, &mask, b, t, c, nh);

        let d = AttnDims {
            b,
            t,
            c,
            n_head: nh,
        };
        let (gq, gm) = (gpu.upload_f32(&qkv), gpu.upload_u32(&mask));
        let (out, lse, delta) = (
            gpu.tensor(b * t * c),
            gpu.tensor(b * nh * t),
            gpu.tensor(b * nh * t),
        );
        let dqkv = gpu.upload_f32(&vec![f32::NAN; b * t * 3 * c]); // every element must be written
        let mut cmd = gpu.commands();
        attention_forward(&mut cmd, &out, &lse, &gq, &gm, &d, 0, t);
        attention_backward(
            &mut cmd,
            &dqkv,
            &delta,
            &gpu.upload_f32(&dout),
            &out,
            &gq,
            &lse,
            &gm,
            &d,
        );
        cmd.submit();
        assert_close(
            &format!("attn d {b}x{t}x{c}/{nh}"),
            &read_f32(gpu, &dqkv).await,
            &want,
            5e-5,
            5e-5,
        );
    }
}

//! NF4 quantization on the GPU (`kernels::nf4::quantize_conv1d`) against the host quantizer
//! (`crate::nf4`, itself checked against bitsandbytes' bytes in tests/kernels/nf4.rs): bit
//! for bit, packed bytes and absmax.

use super::matmul::add_throughput;
use super::{Ctx, KernelReport, Rng};
use crate::gpu::Gpu;
use crate::{kernels, nf4};

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let kernel = "nf4 quantize";
    if !cx.wants(kernel) {
        return Vec::new();
    }
    let mut rep = KernelReport::new(kernel);
    let mut rng = Rng::new(14);
    // Blocks that straddle rows, a partial last block, an odd element count and zero blocks.
    for &(k_in, n_out) in &[(1, 1), (3, 5), (17, 50), (96, 288), (64, 64), (768, 33)] {
        let mut w = rng.vec(k_in * n_out, 0.1);
        if w.len() >= 200 {
            w[..64].iter_mut().for_each(|v| *v = 0.0); // (transposed) zeros, exact ties
            w[100] = 0.039_790_15 * 0.1;
        }
        one(cx.gpu, &mut rep, &w, k_in, n_out).await;
    }
    if cx.opts.gpt2_sizes {
        // GPT-2 small's attention input projection, as loading quantizes it; timed.
        let (k_in, n_out) = (768, 2304);
        let w = Rng::new(0x6709).vec(k_in * n_out, 0.05);
        one(cx.gpu, &mut rep, &w, k_in, n_out).await;
        let gpu = cx.gpu;
        let (packed, absmax) = kernels::nf4::alloc(gpu, k_in * n_out);
        let w_t = gpu.upload_f32(&w);
        let record = |cmd: &mut crate::gpu::Commands| {
            kernels::nf4::quantize_conv1d(cmd, &packed, &absmax, &w_t, k_in, n_out)
        };
        if let Some(ms) = cx.time_ms(&record).await {
            let bytes = (w.len() * 4 + w.len() / 2 + w.len() / 16) as f64;
            add_throughput(&mut rep, bytes / (ms * 1e6), "GB/s");
        }
    }
    vec![rep]
}

async fn one(gpu: &Gpu, rep: &mut KernelReport, w: &[f32], k_in: usize, n_out: usize) {
    let want = nf4::quantize_conv1d(w, k_in, n_out);
    let (packed, absmax) = kernels::nf4::alloc(gpu, k_in * n_out);
    let mut cmd = gpu.commands();
    kernels::nf4::quantize_conv1d(&mut cmd, &packed, &absmax, &gpu.upload_f32(w), k_in, n_out);
    cmd.submit();
    let words = rep.read_words(gpu, &packed).await;
    let bytes: &[u8] = bytemuck::cast_slice(&words);
    let n = want.packed.len().min(bytes.len());
    let to_words = |b: &[u8]| -> Vec<u32> { b.iter().map(|&x| x as u32).collect() };
    rep.bits(
        &format!("packed {k_in}x{n_out}"),
        &to_words(&bytes[..n]),
        &to_words(&want.packed),
    );
    let got = rep.read_words(gpu, &absmax).await;
    let want_bits: Vec<u32> = want.absmax.iter().map(|x| x.to_bits()).collect();
    rep.bits(&format!("absmax {k_in}x{n_out}"), &got, &want_bits);
}

//! GELU (tanh approximation) and SwiGLU forward and backward, and addition
//! (`kernels::elementwise`) against `cpu::elementwise`.

use super::matmul::add_throughput;
use super::{Ctx, KernelReport, Rng};
use crate::{cpu, kernels};

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let mut out = Vec::new();
    if cx.wants("gelu") {
        let mut rep = KernelReport::new("gelu");
        gelu(cx, &mut rep).await;
        out.push(rep);
    }
    if cx.wants("swiglu") {
        let mut rep = KernelReport::new("swiglu");
        swiglu(cx, &mut rep).await;
        out.push(rep);
    }
    if cx.wants("add") {
        let mut rep = KernelReport::new("add");
        add(cx, &mut rep).await;
        out.push(rep);
    }
    out
}

/// f32 arithmetic and the GPU tanh (a few ulp) vs f64: 2e-6 absolute + relative, tight
/// enough to catch a wrong constant in the 4th significant digit.
async fn gelu(cx: &Ctx<'_>, rep: &mut KernelReport) {
    let gpu = cx.gpu;
    let mut rng = Rng::new(4);
    let mut sizes = vec![1usize, 3, 1000, 70001];
    if cx.opts.gpt2_sizes {
        sizes.push(512 * 3072); // GPT-2 small's MLP activations at 512 tokens
    }
    for n in sizes {
        let mut x = rng.vec(n, 5.0);
        if n > 3 {
            x[0] = 40.0; // large arguments must not give NaN
            x[1] = -40.0;
        }
        let dout = rng.vec(n, 1.0);
        let acc0 = rng.vec(n, 1.0);
        let mut want_y = vec![0.0; n];
        cpu::elementwise::gelu_forward(&mut want_y, &x);
        let mut want_dx = acc0.clone();
        cpu::elementwise::gelu_backward(&mut want_dx, &x, &dout, true);

        let (gx, gy, gdx) = (gpu.upload_f32(&x), gpu.tensor(n), gpu.upload_f32(&acc0));
        let gdout = gpu.upload_f32(&dout);
        let mut cmd = gpu.commands();
        kernels::elementwise::gelu_forward(&mut cmd, &gy, &gx, n);
        kernels::elementwise::gelu_backward(&mut cmd, &gdx, &gx, &gdout, n, true);
        cmd.submit();
        let got = rep.read(gpu, &gy).await;
        rep.close(&format!("forward n={n}"), &got, &want_y, 2e-6, 2e-6);
        let got = rep.read(gpu, &gdx).await;
        rep.close(&format!("backward n={n}"), &got, &want_dx, 2e-6, 2e-6);
        if n > 1_000_000 {
            let record = |cmd: &mut crate::gpu::Commands| {
                kernels::elementwise::gelu_forward(cmd, &gy, &gx, n);
            };
            if let Some(ms) = cx.time_ms(&record).await {
                add_throughput(rep, (8 * n) as f64 / (ms * 1e6), "GB/s");
            }
        }
    }
}

/// One f32 addition: exact.
async fn add(cx: &Ctx<'_>, rep: &mut KernelReport) {
    let gpu = cx.gpu;
    let mut rng = Rng::new(5);
    for n in [1usize, 17, 5000] {
        let (a, b) = (rng.vec(n, 1.0), rng.vec(n, 1.0));
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let out = gpu.tensor(n);
        let mut cmd = gpu.commands();
        kernels::elementwise::add(&mut cmd, &out, &gpu.upload_f32(&a), &gpu.upload_f32(&b), n);
        cmd.submit();
        let got = rep.read(gpu, &out).await;
        rep.close(&format!("n={n}"), &got, &want, 0.0, 0.0);
    }
}

/// f32 arithmetic and the GPU exp (a few ulp) vs f64, as GELU's: 2e-6 absolute + relative.
async fn swiglu(cx: &Ctx<'_>, rep: &mut KernelReport) {
    let gpu = cx.gpu;
    let mut rng = Rng::new(6);
    let mut sizes = vec![1usize, 3, 1000, 70001];
    if cx.opts.gpt2_sizes {
        sizes.push(512 * 2560); // SmolLM2-360M's MLP activations at 512 tokens
    }
    for n in sizes {
        let mut gate = rng.vec(n, 5.0);
        if n > 3 {
            gate[0] = 100.0; // exp(-x) underflows, and overflows: no NaN
            gate[1] = -100.0;
        }
        let (up, dout) = (rng.vec(n, 1.0), rng.vec(n, 1.0));
        let mut want_y = vec![0.0; n];
        cpu::elementwise::swiglu_forward(&mut want_y, &gate, &up);
        let (mut want_dg, mut want_du) = (vec![0.0; n], vec![0.0; n]);
        cpu::elementwise::swiglu_backward(&mut want_dg, &mut want_du, &gate, &up, &dout);

        let (gg, gu, gd) = (
            gpu.upload_f32(&gate),
            gpu.upload_f32(&up),
            gpu.upload_f32(&dout),
        );
        let (gy, gdg, gdu) = (gpu.tensor(n), gpu.tensor(n), gpu.tensor(n));
        let record = |cmd: &mut crate::gpu::Commands| {
            kernels::elementwise::swiglu_forward(cmd, &gy, &gg, &gu, n);
        };
        let mut cmd = gpu.commands();
        record(&mut cmd);
        kernels::elementwise::swiglu_backward(&mut cmd, &gdg, &gdu, &gg, &gu, &gd, n);
        cmd.submit();
        let got = rep.read(gpu, &gy).await;
        rep.close(&format!("forward n={n}"), &got, &want_y, 2e-6, 2e-6);
        let got = rep.read(gpu, &gdg).await;
        rep.close(&format!("backward dgate n={n}"), &got, &want_dg, 2e-6, 2e-6);
        let got = rep.read(gpu, &gdu).await;
        rep.close(&format!("backward dup n={n}"), &got, &want_du, 2e-6, 2e-6);
        if n > 1_000_000
            && let Some(ms) = cx.time_ms(&record).await
        {
            add_throughput(rep, (12 * n) as f64 / (ms * 1e6), "GB/s");
        }
    }
}

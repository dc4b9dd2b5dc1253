//! The token + position embedding (`kernels::embedding`) against `cpu::embedding`.

use super::{Ctx, KernelReport, Rng};
use crate::kernels::matmul::Weight;
use crate::{cpu, kernels};

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let mut out = Vec::new();
    for f16 in [false, true] {
        let kernel = format!("embedding {} table", if f16 { "f16" } else { "f32" });
        if !cx.wants(&kernel) {
            continue;
        }
        let mut rep = KernelReport::new(kernel);
        forward(cx, &mut rep, f16).await;
        out.push(rep);
    }
    out
}

/// Exact: one f32 addition per element on both sides. The f16 table (wte with NF4 / f16 base
/// weights) is checked against the f32 reference over the same values rounded to f16; odd
/// C and V·C make rows start mid-word and the last word half-used.
async fn forward(cx: &Ctx<'_>, rep: &mut KernelReport, f16: bool) {
    let gpu = cx.gpu;
    let mut rng = Rng::new(1);
    for &(b, t, c, v, p, pos0) in &[
        (2, 5, 17, 50, 8, 0),
        (1, 1, 3, 7, 4, 3),
        (3, 33, 96, 1000, 64, 0),
        (2, 9, 5, 301, 16, 2),
    ] {
        let ids: Vec<u32> = (0..b * t).map(|_| rng.below(v as u64) as u32).collect();
        let wte = rng.vec(v * c, 1.0);
        let wpe = rng.vec(p * c, 1.0);
        let (table, values) = if f16 {
            let h: Vec<half::f16> = wte.iter().map(|&x| half::f16::from_f32(x)).collect();
            (
                Weight::F16(gpu.upload_bytes(bytemuck::cast_slice(&h))),
                cpu::embedding::f16_rounded(&wte),
            )
        } else {
            (Weight::F32(gpu.upload_f32(&wte)), wte.clone())
        };
        // With a position table (GPT-2) and without (Llama: the token rows alone).
        for with_wpe in [true, false] {
            let cpu_wpe = if with_wpe {
                wpe.clone()
            } else {
                vec![0.0; p * c]
            };
            let mut want = vec![0.0; b * t * c];
            cpu::embedding::embedding_forward(&mut want, &ids, &values, &cpu_wpe, b, t, c, pos0);

            let out = gpu.tensor(b * t * c);
            let gpu_wpe = gpu.upload_f32(&wpe);
            let mut cmd = gpu.commands();
            kernels::embedding::embedding_forward(
                &mut cmd,
                &out,
                &gpu.upload_u32(&ids),
                &table,
                with_wpe.then_some(&gpu_wpe),
                v,
                b,
                t,
                c,
                pos0,
            );
            cmd.submit();
            let got = rep.read(gpu, &out).await;
            let name = format!("C={c} V={v} wpe={with_wpe}");
            rep.close(&name, &got, &want, 0.0, 0.0);
        }
    }
}

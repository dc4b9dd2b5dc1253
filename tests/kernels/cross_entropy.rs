use crate::common::{Rng, assert_close, read_f32, reductions};
use crate::gpu_test;
use wgtune::cpu;
use wgtune::data::IGNORE_INDEX;
use wgtune::gpu::Gpu;
use wgtune::kernels::cross_entropy::lm_head_loss;
use wgtune::kernels::matmul::Weight;

gpu_test!(
    lm_head_loss_and_gradient_match_cpu_across_chunkings,
    check_lm_head_loss
);
/// The tied LM head + cross-entropy in vocabulary chunks against full logits on the CPU.
/// Vocabularies 1 (one partial chunk), 50 and 1000 (several chunks, a partial last one) and
/// GPT-2's 50257. The gradient comes from the one-sweep online form (flash-attention style). Losses: logsumexp over V in f32 → 1e-5·(1+|loss|). dx: sums over V of
/// probabilities times wte → 1e-5 abs + 1e-4 rel. The f16 wte (NF4 / f16 base weights) is
/// checked against the same CPU reference over the f16-rounded table, with the same bounds
/// (f32 arithmetic on both sides; odd C makes rows start mid-word, so chunks are 128 there).
async fn check_lm_head_loss(gpu: &Gpu) {
    let mut rng = Rng::new(11);
    for &(rows, c, vocab, chunk, f16) in &[
        (3, 8, 1, 64, false),
        (5, 17, 50, 64, false),
        (7, 12, 1000, 128, false),
        (3, 8, 50257, 4096, false),
        // 8-row blocks and 4-aligned runs: the matmuls' fast path, rescaled over 5 chunks.
        (9, 16, 300, 64, false),
        (5, 17, 1000, 128, true),
        (9, 16, 300, 64, true),
        (3, 8, 1, 64, true),
    ] {
        check_lm_head_case(gpu, &mut rng, rows, c, vocab, chunk, f16).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn check_lm_head_case(
    gpu: &Gpu,
    rng: &mut Rng,
    rows: usize,
    c: usize,
    vocab: usize,
    chunk: usize,
    f16: bool,
) {
    {
        let x = rng.vec(rows * c, 1.0);
        let wte = rng.vec(vocab * c, 1.0);
        let (wte, table) = if f16 {
            let h: Vec<half::f16> = wte.iter().map(|&x| half::f16::from_f32(x)).collect();
            let table = Weight::F16(gpu.upload_bytes(bytemuck::cast_slice(&h)));
            (wgtune::cpu::embedding::f16_rounded(&wte), table)
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

        // Both row reductions; with dx (the online sweep) and without (the stats sweep).
        for reduction in reductions(gpu) {
            for with_dx in [true, false] {
                let loss = gpu.tensor(rows);
                let dx = gpu.upload_f32(&vec![f32::NAN; rows * c]);
                let chunk_buf = gpu.tensor(rows * chunk);
                let state = gpu.tensor(rows * 3);
                let t_words: Vec<u32> = targets.iter().map(|&t| t as u32).collect();
                let mut cmd = gpu.commands();
                lm_head_loss(
                    &mut cmd,
                    &loss,
                    with_dx.then_some(&dx),
                    &chunk_buf,
                    &state,
                    &gpu.upload_f32(&x),
                    &table,
                    &gpu.upload_u32(&t_words),
                    rows,
                    c,
                    vocab,
                    chunk,
                    grad_scale,
                    reduction,
                );
                cmd.submit();
                let name = format!(
                    "{reduction:?} ce rows={rows} C={c} V={vocab} chunk={chunk} dx={with_dx} f16 wte={f16}"
                );
                assert_close(
                    &format!("{name} loss"),
                    &read_f32(gpu, &loss).await,
                    &want_loss,
                    1e-5,
                    1e-5,
                );
                if with_dx {
                    assert_close(
                        &format!("{name} dx"),
                        &read_f32(gpu, &dx).await,
                        &want_dx,
                        1e-5,
                        1e-4,
                    );
                }
            }
        }
    }
}

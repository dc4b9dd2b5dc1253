//! `wgtune bench kernels`: GFLOP/s of the matmul kernels at GPT-2 shapes. Figures, not tests.

use std::time::Instant;

use clap::Subcommand;
use wgtune::gpu::Gpu;
use wgtune::kernels::matmul::{Weight, linear_backward_input, linear_forward};
use wgtune::kernels::nf4::upload_conv1d_nf4;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Matmul and NF4 matmul GFLOP/s at GPT-2 shapes (768×2304, 768×3072, 3072×768, 768×50257).
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

pub fn run(cmd: BenchCommand) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
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
        "adapter: {} ({:?}, {:?}); M = {m} tokens; {iters} timed runs after a warm-up",
        gpu.adapter_info.name, gpu.adapter_info.backend, gpu.adapter_info.device_type
    );
    println!(
        "{:<6} {:>6} {:>6} {:>8} {:>12} {:>12}",
        "format", "in", "out", "pass", "ms", "GFLOP/s"
    );
    for format in formats {
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
                    "{:<6} {:>6} {:>6} {:>8} {:>12.2} {:>12.2}",
                    format,
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

//! The selftest: every GPU kernel, in every variant this device can run, against its CPU
//! reference (`crate::cpu`) on the device itself (`wgtune selftest`, the page's "Check this
//! GPU"). The cases (shapes, random data, tolerances) live here once: the kernel tests
//! (tests/kernels, natively on lavapipe and in headless Chromium) run the same families and
//! assert that every report passed, and the autotuner keeps only candidates that pass
//! [`check_matmul`] / [`check_gemv`].
//!
//! Each family file holds its cases; a case records its comparisons into a [`KernelReport`]
//! (one per kernel variant) instead of asserting. Quick mode ([`Options::gpt2_sizes`] off)
//! runs the odd shapes only (nothing a multiple of a tile); with GPT-2 sizes the families add
//! cases of GPT-2 small's shapes and time them for a throughput figure.

mod attention;
mod cross_entropy;
mod elementwise;
mod embedding;
mod gemv;
mod layernorm;
mod lora;
mod matmul;
mod matmul_f16;
mod matmul_low_rank;
mod nf4;
mod optim;
mod report;
mod rng;
mod rope;

pub use gemv::check_gemv;
pub use matmul::check_matmul;
pub use report::KernelReport;
pub use rng::Rng;

use super::matmul::{Math, Weight};
use crate::gpu::{Commands, Gpu};

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only kernels whose name contains this.
    pub filter: Option<String>,
    /// Add GPT-2-sized cases, timed for throughput (the CLI's default; off with `--quick`).
    pub gpt2_sizes: bool,
    /// A clock in milliseconds (the caller's: the library names no browser API); `None`:
    /// no throughput figures.
    pub now: Option<fn() -> f64>,
}

/// The kernel families, one per file here (and per file of tests/kernels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// The register and tiled matmuls with f32 arithmetic over f32 / f16 / NF4 weights.
    Matmul,
    /// The matmuls with f16 arithmetic (`Math::F16`, needs shader-f16).
    MatmulF16,
    /// The matmuls' and gemv's low-rank epilogue; the LoRA layer as the model runs it.
    MatmulLowRank,
    /// The matrix-vector kernel (C of at most 4 rows).
    Gemv,
    /// NF4 quantization on the GPU.
    Nf4,
    /// LoRA dropout, forward and backward.
    Lora,
    Attention,
    /// RoPE with q/k/v packing (Llama, Qwen2).
    Rope,
    /// The chunked LM head with cross-entropy.
    CrossEntropy,
    /// GELU, SwiGLU and addition.
    Elementwise,
    Embedding,
    /// LayerNorm (GPT-2) and RMSNorm (Llama, Qwen2).
    Layernorm,
    /// Gradient norm, clipping and AdamW.
    Optim,
}

impl Family {
    pub const ALL: [Family; 13] = [
        Family::Matmul,
        Family::MatmulF16,
        Family::MatmulLowRank,
        Family::Gemv,
        Family::Nf4,
        Family::Lora,
        Family::Attention,
        Family::Rope,
        Family::CrossEntropy,
        Family::Elementwise,
        Family::Embedding,
        Family::Layernorm,
        Family::Optim,
    ];
}

/// Every family on `gpu`: one report per kernel variant.
pub async fn run(gpu: &Gpu, opts: &Options) -> Vec<KernelReport> {
    let mut out = Vec::new();
    for f in Family::ALL {
        out.extend(run_family(gpu, f, opts).await);
    }
    out
}

/// One family on `gpu`.
pub async fn run_family(gpu: &Gpu, family: Family, opts: &Options) -> Vec<KernelReport> {
    let cx = Ctx { gpu, opts };
    match family {
        Family::Matmul => matmul::run(&cx).await,
        Family::MatmulF16 => matmul_f16::run(&cx).await,
        Family::MatmulLowRank => matmul_low_rank::run(&cx).await,
        Family::Gemv => gemv::run(&cx).await,
        Family::Nf4 => nf4::run(&cx).await,
        Family::Lora => lora::run(&cx).await,
        Family::Attention => attention::run(&cx).await,
        Family::Rope => rope::run(&cx).await,
        Family::CrossEntropy => cross_entropy::run(&cx).await,
        Family::Elementwise => elementwise::run(&cx).await,
        Family::Embedding => embedding::run(&cx).await,
        Family::Layernorm => layernorm::run(&cx).await,
        Family::Optim => optim::run(&cx).await,
    }
}

/// What a family runs with.
struct Ctx<'a> {
    gpu: &'a Gpu,
    opts: &'a Options,
}

impl Ctx<'_> {
    /// Whether the kernel named so is to run (the filter).
    fn wants(&self, kernel: &str) -> bool {
        self.opts
            .filter
            .as_deref()
            .is_none_or(|f| kernel.contains(f))
    }

    /// Whether this device has shader-f16.
    fn f16(&self) -> bool {
        has_f16(self.gpu)
    }

    /// Milliseconds per run of `record`'s work (best of 2 timed submissions of 3 runs each,
    /// after a warm-up), by the caller's clock; `None` without one.
    async fn time_ms(&self, record: &dyn Fn(&mut Commands)) -> Option<f64> {
        const REPS: usize = 3;
        let now = self.opts.now?;
        let gpu = self.gpu;
        let probe = gpu.zeros(1);
        let mut cmd = gpu.commands();
        record(&mut cmd);
        cmd.submit();
        gpu.read_words(&probe).await.ok()?;
        let mut best = f64::INFINITY;
        for _ in 0..2 {
            let t0 = now();
            let mut cmd = gpu.commands();
            for _ in 0..REPS {
                record(&mut cmd);
            }
            cmd.submit();
            gpu.read_words(&probe).await.ok()?;
            best = best.min((now() - t0) / REPS as f64);
        }
        Some(best.max(1e-6))
    }
}

fn has_f16(gpu: &Gpu) -> bool {
    gpu.features.contains(wgpu::Features::SHADER_F16)
}

/// Why the f16-math variants are skipped here.
const NO_F16: &str = "this adapter lacks shader-f16";

/// Whether kernels the device's tuning picks (`gemm` without a variant) run f32 arithmetic:
/// cases through the device's choice use f32 bounds, so they run only then.
fn device_choice_is_f32(gpu: &Gpu) -> bool {
    use super::autotune::Candidate;
    if Math::of(gpu) == Math::F16 {
        return false;
    }
    let tuned = super::state(gpu).tuned.lock().unwrap();
    !tuned
        .choices
        .values()
        .any(|c| matches!(c.kernel, Candidate::Matmul(v) if v.math() == Math::F16))
}

/// Why cases through the device's choice are skipped here.
const CHOICE_F16: &str = "the device's kernel choice runs f16 arithmetic (checked as such)";

/// The row reductions this device runs, with the suffix of their kernels' names, and why the
/// subgroup one is skipped where it is.
fn reductions(gpu: &Gpu) -> Vec<(super::Reduction, &'static str, Option<&'static str>)> {
    use super::Reduction;
    let why = if cfg!(target_arch = "wasm32") {
        Some("subgroups are native only (wgpu's web backend has none)")
    } else if !gpu.features.contains(wgpu::Features::SUBGROUP) {
        Some("this adapter lacks subgroups")
    } else {
        None
    };
    vec![
        (Reduction::Workgroup, "", None),
        (Reduction::Subgroup, " subgroup", why),
    ]
}

/// A weight's format as named in kernel names.
pub use super::autotune::Format;

/// `w` (row-major storage of B) uploaded as a `format` weight, flat (NF4: `nf4::quantize` of
/// the storage order), with the values the GPU sees.
fn upload_weight(gpu: &Gpu, format: Format, w: &[f32]) -> (Weight, Vec<f32>) {
    match format {
        Format::F32 => (Weight::F32(gpu.upload_f32(w)), w.to_vec()),
        Format::F16 => {
            let h: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
            let back = h.iter().map(|v| v.to_f32()).collect();
            (
                Weight::F16(gpu.upload_bytes(bytemuck::cast_slice(&h))),
                back,
            )
        }
        Format::Nf4 => {
            let q = crate::nf4::quantize(w);
            (super::nf4::upload(gpu, &q), q.dequantize())
        }
    }
}

/// A Conv1D weight `w (K, N)` uploaded as the model stores it in `format` (NF4 as
/// nn.Linear `[out, in]`), with the values the GPU sees as a linear `(N, K)` matrix (B
/// transposed, what the GPT-2-sized references read row by row).
fn upload_conv1d(gpu: &Gpu, format: Format, w: &[f32], k: usize, n: usize) -> (Weight, Vec<f32>) {
    match format {
        Format::Nf4 => {
            let q = crate::nf4::quantize_conv1d(w, k, n);
            let back = transposed(&q.dequantize_conv1d(k, n), k, n);
            (super::nf4::upload(gpu, &q), back)
        }
        f => {
            let (weight, back) = upload_weight(gpu, f, w);
            (weight, transposed(&back, k, n))
        }
    }
}

/// The largest |value|.
fn abs_max(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |x, v| x.max(v.abs()))
}

/// `(rows, cols)` transposed, for references that read B's rows contiguously (fast on the
/// CPU for GPT-2-sized products; the same f64 sums).
fn transposed(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = w[i * cols + j];
        }
    }
    t
}

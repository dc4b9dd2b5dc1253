//! Matrix multiply over f32 activations and f32 / f16 / NF4 weights (`shaders/matmul.wgsl`).
//!
//! [`gemm`] is the general form `C = alpha·op(A)·op(B) + beta·C + bias`, one entry point whose
//! options are [`Gemm`]'s builder methods: [`Gemm::low_rank`] adds a rank-r term
//! `scale · U·Lᵀ` ([`LowRank`]) in the kernels' epilogue (LoRA's up-projection fused into the
//! base layer's matmul), and [`Gemm::variant`] picks the kernel (tests and benchmarks; by
//! default the device's [`Tuning`](super::Tuning) picks). The layer-level helpers
//! [`linear_forward`] (`y = x·W + b`) and [`linear_backward_input`] (`dx (+)= dy·Wᵀ`) know
//! each weight format's storage layout: f32/f16 keep GPT-2's Conv1D `[in,out]`, NF4 keeps
//! bitsandbytes' nn.Linear `[out,in]`.
//!
//! f16 and NF4 weights can also run with f16 arithmetic in the inner loop of either kernel
//! ([`Math::F16`], `shaders/matmul_math_f16.wgsl`) where the device has `shader-f16`: by
//! default where the tuning's `f16_math` is on.

use bytemuck::{Pod, Zeroable};

use super::Shader;
use crate::gpu::{Commands, Tensor};

/// A weight matrix as stored on the GPU.
#[derive(Clone)]
pub enum Weight {
    /// f32, row-major.
    F32(Tensor),
    /// f16, row-major, two values per 32-bit word (element 2j in the low half).
    F16(Tensor),
    /// NF4, bitsandbytes layout: `packed` holds 8 codes per word, `absmax` one f32 per 64 values.
    Nf4 { packed: Tensor, absmax: Tensor },
}

/// Arithmetic of the matmul's inner loop (see `shaders/matmul_math_*.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Math {
    /// f32 products and sums throughout.
    F32,
    /// Each 4×4 block of B (decoded once) and each row's 4 A values, the latter scaled by their
    /// largest magnitude, are multiplied and summed in f16 (4 products), then added to the f32
    /// accumulator. Needs `shader-f16`; f32 weights ignore it (they keep f32 math).
    F16,
}

impl Math {
    /// What [`gemm`] uses on this device: f16 where the tuning's `f16_math` is on.
    pub fn of(gpu: &crate::gpu::Gpu) -> Self {
        if super::tuning(gpu).f16_math {
            Math::F16
        } else {
            Math::F32
        }
    }
}

impl Weight {
    /// The shader of `variant` for this weight format (f32 weights always keep f32 math).
    fn shader(&self, variant: MatmulVariant) -> Shader {
        use MatmulVariant::{Register, Tiled};
        let f16 = variant.math() == Math::F16;
        match (variant, self) {
            (Register(_), Weight::F32(_)) => Shader::MatmulF32,
            (Register(_), Weight::F16(_)) if f16 => Shader::MatmulF16Math16,
            (Register(_), Weight::F16(_)) => Shader::MatmulF16,
            (Register(_), Weight::Nf4 { .. }) if f16 => Shader::MatmulNf4Math16,
            (Register(_), Weight::Nf4 { .. }) => Shader::MatmulNf4,
            (Tiled(..), Weight::F32(_)) => Shader::MatmulTiledF32,
            (Tiled(..), Weight::F16(_)) if f16 => Shader::MatmulTiledF16Math16,
            (Tiled(..), Weight::F16(_)) => Shader::MatmulTiledF16,
            (Tiled(..), Weight::Nf4 { .. }) if f16 => Shader::MatmulTiledNf4Math16,
            (Tiled(..), Weight::Nf4 { .. }) => Shader::MatmulTiledNf4,
        }
    }

    /// Rows `[r0, r0+n)` of a dense (f32 or f16) row-major matrix `width` values wide, e.g. one
    /// vocabulary chunk of wte. To be bound, the slice must start 256-byte aligned: `r0·width`
    /// a multiple of 64 (f32) or 128 (f16). Panics for NF4, which is not sliced by rows.
    pub fn rows(&self, r0: usize, n: usize, width: usize) -> Weight {
        match self {
            Weight::F32(t) => Weight::F32(t.slice(r0 * width, n * width)),
            Weight::F16(t) => {
                assert!(
                    (r0 * width).is_multiple_of(2),
                    "f16 row slice starts mid-word"
                );
                let start = r0 * width / 2;
                let len = (n * width).div_ceil(2).min(t.len() - start);
                Weight::F16(t.slice(start, len))
            }
            Weight::Nf4 { .. } => panic!("Weight::rows: NF4 weights are not sliced by rows"),
        }
    }

    /// The storage of a dense weight and whether it is f16 (for kernels that read a table
    /// directly: the embedding lookup, the LM head's target rows). Panics for NF4.
    pub fn dense(&self) -> (&Tensor, bool) {
        match self {
            Weight::F32(t) => (t, false),
            Weight::F16(t) => (t, true),
            Weight::Nf4 { .. } => panic!("Weight::dense: NF4 weights have no dense storage"),
        }
    }

    /// Whether the matrix is stored as nn.Linear `[out,in]` (NF4) rather than Conv1D `[in,out]`.
    pub fn is_linear_layout(&self) -> bool {
        matches!(self, Weight::Nf4 { .. })
    }

    /// Bytes this weight occupies on the GPU.
    pub fn size_bytes(&self) -> u64 {
        match self {
            Weight::F32(t) | Weight::F16(t) => t.size_bytes(),
            Weight::Nf4 { packed, absmax } => packed.size_bytes() + absmax.size_bytes(),
        }
    }
}

/// Shape, scalars and options of one [`gemm`] call.
#[derive(Clone, Copy)]
pub struct Gemm<'t> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored `[K,M]` instead of `[M,K]`.
    pub trans_a: bool,
    /// B is stored `[N,K]` instead of `[K,N]`.
    pub trans_b: bool,
    pub alpha: f32,
    /// 0 overwrites C (never reading it), 1 accumulates.
    pub beta: f32,
    /// Row stride of C, when C is a column block of a wider matrix (default N).
    pub ldc: Option<usize>,
    /// A rank-r term added in the epilogue (see [`Self::low_rank`]).
    pub low_rank: Option<LowRank<'t>>,
    /// The kernel to run; `None`: the device's tuning picks (see [`gemm`]).
    pub variant: Option<MatmulVariant>,
}

impl<'t> Gemm<'t> {
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Self {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
            ldc: None,
            low_rank: None,
            variant: None,
        }
    }
    /// Add `scale · U·Lᵀ` in the epilogue, after alpha has scaled the product.
    pub fn low_rank(self, lr: LowRank<'t>) -> Self {
        Self {
            low_rank: Some(lr),
            ..self
        }
    }
    /// Run this kernel rather than the one the device's tuning picks (tests and benchmarks
    /// check every variant in one process). `Math::F16` needs the device's `shader-f16`.
    pub fn variant(self, v: MatmulVariant) -> Self {
        Self {
            variant: Some(v),
            ..self
        }
    }
    /// Write C with row stride `ldc` (e.g. one vocabulary chunk of full-width logits).
    pub fn ldc(self, ldc: usize) -> Self {
        Self {
            ldc: Some(ldc),
            ..self
        }
    }
    pub fn trans_a(self, t: bool) -> Self {
        Self { trans_a: t, ..self }
    }
    pub fn trans_b(self, t: bool) -> Self {
        Self { trans_b: t, ..self }
    }
    pub fn alpha(self, alpha: f32) -> Self {
        Self { alpha, ..self }
    }
    pub fn accumulate(self, yes: bool) -> Self {
        Self {
            beta: if yes { 1.0 } else { 0.0 },
            ..self
        }
    }
}

/// A rank-r term that the matmul adds in its epilogue, `C += scale · U·Lᵀ` after alpha has
/// scaled op(A)·op(B) (beta and bias apply as usual): LoRA's `scale · u · Bᵀ` with `u = h·Aᵀ`,
/// so that the up-projection needs neither a dispatch nor a pass over C of its own.
#[derive(Clone, Copy)]
pub struct LowRank<'t> {
    /// (M, rank), row-major.
    pub u: &'t Tensor,
    /// (N, rank), row-major: LoRA's B (out, r), e.g. a slice of the flat parameter buffer.
    pub l: &'t Tensor,
    pub rank: usize,
    pub scale: f32,
}

impl LowRank<'_> {
    /// Check that U and L hold the words `g` needs (internal callers size them: a failure is a
    /// wgtune bug, hence a panic naming the kernel).
    fn check(&self, kernel: &str, g: &Gemm) {
        assert!(
            self.u.len() >= g.m * self.rank && self.l.len() >= g.n * self.rank,
            "{kernel}: low-rank U has {} words, L {}, need {}x{r} and {}x{r}",
            self.u.len(),
            self.l.len(),
            g.m,
            g.n,
            r = self.rank
        );
    }
}

/// The uniform of every matmul kernel (matmul_common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    alpha: f32,
    beta: f32,
    ldc: u32,
    vec_ok: u32,
    /// Rank of the low-rank epilogue (0 without one) and its scale.
    rank: u32,
    lr_scale: f32,
}

/// Outputs per workgroup: 8×8 invocations of 8 rows × 4 columns each.
const TILE_M: usize = 64;
const TILE_N: usize = 32;

/// Whether every run of 4 consecutive elements that the shader's fast path loads starts at a
/// multiple of 4 within its tensor: A's runs go along K (or M when transposed), B's along N
/// (or K when transposed). NF4 needs this so that a run is one half-word in one 64-block.
fn runs_of_4_aligned(g: &Gemm) -> bool {
    let (a_ok, b_ok) = runs_aligned(g);
    a_ok && b_ok
}

/// [`runs_of_4_aligned`] for A and B separately (the tiled kernel loads each on its own).
fn runs_aligned(g: &Gemm) -> (bool, bool) {
    let a_run = if g.trans_a { g.m } else { g.k };
    let b_run = if g.trans_b { g.k } else { g.n };
    (a_run.is_multiple_of(4), b_run.is_multiple_of(4))
}

/// Check that C and A hold the words `g` needs; returns C's row stride. Internal callers
/// size these buffers themselves, so a failure is a wgtune bug: a panic naming the kernel.
pub(super) fn check_operands(kernel: &str, c: &Tensor, a: &Tensor, g: &Gemm) -> usize {
    let ldc = g.ldc.unwrap_or(g.n);
    assert!(ldc >= g.n, "{kernel}: ldc {ldc} < n {}", g.n);
    assert!(
        g.m == 0 || c.len() >= (g.m - 1) * ldc + g.n,
        "{kernel}: C has {} words, needs {}x{} with row stride {ldc}",
        c.len(),
        g.m,
        g.n
    );
    assert!(
        a.len() >= g.m * g.k,
        "{kernel}: A has {} < {}x{}",
        a.len(),
        g.m,
        g.k
    );
    ldc
}

/// Which matmul kernel a [`gemm`] call runs (all compute the same thing; see [`Gemm::variant`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// `matmul.wgsl`: 8×4 register blocks, no workgroup memory (suits CPU adapters), with the
    /// given inner-loop arithmetic.
    Register(Math),
    /// `matmul_tiled.wgsl`: tiles staged in workgroup memory (suits real GPUs), with the
    /// given inner-loop arithmetic and tile shape.
    Tiled(Math, Tile),
}

/// The tiled kernel's workgroup shape, `wg_x × wg_y` invocations of 4×4 outputs each: a tile
/// of C of `4·wg_y` rows × `4·wg_x` columns (override constants WG_X, WG_Y).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    pub wg_x: u32,
    pub wg_y: u32,
}

impl Tile {
    /// 16×16 invocations, a 64×64 tile: the textbook shape, and what runs untuned.
    pub const DEFAULT: Tile = Tile { wg_x: 16, wg_y: 16 };
    /// The shapes the autotuner times: 256 invocations (8 subgroups of 32 or 4 of 64) as
    /// 64×64, 32×128 and 128×32 tiles, and 64 invocations (2 subgroups of 32, 1 of 64) as a
    /// 32×32 tile, for small products.
    pub const CANDIDATES: [Tile; 4] = [
        Tile::DEFAULT,
        Tile { wg_x: 32, wg_y: 8 },
        Tile { wg_x: 8, wg_y: 32 },
        Tile { wg_x: 8, wg_y: 8 },
    ];

    /// Rows and columns of C one workgroup covers.
    pub fn rows(self) -> usize {
        4 * self.wg_y as usize
    }
    pub fn cols(self) -> usize {
        4 * self.wg_x as usize
    }

    /// Whether `gpu` can run this shape: invocations and workgroup memory within its limits.
    pub fn fits(self, gpu: &crate::gpu::Gpu) -> bool {
        let l = &gpu.limits;
        let bytes = 16 * 16 * (self.wg_x + self.wg_y); // BK · (TM + TN) · 4 B
        self.wg_x * self.wg_y <= l.max_compute_invocations_per_workgroup
            && self.wg_x <= l.max_compute_workgroup_size_x
            && self.wg_y <= l.max_compute_workgroup_size_y
            && bytes <= l.max_compute_workgroup_storage_size
    }
}

impl std::fmt::Display for Tile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.rows(), self.cols())
    }
}

impl MatmulVariant {
    /// The register kernel with f32 arithmetic.
    pub const REGISTER: Self = MatmulVariant::Register(Math::F32);
    /// The tiled kernel with f32 arithmetic and the default 64×64 tile.
    pub const TILED: Self = MatmulVariant::Tiled(Math::F32, Tile::DEFAULT);

    pub fn math(self) -> Math {
        match self {
            MatmulVariant::Register(m) | MatmulVariant::Tiled(m, _) => m,
        }
    }
}

impl std::fmt::Display for MatmulVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let math = |m: Math| {
            if m == Math::F16 {
                "f16-math"
            } else {
                "f32-math"
            }
        };
        match self {
            MatmulVariant::Register(m) => write!(f, "register {}", math(*m)),
            MatmulVariant::Tiled(m, t) => write!(f, "tiled {t} {}", math(*m)),
        }
    }
}

/// Below this many rows or columns of C, `gemm` keeps the register kernel even where the tiled
/// one is in force: a 64×64 tile would be mostly zeros (decoding one token has M = 1; LoRA's
/// rank-r products have N = r). In one lavapipe run, decode at M = 1 was 8× slower tiled.
const TILED_MIN_SIDE: usize = 32;

/// The kernel the device's [`Tuning`](super::Tuning) picks for an untuned product: gemv for C
/// of at most 4 rows (decoding), tiled 64×64 (`tiled_matmul`, for C at least 32×32), else the
/// register kernel; either of the last two with f16 arithmetic where `f16_math` is on.
fn default_kernel(gpu: &crate::gpu::Gpu, g: &Gemm) -> super::autotune::Candidate {
    use super::autotune::Candidate;
    let tuning = super::tuning(gpu);
    if g.m <= super::gemv::GEMV_MAX_ROWS && tuning.gemv {
        return Candidate::Gemv;
    }
    let math = Math::of(gpu);
    if tuning.tiled_matmul && g.m.min(g.n) >= TILED_MIN_SIDE {
        Candidate::Matmul(MatmulVariant::Tiled(math, Tile::DEFAULT))
    } else {
        Candidate::Matmul(MatmulVariant::Register(math))
    }
}

/// `C[M,N] = alpha·op(A)·op(B) + beta·C + bias[N]` (+ `scale·U·Lᵀ` with [`Gemm::low_rank`]).
/// The kernel is `g.variant`, or else the autotuner's choice for the product's shape class
/// (`autotune`), or else [`default_kernel`].
pub fn gemm(
    cmd: &mut Commands,
    c: &Tensor,
    a: &Tensor,
    b: &Weight,
    bias: Option<&Tensor>,
    g: Gemm,
) {
    use super::autotune::{Candidate, choice};
    let kernel = match g.variant {
        Some(v) => Candidate::Matmul(v),
        None => choice(cmd.gpu(), &g, b).unwrap_or_else(|| default_kernel(cmd.gpu(), &g)),
    };
    let variant = match kernel {
        // Decoding (M = 1): a matrix-vector kernel that splits K across a workgroup.
        Candidate::Gemv => return super::gemv::gemv(cmd, c, a, b, bias, g),
        Candidate::Matmul(v) => v,
    };
    let ldc = check_operands("gemm", c, a, &g);
    let gpu = cmd.gpu();
    assert!(
        variant.math() == Math::F32 || gpu.features.contains(wgpu::Features::SHADER_F16),
        "gemm: f16 math needs the shader-f16 feature"
    );
    let lr = g.low_rank.is_some();
    let (entry, vec_ok, tile, wg) = match variant {
        MatmulVariant::Register(_) => (
            if lr { "matmul_low_rank" } else { "matmul" },
            runs_of_4_aligned(&g) as u32,
            (TILE_M, TILE_N),
            None,
        ),
        MatmulVariant::Tiled(_, t) => {
            let (a_ok, b_ok) = runs_aligned(&g);
            (
                if lr {
                    "matmul_tiled_low_rank"
                } else {
                    "matmul_tiled"
                },
                a_ok as u32 | (b_ok as u32) << 1,
                (t.rows(), t.cols()),
                Some(t),
            )
        }
    };
    let groups = [g.n.div_ceil(tile.1) as u32, g.m.div_ceil(tile.0) as u32, 1];
    let kernel = (b.shader(variant), entry);
    dispatch(cmd, kernel, c, a, b, bias, &g, ldc, vec_ok, groups, wg);
}

/// Record `entry` of `shader`, one of the kernels over matmul_common.wgsl's Params and
/// bindings (C, A, B in its format, bias, and U, L of `g.low_rank` for a `*_low_rank` entry
/// point), with B's alignment flags `vec_ok` and, for the tiled kernel, its tile shape.
pub(super) fn dispatch(
    cmd: &mut Commands,
    (shader, entry): (Shader, &'static str),
    c: &Tensor,
    a: &Tensor,
    b: &Weight,
    bias: Option<&Tensor>,
    g: &Gemm,
    ldc: usize,
    vec_ok: u32,
    groups: [u32; 3],
    tile: Option<Tile>,
) {
    let gpu = cmd.gpu();
    let low_rank = g.low_rank.as_ref();
    let trans = [
        ("TRANS_A", g.trans_a as u32 as f64),
        ("TRANS_B", g.trans_b as u32 as f64),
    ];
    let pipeline = match tile {
        None => shader.pipeline(gpu, entry, &trans),
        Some(t) => {
            assert!(
                t.fits(gpu),
                "gemm: tile {t} exceeds this device's workgroup limits"
            );
            let wg = [("WG_X", t.wg_x as f64), ("WG_Y", t.wg_y as f64)];
            shader.pipeline(gpu, entry, &[trans[0], trans[1], wg[0], wg[1]])
        }
    };
    let params = Params {
        m: g.m as u32,
        n: g.n as u32,
        k: g.k as u32,
        has_bias: bias.is_some() as u32,
        alpha: g.alpha,
        beta: g.beta,
        ldc: ldc as u32,
        vec_ok,
        rank: low_rank.map_or(0, |lr| lr.rank as u32),
        lr_scale: low_rank.map_or(0.0, |lr| lr.scale),
    };
    let bias = bias.unwrap_or(gpu.dummy());
    let mut bound: Vec<(u32, &Tensor)> = vec![(1, c), (2, a), (4, bias)];
    match b {
        Weight::F32(w) | Weight::F16(w) => bound.push((3, w)),
        Weight::Nf4 { packed, absmax } => bound.extend([(3, packed), (5, absmax)]),
    }
    if let Some(lr) = low_rank {
        assert!(
            entry.ends_with("_low_rank"),
            "{entry}: a low-rank term needs a *_low_rank entry point"
        );
        lr.check(entry, g);
        bound.extend([(6, lr.u), (7, lr.l)]);
    }
    cmd.dispatch_bound(&pipeline, &params, &bound, groups);
}

/// `y (M,N) = x (M,K) · W + bias`, for a GPT-2 Conv1D weight `W` with `K` inputs, `N` outputs.
pub fn linear_forward(
    cmd: &mut Commands,
    y: &Tensor,
    x: &Tensor,
    w: &Weight,
    bias: Option<&Tensor>,
    m: usize,
    k_in: usize,
    n_out: usize,
    accumulate: bool,
) {
    let g = Gemm::new(m, n_out, k_in)
        .trans_b(w.is_linear_layout())
        .accumulate(accumulate);
    gemm(cmd, y, x, w, bias, g);
}

/// `dx (M,K) (+)= dy (M,N) · Wᵀ`: the input gradient of [`linear_forward`].
pub fn linear_backward_input(
    cmd: &mut Commands,
    dx: &Tensor,
    dy: &Tensor,
    w: &Weight,
    m: usize,
    k_in: usize,
    n_out: usize,
    accumulate: bool,
) {
    let g = Gemm::new(m, k_in, n_out)
        .trans_b(!w.is_linear_layout())
        .accumulate(accumulate);
    gemm(cmd, dx, dy, w, None, g);
}

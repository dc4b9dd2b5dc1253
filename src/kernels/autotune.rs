//! Kernel autotuning: on first use of a matmul shape class, time the kernels that can run it
//! on this device, keep the fastest one that passes the selftest's check, and remember the
//! choice per adapter and driver (CubeCL / Burn do the same).
//!
//! [`gemm`](super::matmul::gemm) asks [`choice`] for its shape's class. An untuned class runs
//! the default heuristic (`Tuning`) and is noted as pending; [`tune_pending`] times the
//! candidates of every pending class. The training job calls it before its first step, after
//! recording (not submitting) a step of its largest batch; `wgtune bench` after its warm-up
//! step (the selftest's odd shapes are not tuned: `forget_pending`). The candidates:
//! - the register kernel, the tiled kernel in each [`Tile`] shape that fits the device, and
//!   the matrix-vector kernel for products of at most 4 rows;
//! - each with f16 arithmetic too, for f16 / NF4 weights where the device has `shader-f16`.
//!
//! Timing uses timestamp queries where the adapter has them, else the clock around a submit
//! and read-back. The choices are cached as JSON ([`Tuned::to_json`]): natively in a file in
//! the user's cache directory (`WGTUNE_CACHE_DIR` to move it), loaded when the device opens;
//! in the page in browser storage, which the page reads and writes (`src/web/store.rs`).
//! `WGTUNE_KERNELS` forces the variants and turns tuning off. Natively, on CPU adapters (lavapipe) tuning is off unless `WGTUNE_AUTOTUNE=1`:
//! their best kernel is known (register) and timing every candidate there takes minutes.

use std::collections::BTreeMap;
use std::fmt;

use super::matmul::{Gemm, Math, MatmulVariant, Tile, Weight};
use crate::gpu::{Commands, Gpu, GpuError, Tensor};

/// How a weight is stored, as far as the kernel choice goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    F32,
    F16,
    Nf4,
}

impl Format {
    pub fn of(w: &Weight) -> Self {
        match w {
            Weight::F32(_) => Format::F32,
            Weight::F16(_) => Format::F16,
            Weight::Nf4 { .. } => Format::Nf4,
        }
    }
    /// "f32", "f16" or "nf4".
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::Nf4 => "nf4",
        }
    }
}

/// Products that one kernel choice serves: the weight format, the transposes, whether a
/// low-rank epilogue is fused, N and K rounded up to powers of two, and M exactly up to 4
/// (decoding, where the matrix-vector kernel competes), else one class for all M ≥ 5 (timed
/// at the largest batch: the training job meets its shapes at their largest before its first
/// step, so that every step of a run, and of its resumption, runs the same kernels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShapeClass {
    pub format: Format,
    pub trans_a: bool,
    pub trans_b: bool,
    pub low_rank: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl ShapeClass {
    pub fn of(g: &Gemm, w: &Weight) -> Self {
        let up = |x: usize| x.max(1).next_power_of_two();
        Self {
            format: Format::of(w),
            trans_a: g.trans_a,
            trans_b: g.trans_b,
            low_rank: g.low_rank.is_some(),
            m: g.m.min(ROWS_CLASS),
            n: up(g.n),
            k: up(g.k),
        }
    }
}

/// The one M class of products of more than [`GEMV_MAX_ROWS`](super::gemv::GEMV_MAX_ROWS) rows.
const ROWS_CLASS: usize = super::gemv::GEMV_MAX_ROWS + 1;

impl fmt::Display for ShapeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} m{}{} n{} k{}{}{}{}",
            self.format.name(),
            self.m,
            if self.m == ROWS_CLASS { "+" } else { "" },
            self.n,
            self.k,
            if self.trans_a { " ta" } else { "" },
            if self.trans_b { " tb" } else { "" },
            if self.low_rank { " lr" } else { "" }
        )
    }
}

impl std::str::FromStr for ShapeClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("not a shape class: {s:?}");
        let mut it = s.split_whitespace();
        let format = match it.next() {
            Some("f32") => Format::F32,
            Some("f16") => Format::F16,
            Some("nf4") => Format::Nf4,
            _ => return Err(bad()),
        };
        let mut dim = |p: char| {
            it.next()
                .and_then(|t| t.strip_prefix(p))
                .and_then(|v| v.strip_suffix('+').unwrap_or(v).parse().ok())
                .ok_or_else(bad)
        };
        let (m, n, k) = (dim('m')?, dim('n')?, dim('k')?);
        let mut c = ShapeClass {
            format,
            trans_a: false,
            trans_b: false,
            low_rank: false,
            m,
            n,
            k,
        };
        for flag in it {
            match flag {
                "ta" => c.trans_a = true,
                "tb" => c.trans_b = true,
                "lr" => c.low_rank = true,
                _ => return Err(bad()),
            }
        }
        Ok(c)
    }
}

/// A kernel that can compute a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Candidate {
    /// `gemv.wgsl` (at most 4 rows).
    Gemv,
    Matmul(MatmulVariant),
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Candidate::Gemv => write!(f, "gemv"),
            Candidate::Matmul(v) => write!(f, "{v}"),
        }
    }
}

impl std::str::FromStr for Candidate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("not a kernel: {s:?}");
        let words: Vec<&str> = s.split_whitespace().collect();
        let math = |w: &str| match w {
            "f32-math" => Ok(Math::F32),
            "f16-math" => Ok(Math::F16),
            _ => Err(bad()),
        };
        match words[..] {
            ["gemv"] => Ok(Candidate::Gemv),
            ["register", m] => Ok(Candidate::Matmul(MatmulVariant::Register(math(m)?))),
            ["tiled", tile, m] => {
                let (rows, cols) = tile.split_once('x').ok_or_else(bad)?;
                let (rows, cols): (u32, u32) = (
                    rows.parse().map_err(|_| bad())?,
                    cols.parse().map_err(|_| bad())?,
                );
                if rows % 4 != 0 || cols % 4 != 0 || rows == 0 || cols == 0 {
                    return Err(bad());
                }
                let t = Tile {
                    wg_x: cols / 4,
                    wg_y: rows / 4,
                };
                Ok(Candidate::Matmul(MatmulVariant::Tiled(math(m)?, t)))
            }
            _ => Err(bad()),
        }
    }
}

/// One timed candidate of a class.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub kernel: Candidate,
    /// Milliseconds per product at the class's first shape; `None`: it failed its check.
    pub ms: Option<f64>,
}

/// What the tuner chose for a class, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub kernel: Candidate,
    /// The shape that was timed (the class's first product).
    pub shape: (usize, usize, usize),
    pub timings: Vec<Timing>,
    /// Read from the cache rather than timed in this process.
    pub cached: bool,
}

/// The tuner's state on one device: the choices, the classes met but not tuned yet, and
/// which kernels passed their check.
#[derive(Default)]
pub struct Tuned {
    pub choices: BTreeMap<ShapeClass, Choice>,
    /// First product of each untuned class: (m, n, k, low-rank rank).
    pending: BTreeMap<ShapeClass, (usize, usize, usize, usize)>,
    /// Kernels checked against the CPU reference, per class configuration (the class with
    /// its dimensions zeroed): the pipeline that is timed is the one that was checked.
    checked: Vec<((Candidate, ShapeClass), bool)>,
    /// Tuning on: off where `WGTUNE_KERNELS` forces the variants, and by default on CPU
    /// adapters (see the module doc).
    pub enabled: bool,
}

/// The cache's format version: a change of the kernels or of this format starts afresh.
const CACHE_VERSION: u32 = 1;

impl Tuned {
    pub(super) fn for_device(gpu: &Gpu, forced: bool) -> Self {
        // In the page: on (whatever the adapter: SwiftShader is what CI's browser has), the
        // cache kept in browser storage by the page itself (`load_json` / `to_json`).
        #[cfg(target_arch = "wasm32")]
        {
            let _ = gpu;
            Tuned {
                enabled: !forced,
                ..Default::default()
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let cpu = gpu.adapter_info.device_type == wgpu::DeviceType::Cpu;
            let asked = std::env::var("WGTUNE_AUTOTUNE").is_ok_and(|v| v.trim() == "1");
            let mut t = Tuned {
                enabled: !forced && (!cpu || asked),
                ..Default::default()
            };
            if t.enabled
                && let Some(path) = cache_path(gpu)
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                match t.load_json(gpu, &text) {
                    Ok(n) => log::info!("{n} kernel choices from {}", path.display()),
                    Err(e) => log::warn!("ignoring the kernel cache {}: {e}", path.display()),
                }
            }
            t
        }
    }

    /// The cache key: adapter, driver, backend, wgtune's version and its matmul shaders.
    pub fn cache_key(gpu: &Gpu) -> String {
        let i = &gpu.adapter_info;
        format!(
            "{} | {:04x}:{:04x} | {} {} | {:?} | wgtune {} | kernels {:016x}",
            i.name,
            i.vendor,
            i.device,
            i.driver,
            i.driver_info,
            i.backend,
            env!("CARGO_PKG_VERSION"),
            super::shaders::matmul_source_hash()
        )
    }

    /// The choices as JSON, with the cache key they hold for.
    pub fn to_json(&self, gpu: &Gpu) -> String {
        let choices: Vec<serde_json::Value> = self
            .choices
            .iter()
            .map(|(class, c)| {
                let timings: Vec<serde_json::Value> = c
                    .timings
                    .iter()
                    .map(|t| serde_json::json!({"kernel": t.kernel.to_string(), "ms": t.ms}))
                    .collect();
                serde_json::json!({
                    "class": class.to_string(), "kernel": c.kernel.to_string(),
                    "shape": [c.shape.0, c.shape.1, c.shape.2], "timings": timings,
                })
            })
            .collect();
        serde_json::json!({
            "version": CACHE_VERSION, "key": Self::cache_key(gpu), "choices": choices,
        })
        .to_string()
    }

    /// Take the choices of a cache written by [`Self::to_json`] for this device; returns how
    /// many. A cache of another adapter, driver or kernel version is refused.
    pub fn load_json(&mut self, gpu: &Gpu, text: &str) -> Result<usize, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if v["version"] != CACHE_VERSION || v["key"] != Self::cache_key(gpu).as_str() {
            return Err("written for another adapter, driver or wgtune version".into());
        }
        let text_of = |x: &serde_json::Value| x.as_str().map(str::to_string);
        let mut n = 0;
        for c in v["choices"].as_array().ok_or("no choices")? {
            let class: ShapeClass = text_of(&c["class"]).ok_or("no class")?.parse()?;
            let kernel: Candidate = text_of(&c["kernel"]).ok_or("no kernel")?.parse()?;
            if !runnable(gpu, &class, kernel) {
                return Err(format!("{kernel} cannot run {class} here"));
            }
            let dims: Vec<usize> = c["shape"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_u64())
                        .map(|d| d as usize)
                        .collect()
                })
                .unwrap_or_default();
            let [m, nn, k] = dims[..] else {
                return Err("bad shape".into());
            };
            let mut timings = Vec::new();
            for t in c["timings"].as_array().into_iter().flatten() {
                timings.push(Timing {
                    kernel: text_of(&t["kernel"]).ok_or("no kernel")?.parse()?,
                    ms: t["ms"].as_f64(),
                });
            }
            self.pending.remove(&class);
            self.choices.insert(
                class,
                Choice {
                    kernel,
                    shape: (m, nn, k),
                    timings,
                    cached: true,
                },
            );
            n += 1;
        }
        Ok(n)
    }

    /// One line on the choices in use, e.g. for `wgtune info` and the page's GPU line.
    pub fn summary(&self) -> String {
        if !self.enabled {
            return "autotuning off".into();
        }
        if self.choices.is_empty() {
            return "autotuning on, nothing tuned yet".into();
        }
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for c in self.choices.values() {
            *count.entry(c.kernel.to_string()).or_default() += 1;
        }
        let cached = self.choices.values().filter(|c| c.cached).count();
        let parts: Vec<String> = count.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        format!(
            "tuned {} shape classes ({cached} from the cache): {}",
            self.choices.len(),
            parts.join(", ")
        )
    }
}

/// Whether the autotuner is on for `gpu` (see the module doc).
pub fn enabled(gpu: &Gpu) -> bool {
    super::tuning::state(gpu).tuned.lock().unwrap().enabled
}

/// The kernel tuned for this product's class, or `None` (the caller's heuristic decides) when
/// the class is not tuned yet — it is then noted for [`tune_pending`] — or tuning is off.
pub fn choice(gpu: &Gpu, g: &Gemm, w: &Weight) -> Option<Candidate> {
    let state = super::tuning::state(gpu);
    let mut t = state.tuned.lock().unwrap();
    if !t.enabled {
        return None;
    }
    let class = ShapeClass::of(g, w);
    if let Some(c) = t.choices.get(&class) {
        return Some(c.kernel);
    }
    let rank = g.low_rank.map_or(0, |lr| lr.rank);
    t.pending.entry(class).or_insert((g.m, g.n, g.k, rank));
    None
}

/// The kernels that can run products of `class` on `gpu`.
pub fn candidates(gpu: &Gpu, class: &ShapeClass) -> Vec<Candidate> {
    let mut maths = vec![Math::F32];
    if class.format != Format::F32 && gpu.features.contains(wgpu::Features::SHADER_F16) {
        maths.push(Math::F16);
    }
    let mut v = Vec::new();
    if class.m <= super::gemv::GEMV_MAX_ROWS {
        v.push(Candidate::Gemv);
    }
    for &math in &maths {
        v.push(Candidate::Matmul(MatmulVariant::Register(math)));
        for tile in Tile::CANDIDATES {
            if tile.fits(gpu) {
                v.push(Candidate::Matmul(MatmulVariant::Tiled(math, tile)));
            }
        }
    }
    v
}

fn runnable(gpu: &Gpu, class: &ShapeClass, kernel: Candidate) -> bool {
    candidates(gpu, class).contains(&kernel)
}

/// A clock in milliseconds (the caller's: the library names no browser API).
pub type Clock<'c> = &'c dyn Fn() -> f64;

/// Forget the classes noted as pending without tuning them: the selftest's odd shapes are no
/// shapes a run meets, and timing them would only delay the next run's tuning.
pub fn forget_pending(gpu: &Gpu) {
    super::tuning::state(gpu)
        .tuned
        .lock()
        .unwrap()
        .pending
        .clear();
}

/// What [`tune_pending`] did.
#[derive(Debug, Default)]
pub struct TuneReport {
    /// Classes timed now, with their choice.
    pub tuned: Vec<(ShapeClass, Choice)>,
    /// How the candidates were timed.
    pub timer: &'static str,
}

/// Time the candidates of every pending class and keep the fastest that passes its check;
/// natively, write the cache file after. `clock` times submit + read-back where the adapter
/// has no timestamp queries.
pub async fn tune_pending(gpu: &Gpu, clock: Clock<'_>) -> Result<TuneReport, GpuError> {
    let state = super::tuning::state(gpu);
    let pending: Vec<_> = {
        let mut t = state.tuned.lock().unwrap();
        if !t.enabled {
            return Ok(TuneReport::default());
        }
        std::mem::take(&mut t.pending).into_iter().collect()
    };
    let timer = if gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        "timestamp queries"
    } else {
        "submit and read-back"
    };
    let mut report = TuneReport {
        timer,
        ..Default::default()
    };
    for (class, (m, n, k, rank)) in pending {
        let operands = Operands::new(gpu, &class, (m, n, k), rank);
        let mut timings = Vec::new();
        for kernel in candidates(gpu, &class) {
            let ms = if passes_check(gpu, kernel, &class).await {
                Some(time_ms(gpu, clock, &operands, kernel).await?)
            } else {
                None
            };
            timings.push(Timing { kernel, ms });
        }
        let best = timings
            .iter()
            .filter_map(|t| t.ms.map(|ms| (ms, t.kernel)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let Some((_, kernel)) = best else {
            log::warn!("no kernel passed its check for {class}: keeping the default");
            continue;
        };
        let choice = Choice {
            kernel,
            shape: (m, n, k),
            timings,
            cached: false,
        };
        state
            .tuned
            .lock()
            .unwrap()
            .choices
            .insert(class, choice.clone());
        report.tuned.push((class, choice));
    }
    #[cfg(not(target_arch = "wasm32"))]
    if !report.tuned.is_empty()
        && let Some(path) = cache_path(gpu)
    {
        let json = state.tuned.lock().unwrap().to_json(gpu);
        if let Err(e) = write_atomically(&path, &json) {
            log::warn!("could not write the kernel cache {}: {e}", path.display());
        }
    }
    Ok(report)
}

/// Whether `kernel` computes what the CPU reference does, in the configuration of `class`
/// (weight format, transposes, low-rank epilogue), on this device (checked once).
async fn passes_check(gpu: &Gpu, kernel: Candidate, class: &ShapeClass) -> bool {
    let config = ShapeClass {
        m: 0,
        n: 0,
        k: 0,
        ..*class
    };
    let state = super::tuning::state(gpu);
    if let Some(&(_, ok)) = state
        .tuned
        .lock()
        .unwrap()
        .checked
        .iter()
        .find(|(c, _)| *c == (kernel, config))
    {
        return ok;
    }
    let ok = check_candidate(gpu, kernel, &config).await;
    if !ok {
        log::warn!("{kernel} failed its selftest check on this device: not a candidate");
    }
    state
        .tuned
        .lock()
        .unwrap()
        .checked
        .push(((kernel, config), ok));
    ok
}

/// Whether `kernel` computes what the CPU reference does on this device in `config`'s weight
/// format, transposes and epilogue: the selftest's own check ([`super::selftest::check_matmul`],
/// [`super::selftest::check_gemv`]) on its odd shapes, within the kernel tests' bounds (f16
/// arithmetic's for f16-math kernels).
async fn check_candidate(gpu: &Gpu, kernel: Candidate, config: &ShapeClass) -> bool {
    use super::selftest::{check_gemv, check_matmul};
    let (format, ta, tb, lr) = (
        config.format,
        config.trans_a,
        config.trans_b,
        config.low_rank,
    );
    let report = match kernel {
        Candidate::Gemv => check_gemv(gpu, format, ta, tb, lr).await,
        Candidate::Matmul(v) => check_matmul(gpu, v, format, ta, tb, lr).await,
    };
    if !report.passed() {
        log::warn!("{}", report.line());
    }
    report.passed()
}

/// Zero-filled operands of one product (the values do not change the work).
struct Operands {
    c: Tensor,
    a: Tensor,
    b: Weight,
    u: Tensor,
    l: Tensor,
    g: (usize, usize, usize, usize, bool, bool),
}

impl Operands {
    fn new(gpu: &Gpu, class: &ShapeClass, (m, n, k): (usize, usize, usize), rank: usize) -> Self {
        let b = match class.format {
            Format::F32 => Weight::F32(gpu.zeros(k * n)),
            Format::F16 => Weight::F16(gpu.zeros((k * n).div_ceil(2))),
            Format::Nf4 => Weight::Nf4 {
                packed: gpu.zeros((k * n).div_ceil(8)),
                absmax: gpu.zeros((k * n).div_ceil(64)),
            },
        };
        Self {
            c: gpu.zeros(m * n),
            a: gpu.zeros(m * k),
            b,
            u: gpu.zeros((m * rank).max(1)),
            l: gpu.zeros((n * rank).max(1)),
            g: (m, n, k, rank, class.trans_a, class.trans_b),
        }
    }

    fn record(&self, cmd: &mut Commands, kernel: Candidate) {
        let (m, n, k, rank, ta, tb) = self.g;
        let mut g = Gemm::new(m, n, k).trans_a(ta).trans_b(tb);
        if rank > 0 {
            g = g.low_rank(super::matmul::LowRank {
                u: &self.u,
                l: &self.l,
                rank,
                scale: 1.0,
            });
        }
        match kernel {
            Candidate::Gemv => super::gemv::gemv(cmd, &self.c, &self.a, &self.b, None, g),
            Candidate::Matmul(v) => {
                super::matmul::gemm(cmd, &self.c, &self.a, &self.b, None, g.variant(v))
            }
        }
    }
}

/// Products per timed submission, and timed submissions (the fastest counts).
const REPS: usize = 3;
const TRIALS: usize = 2;

/// Milliseconds per product of `kernel` on `ops`, after a warm-up (which compiles it).
async fn time_ms(
    gpu: &Gpu,
    clock: Clock<'_>,
    ops: &Operands,
    kernel: Candidate,
) -> Result<f64, GpuError> {
    let probe = gpu.zeros(1);
    let run = |reps: usize| {
        let mut cmd = gpu.commands();
        for _ in 0..reps {
            ops.record(&mut cmd, kernel);
        }
        cmd
    };
    run(1).submit();
    gpu.read_words(&probe).await?;
    let mut best = f64::INFINITY;
    for _ in 0..TRIALS {
        let ms = if gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            timestamps_ms(gpu, run(REPS)).await?
        } else {
            let t0 = clock();
            run(REPS).submit();
            gpu.read_words(&probe).await?;
            clock() - t0
        };
        best = best.min(ms / REPS as f64);
    }
    Ok(best)
}

/// GPU time of `work` between a timestamp written before it and one after.
async fn timestamps_ms(gpu: &Gpu, work: Commands<'_>) -> Result<f64, GpuError> {
    let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("autotune"),
        ty: wgpu::QueryType::Timestamp,
        count: 2,
    });
    let stamp = |index: u32| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        drop(enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &set,
                beginning_of_pass_write_index: Some(index),
                end_of_pass_write_index: None,
            }),
        }));
        enc
    };
    gpu.queue.submit([stamp(0).finish()]);
    work.submit();
    let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("autotune timestamps"),
        size: 16,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let out = gpu.tensor(4);
    let mut enc = stamp(1);
    enc.resolve_query_set(&set, 0..2, &resolved, 0);
    enc.copy_buffer_to_buffer(&resolved, 0, out.buffer(), out.offset_bytes(), 16);
    gpu.queue.submit([enc.finish()]);
    let w = gpu.read_words(&out).await?;
    let t0 = w[0] as u64 | (w[1] as u64) << 32;
    let t1 = w[2] as u64 | (w[3] as u64) << 32;
    let ns = t1.saturating_sub(t0) as f64 * gpu.queue.get_timestamp_period() as f64;
    Ok(ns / 1e6)
}

/// The cache file of this device: `WGTUNE_CACHE_DIR`, else the user's cache directory, under
/// `wgtune/`, one file per cache key.
#[cfg(not(target_arch = "wasm32"))]
pub fn cache_path(gpu: &Gpu) -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os("WGTUNE_CACHE_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => dirs::cache_dir()?.join("wgtune"),
    };
    let key = Tuned::cache_key(gpu);
    let hash = key.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    Some(dir.join(format!("kernels-{hash:016x}.json")))
}

/// Write `text` to `path` through a temporary file and a rename (no torn cache).
#[cfg(not(target_arch = "wasm32"))]
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_kernels_read_back_as_written() {
        for s in [
            "nf4 m5+ n4096 k1024 tb lr",
            "f32 m1 n64 k8",
            "f16 m3 n2 k2 ta",
        ] {
            assert_eq!(s.parse::<ShapeClass>().unwrap().to_string(), s);
        }
        for s in [
            "gemv",
            "register f32-math",
            "tiled 64x64 f16-math",
            "tiled 32x128 f32-math",
        ] {
            assert_eq!(s.parse::<Candidate>().unwrap().to_string(), s);
        }
        assert!("tiled 63x64 f32-math".parse::<Candidate>().is_err());
        assert!("nf4 m512".parse::<ShapeClass>().is_err());
    }
}

//! NF4 4-bit quantization of base weights, bitsandbytes-compatible (QLoRA).
//!
//! Layout (what transformers + bitsandbytes produce for GPT-2): the Conv1D weight `[in,out]`
//! is transposed to nn.Linear `[out,in]` and flattened, so a block of 64 runs along `in`
//! (and straddles rows when `in` is not a multiple of 64); one f32 absmax per block; each
//! value/absmax maps to the nearest NF4 code; two codes per byte, first element in the high
//! nibble. This module is the CPU quantizer used when loading natively and the reference for
//! the GPU quantizer (`shaders/nf4.wgsl`).

/// Values per absmax block.
pub const BLOCK: usize = 64;

/// The 16 NF4 code values (bitsandbytes' table, index = 4-bit code).
pub const CODE: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// A quantized matrix: `packed[i/2]` holds elements 2i (high nibble) and 2i+1 (low nibble) of
/// the flattened nn.Linear weight; `absmax[j]` scales elements 64j .. 64j+63.
#[derive(Clone, Debug, PartialEq)]
pub struct Nf4 {
    pub packed: Vec<u8>,
    pub absmax: Vec<f32>,
    pub numel: usize,
}

/// The NF4 code of a value already divided by its block's absmax (in [-1, 1]).
/// bitsandbytes decides with this tree of midpoints between neighbouring codes; ties go to
/// the lower code (strict `>`).
pub fn encode(x: f32) -> u8 {
    if x > 0.039_790_15 {
        if x > 0.389_312_54 {
            if x > 0.642_786_9 {
                if x > 0.861_478_45 { 15 } else { 14 }
            } else if x > 0.501_663_45 {
                13
            } else {
                12
            }
        } else if x > 0.203_521_25 {
            if x > 0.292_013_76 { 11 } else { 10 }
        } else if x > 0.120_255_25 {
            9
        } else {
            8
        }
    } else if x > -0.339_679_42 {
        if x > -0.137_911_74 {
            if x > -0.045_525_018 { 7 } else { 6 }
        } else if x > -0.234_607_4 {
            5
        } else {
            4
        }
    } else if x > -0.610_632_9 {
        if x > -0.459_995_27 { 3 } else { 2 }
    } else if x > -0.848_096_4 {
        1
    } else {
        0
    }
}

/// Smallest absmax bitsandbytes divides by (f32 1e-38): an all-zero block quantizes to the
/// zero code instead of NaN.
pub const ABSMAX_FLOOR: f32 = 1e-38;

/// Quantize a flattened nn.Linear-layout weight exactly as bitsandbytes 0.50 does on the CPU
/// (`tests/reference/bnb_nf4_notes.md`): full blocks scale by the reciprocal
/// `1 / max(absmax, 1e-38)` and store the raw absmax; a partial last block divides by
/// `max(absmax, 1e-38)` and stores that clamped value; an odd count is padded with code 7.
pub fn quantize(values: &[f32]) -> Nf4 {
    let numel = values.len();
    let mut codes = Vec::with_capacity(numel + 1);
    let mut absmax = Vec::with_capacity(numel.div_ceil(BLOCK));
    for block in values.chunks(BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if block.len() == BLOCK {
            let inv = 1.0 / amax.max(ABSMAX_FLOOR);
            codes.extend(block.iter().map(|&v| encode((v * inv).clamp(-1.0, 1.0))));
            absmax.push(amax);
        } else {
            let am = amax.max(ABSMAX_FLOOR);
            codes.extend(block.iter().map(|&v| encode((v / am).clamp(-1.0, 1.0))));
            absmax.push(am);
        }
    }
    if numel % 2 == 1 {
        codes.push(encode(0.0));
    }
    let packed = codes.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
    Nf4 {
        packed,
        absmax,
        numel,
    }
}

/// Quantize a GPT-2 Conv1D weight `w (in, out)`: transpose to nn.Linear `[out, in]`, then
/// [`quantize`].
pub fn quantize_conv1d(w: &[f32], k_in: usize, n_out: usize) -> Nf4 {
    assert_eq!(w.len(), k_in * n_out);
    let linear: Vec<f32> = (0..n_out * k_in)
        .map(|i| w[(i % k_in) * n_out + i / k_in])
        .collect();
    quantize(&linear)
}

impl Nf4 {
    /// Element `i` of the flattened nn.Linear weight: `code[nibble] * absmax[block]`.
    pub fn get(&self, i: usize) -> f32 {
        let byte = self.packed[i / 2];
        let nibble = if i.is_multiple_of(2) {
            byte >> 4
        } else {
            byte & 0xf
        };
        CODE[nibble as usize] * self.absmax[i / BLOCK]
    }

    /// The dequantized nn.Linear-layout weight, flattened.
    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.numel).map(|i| self.get(i)).collect()
    }

    /// The dequantized weight back in Conv1D layout `(in, out)`.
    pub fn dequantize_conv1d(&self, k_in: usize, n_out: usize) -> Vec<f32> {
        assert_eq!(self.numel, k_in * n_out);
        (0..k_in * n_out)
            .map(|i| self.get((i % n_out) * k_in + i / n_out))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Double quantization of the absmax (bitsandbytes `compress_statistics=True`)
// ---------------------------------------------------------------------------------------------
//
// Spec: `tests/reference/bnb_nf4_notes.md` and the NumPy port in
// `tests/reference/make_nf4_fixtures.py` (`np_torch_sum_f32`, `np_dynamic_map`,
// `np_build_lut`, `np_quantize_blockwise_8bit`), bit-exact with bitsandbytes 0.50.2 on the CPU.
// Everything below is f32 and keeps the spec's operation order: changing either changes bits.

/// Absmax values per second-level block (bitsandbytes' `blocksize=256` for the statistics).
pub const DQ_BLOCK: usize = 256;

/// `torch.linspace(start, end, steps, dtype=float32)` on the CPU: an f32 step, the first half
/// counted up from `start` and the second half down from `end`, each with one fused
/// multiply-add (so the ends are exact and the two halves round differently).
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|idx| {
            if idx < half {
                step.mul_add(idx as f32, start)
            } else {
                (-step).mul_add((steps - 1 - idx) as f32, end)
            }
        })
        .collect()
}

/// bitsandbytes' `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: the
/// 256-entry code the absmax is double-quantized with, bit for bit.
///
/// For `i` in 0..7: the f32 midpoints of `torch.linspace(0.1, 1, 2^i + 1)`, each times
/// `10^(i-6)` and times `-10^(i-6)` (the Python scalar is rounded to f32 before the f32
/// multiply, as torch does for a scalar operand), then 0 and 1, sorted ascending.
pub fn dynamic_map_signed() -> [f32; 256] {
    let mut data = Vec::with_capacity(256);
    for i in 0..7i32 {
        let b = torch_linspace_f32(0.1, 1.0, (1 << i) + 1);
        // 10.0 ** (i - 6) in f64 (1/10^k is correctly rounded), then rounded to f32
        let scale = if i < 6 { 1.0 / 10f64.powi(6 - i) } else { 1.0 } as f32;
        for w in b.windows(2) {
            let mean = (w[0] + w[1]) / 2.0;
            data.push(scale * mean);
            data.push(-scale * mean);
        }
    }
    data.push(0.0);
    data.push(1.0);
    data.sort_by(f32::total_cmp);
    data.try_into().expect("dynamic map has 256 entries")
}

/// The dynamic map, built once.
fn dynamic_map_cached() -> &'static [f32; 256] {
    static MAP: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    MAP.get_or_init(dynamic_map_signed)
}

/// Number of accumulator levels of torch's cascade sum (`SumKernel.cpp`, `multi_row_sum`).
const CASCADE_LEVELS: usize = 4;

/// `ceil(log2(x))` as torch's `ceil_log2` (1 for x <= 2).
fn ceil_log2(x: usize) -> u32 {
    if x <= 2 {
        1
    } else {
        usize::BITS - (x - 1).leading_zeros()
    }
}

/// torch's `multi_row_sum`: sums `size` rows of `R` independent `L`-lane accumulators
/// (`row(i)` gives row i) with a 4-level cascade: level 0 collects `2^level_power` rows, then
/// is added into level 1 (and so on up while the row counter is a multiple of the next level's
/// span); leftover rows go to level 0; finally levels 1..3 are added into level 0 in order.
/// The cascade limits rounding growth, and its exact shape decides the result's last bits.
fn multi_row_sum<const R: usize, const L: usize>(
    size: usize,
    row: impl Fn(usize) -> [[f32; L]; R],
) -> [[f32; L]; R] {
    let level_power = 4.max(ceil_log2(size) / CASCADE_LEVELS as u32);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[0.0f32; L]; R]; CASCADE_LEVELS];
    let add = |a: &mut [[f32; L]; R], b: &[[f32; L]; R]| {
        for (ra, rb) in a.iter_mut().zip(b) {
            for (x, y) in ra.iter_mut().zip(rb) {
                *x += *y;
            }
        }
    };
    let mut i = 0;
    while i + level_step <= size {
        for _ in 0..level_step {
            add(&mut acc[0], &row(i));
            i += 1;
        }
        for j in 1..CASCADE_LEVELS {
            let lower = acc[j - 1];
            add(&mut acc[j], &lower);
            acc[j - 1] = [[0.0; L]; R];
            if i & (level_mask << (j as u32 * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        add(&mut acc[0], &row(i));
        i += 1;
    }
    for j in 1..CASCADE_LEVELS {
        let upper = acc[j];
        add(&mut acc[0], &upper);
    }
    acc[0]
}

/// torch's `row_sum` with its ILP factor 4: `elems` is `size` rows of `L` lanes (`elem(i)`);
/// groups of 4 rows go through [`multi_row_sum`] as 4 accumulators, leftover rows are added
/// to accumulator 0, then accumulators 1..3 are added into 0 in order.
fn row_sum<const L: usize>(size: usize, elem: impl Fn(usize) -> [f32; L]) -> [f32; L] {
    let size_ilp = size / 4;
    let mut partial = multi_row_sum::<4, L>(size_ilp, |i| std::array::from_fn(|k| elem(4 * i + k)));
    for i in size_ilp * 4..size {
        let e = elem(i);
        partial[0].iter_mut().zip(e).for_each(|(a, b)| *a += b);
    }
    for k in 1..4 {
        let p = partial[k];
        partial[0].iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    partial[0]
}

/// `Vectorized<float>::size()` of torch's x86-64 sum kernel (AVX2 and DEFAULT builds; there is
/// no AVX512 build of it, so AVX512 machines use the AVX2 one).
const TORCH_SUM_LANES: usize = 8;

/// `torch.sum` of a contiguous 1-D f32 CPU tensor, bit for bit (one thread).
fn torch_sum_f32(x: &[f32]) -> f32 {
    const L: usize = TORCH_SUM_LANES;
    let n = x.len();
    let acc = if n >= L {
        // vectorized_inner_sum: lanes of 8 consecutive values, cascade-summed per lane ...
        let nvec = n / L;
        let vacc = row_sum::<L>(nvec, |i| x[i * L..(i + 1) * L].try_into().unwrap());
        // ... then a scalar accumulator takes the tail first and the 8 lanes after, in order
        let mut acc = 0.0f32;
        for &v in &x[nvec * L..] {
            acc += v;
        }
        for v in vacc {
            acc += v;
        }
        acc
    } else {
        // scalar_outer_sum: the same cascade over single-lane rows
        row_sum::<1>(n, |i| [x[i]])[0]
    };
    // stored into the zero-filled output (turns -0 into +0)
    0.0 + acc
}

/// The mean exactly as torch computes `absmax.mean()` for a contiguous f32 CPU tensor: its
/// cascade f32 sum (8 lanes, see `np_torch_sum_f32` in `tests/reference/make_nf4_fixtures.py`),
/// then one f32 division by `n as f32` (`at::mean_out`: `sum_out().div_(n)`). A plain f64
/// mean rounded to f32 differs in the last bit about 43% of the time.
///
/// Assumes torch sums on one thread, which it does below 32768 elements (its parallel grain
/// size); longer inputs summed with several torch threads may differ in the last bits.
/// An empty slice gives NaN, as torch does.
pub fn torch_mean_f32(x: &[f32]) -> f32 {
    torch_sum_f32(x) / x.len() as f32
}

/// The native CPU kernel's 65536-entry lookup table (`build_quantize_lut` in
/// bitsandbytes' csrc/cpu_ops.cpp): `lut[i]` = number of midpoints
/// `mid[k] = 0.5 * (c[k] + c[k+1])` strictly below `v_i = -1 + (2i) / 65535`, all f32.
/// Indexing it with a rounded 16-bit position is not an exact nearest-code search, and
/// bitsandbytes' bytes depend on exactly this grid.
fn quantize_lut() -> &'static [u8] {
    static LUT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    LUT.get_or_init(|| {
        let c = dynamic_map_cached();
        let mids: Vec<f32> = c.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        (0..65536u32)
            .map(|i| {
                let v = -1.0 + (2.0 * i as f32) / 65535.0;
                mids.partition_point(|&m| m < v) as u8
            })
            .collect()
    })
}

/// The double-quantized absmax of an NF4 tensor (bitsandbytes' `QuantState` with
/// `compress_statistics=True`): `absmax_q[j]` indexes [`dynamic_map_signed`], scaled by
/// `state2_absmax[j / 256]`, plus `offset`.
#[derive(Clone, Debug, PartialEq)]
pub struct DoubleQuant {
    pub absmax_q: Vec<u8>,
    pub offset: f32,
    pub state2_absmax: Vec<f32>,
}

/// Double-quantize an NF4 absmax exactly as bitsandbytes 0.50 does on the CPU:
/// `offset = absmax.mean()` ([`torch_mean_f32`]), then `y = absmax - offset` in 8-bit blocks of
/// 256 by the native kernel: `absmax2 = max|y|`; an all-zero block stores bytes 0 (code -1.0,
/// harmless since it is scaled by 0); otherwise `t = clamp(y * (1 / absmax2), -1, 1)`,
/// `u = (t + 1) * 0.5`, `idx = trunc(u * 65535 + 0.5)` (separately rounded f32 ops, no fma),
/// byte = LUT[idx].
pub fn double_quantize(absmax: &[f32]) -> DoubleQuant {
    let offset = torch_mean_f32(absmax);
    let lut = quantize_lut();
    let mut absmax_q = Vec::with_capacity(absmax.len());
    let mut state2_absmax = Vec::with_capacity(absmax.len().div_ceil(DQ_BLOCK));
    for block in absmax.chunks(DQ_BLOCK) {
        let am2 = block.iter().fold(0.0f32, |m, &a| m.max((a - offset).abs()));
        state2_absmax.push(am2);
        if am2 == 0.0 {
            absmax_q.extend(std::iter::repeat_n(0u8, block.len()));
            continue;
        }
        let inv = 1.0 / am2;
        absmax_q.extend(block.iter().map(|&a| {
            let t = ((a - offset) * inv).clamp(-1.0, 1.0);
            let u = (t + 1.0) * 0.5;
            let idx = u * 65535.0 + 0.5; // in [0.5, 65535.5]: truncation stays in range
            lut[idx as usize]
        }));
    }
    DoubleQuant {
        absmax_q,
        offset,
        state2_absmax,
    }
}

impl DoubleQuant {
    /// The reconstructed absmax, as bitsandbytes' `dequantize_blockwise(absmax_q, state2) +
    /// offset`: `code[q] * state2_absmax[j / 256]` rounded to f32, then `+ offset` in f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let code = dynamic_map_cached();
        self.absmax_q
            .iter()
            .enumerate()
            .map(|(j, &q)| code[q as usize] * self.state2_absmax[j / DQ_BLOCK] + self.offset)
            .collect()
    }
}

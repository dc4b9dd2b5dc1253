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

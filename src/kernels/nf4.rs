//! NF4 weights on the GPU: upload of CPU-quantized weights, and quantization on the GPU
//! (`shaders/nf4.wgsl`, bit-identical to [`crate::nf4::quantize`]) for fast loading.

use bytemuck::{Pod, Zeroable};

use super::Shader;
use super::matmul::Weight;
use crate::gpu::{Commands, Gpu, Tensor, grid_1d};
use crate::nf4::{BLOCK, Nf4};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    numel: u32,
    k_in: u32,
    n_out: u32,
    transpose: u32,
}

/// Upload a CPU-quantized matrix as a matmul weight.
pub fn upload(gpu: &Gpu, q: &Nf4) -> Weight {
    Weight::Nf4 {
        packed: gpu.upload_bytes(&q.packed),
        absmax: gpu.upload_f32(&q.absmax),
    }
}

/// Tensors sized for an NF4 matrix of `numel` values: (packed words, absmax).
pub fn alloc(gpu: &Gpu, numel: usize) -> (Tensor, Tensor) {
    (
        gpu.tensor(numel.div_ceil(8)),
        gpu.tensor(numel.div_ceil(BLOCK)),
    )
}

/// Quantize the Conv1D weight `w (in,out)` already on the GPU into `packed`/`absmax`
/// (bitsandbytes layout of the transposed `[out,in]` matrix).
pub fn quantize_conv1d(
    cmd: &mut Commands,
    packed: &Tensor,
    absmax: &Tensor,
    w: &Tensor,
    k_in: usize,
    n_out: usize,
) {
    let numel = k_in * n_out;
    assert!(packed.len() >= numel.div_ceil(8) && absmax.len() >= numel.div_ceil(BLOCK));
    let pipeline = Shader::Nf4.pipeline(cmd.gpu(), "nf4_quantize", &[]);
    let params = Params {
        numel: numel as u32,
        k_in: k_in as u32,
        n_out: n_out as u32,
        transpose: 1,
    };
    cmd.dispatch(
        &pipeline,
        &params,
        &[packed, absmax, w],
        grid_1d(numel.div_ceil(BLOCK), 64),
    );
}

/// Upload an f32 Conv1D weight and quantize it on the GPU; the f32 copy is released after.
pub fn upload_conv1d_nf4(gpu: &Gpu, w: &[f32], k_in: usize, n_out: usize) -> Weight {
    let (packed, absmax) = alloc(gpu, k_in * n_out);
    let src = gpu.upload_f32(w);
    let mut cmd = gpu.commands();
    quantize_conv1d(&mut cmd, &packed, &absmax, &src, k_in, n_out);
    cmd.submit();
    Weight::Nf4 { packed, absmax }
}

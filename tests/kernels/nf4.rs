//! NF4: the GPU quantizer against the host one (the selftest's cases), and both against
//! bitsandbytes' bytes (tests/fixtures/nf4, made by tests/reference/make_nf4_fixtures.py).

use crate::common::{read_f32, read_words};
use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::{kernels, nf4};

gpu_test!(
    gpu_quantization_is_bit_identical_to_cpu,
    check_gpu_quantization
);
/// The GPU quantizer is bit-identical to the CPU one (the selftest's NF4 family).
async fn check_gpu_quantization(gpu: &Gpu) {
    crate::common::assert_family(gpu, wgtune::kernels::selftest::Family::Nf4).await;
}

/// One case of `tests/fixtures/nf4/nf4_reference.safetensors` (made by
/// `tests/reference/make_nf4_fixtures.py` with bitsandbytes 0.50.2).
struct BnbCase {
    name: String,
    weight: Vec<f32>,
    k_in: usize,
    n_out: usize,
    packed: Vec<u8>,
    absmax: Vec<f32>,
    dequant: Option<Vec<f32>>,
}

fn bnb_cases() -> Vec<BnbCase> {
    // Compiled in (230 KB): the browser has no file system to read it from.
    let bytes = include_bytes!("../fixtures/nf4/nf4_reference.safetensors");
    let st = safetensors::SafeTensors::deserialize(bytes).expect("NF4 fixture parses");
    let f32s =
        |name: &str| -> Vec<f32> { bytemuck::pod_collect_to_vec(st.tensor(name).unwrap().data()) };
    let mut names: Vec<String> = st
        .names()
        .into_iter()
        .filter_map(|n| n.strip_suffix(".weight").map(str::to_string))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "fixture cases: {names:?}");
    names
        .into_iter()
        .map(|name| {
            let w = st.tensor(&format!("{name}.weight")).unwrap();
            let (k_in, n_out) = (w.shape()[0], w.shape()[1]);
            BnbCase {
                weight: bytemuck::pod_collect_to_vec(w.data()),
                k_in,
                n_out,
                packed: st
                    .tensor(&format!("{name}.packed"))
                    .unwrap()
                    .data()
                    .to_vec(),
                absmax: f32s(&format!("{name}.absmax")),
                dequant: st
                    .tensor(&format!("{name}.dequant"))
                    .ok()
                    .map(|t| bytemuck::pod_collect_to_vec(t.data())),
                name,
            }
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The CPU quantizer reproduces bitsandbytes' packed bytes and absmax bit for bit (blocks
/// straddling rows, a partial last block, an odd count, exact zeros and an all-zero block),
/// and its dequantization equals the reference `code[nibble] * absmax`.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn cpu_quantization_is_bit_identical_to_bitsandbytes() {
    for case in bnb_cases() {
        let q = nf4::quantize_conv1d(&case.weight, case.k_in, case.n_out);
        assert_eq!(q.packed, case.packed, "{}: packed bytes", case.name);
        assert_eq!(bits(&q.absmax), bits(&case.absmax), "{}: absmax", case.name);
        if let Some(want) = &case.dequant {
            assert_eq!(bits(&q.dequantize()), bits(want), "{}: dequant", case.name);
        }
    }
}

gpu_test!(
    gpu_quantization_is_bit_identical_to_bitsandbytes,
    check_gpu_quantization_vs_bitsandbytes
);
/// The GPU quantizer reproduces the same bitsandbytes bytes.
async fn check_gpu_quantization_vs_bitsandbytes(gpu: &Gpu) {
    for case in bnb_cases() {
        let numel = case.k_in * case.n_out;
        let (packed, absmax) = kernels::nf4::alloc(gpu, numel);
        let mut cmd = gpu.commands();
        kernels::nf4::quantize_conv1d(
            &mut cmd,
            &packed,
            &absmax,
            &gpu.upload_f32(&case.weight),
            case.k_in,
            case.n_out,
        );
        cmd.submit();
        let words = read_words(gpu, &packed).await;
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        assert_eq!(
            &bytes[..case.packed.len()],
            &case.packed[..],
            "{}: packed bytes",
            case.name
        );
        assert_eq!(
            bits(&read_f32(gpu, &absmax).await),
            bits(&case.absmax),
            "{}: absmax",
            case.name
        );
    }
}

//! Double quantization of the NF4 absmax (`wgtune::nf4::double_quantize`) against
//! bitsandbytes 0.50.2, bit for bit. Fixtures are made by `tests/reference/make_nf4_fixtures.py`:
//! `nf4_reference.safetensors` (the absmax of real NF4 weights, 1..432 blocks) and
//! `dq_extra.safetensors` (longer absmax arrays, all-zero 256-blocks, cases where the kernel's
//! reciprocal multiply decides a byte, and torch's mean of generated arrays of many lengths).

use safetensors::SafeTensors;
use wgtune::nf4::{self, DoubleQuant};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/nf4/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    bytemuck::pod_collect_to_vec(t.data())
}

fn u8s(st: &SafeTensors, name: &str) -> Vec<u8> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::U8, "{name}");
    t.data().to_vec()
}

fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}[{i}]: {g:e} vs {w:e}");
    }
}

/// Cases `N` of a fixture with `N.{input_suffix}` as the absmax to double-quantize (not the
/// `N.dq.*` outputs).
fn cases(st: &SafeTensors, input_suffix: &str) -> Vec<String> {
    let suffix = format!(".{input_suffix}");
    let mut names: Vec<String> = st
        .names()
        .into_iter()
        .filter_map(|n| n.strip_suffix(&suffix))
        .filter(|n| !n.contains(".dq"))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// `double_quantize(absmax)` and its reconstruction equal bitsandbytes' `N.dq.*`.
fn check_case(st: &SafeTensors, name: &str, absmax: &[f32]) -> DoubleQuant {
    let dq = nf4::double_quantize(absmax);
    let offset = f32s(st, &format!("{name}.dq.offset"));
    assert_eq!(offset.len(), 1);
    assert_eq!(
        dq.offset.to_bits(),
        offset[0].to_bits(),
        "{name}: offset {:e} vs {:e}",
        dq.offset,
        offset[0]
    );
    assert_bits_eq(
        &dq.state2_absmax,
        &f32s(st, &format!("{name}.dq.state2_absmax")),
        &format!("{name}.dq.state2_absmax"),
    );
    let want_q = u8s(st, &format!("{name}.dq.absmax_q"));
    assert_eq!(dq.absmax_q.len(), want_q.len(), "{name}: absmax_q length");
    if let Some(i) = (0..want_q.len()).find(|&i| dq.absmax_q[i] != want_q[i]) {
        panic!(
            "{name}: absmax_q[{i}] = {} vs bnb {} (absmax {:e})",
            dq.absmax_q[i], want_q[i], absmax[i]
        );
    }
    let rec_name = format!("{name}.dq.absmax");
    assert_bits_eq(&dq.dequantize(), &f32s(st, &rec_name), &rec_name);
    dq
}

#[test]
fn dynamic_map_matches_bitsandbytes() {
    let bytes = fixture("nf4_reference.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let want = f32s(&st, "dq.code");
    assert_bits_eq(&nf4::dynamic_map_signed(), &want, "dq.code");
}

#[test]
fn double_quant_matches_bitsandbytes_on_nf4_fixture() {
    let bytes = fixture("nf4_reference.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let names = cases(&st, "weight");
    assert!(names.len() >= 5, "fixture cases: {names:?}");
    for name in &names {
        let absmax = f32s(&st, &format!("{name}.absmax"));
        check_case(&st, name, &absmax);
    }
}

#[test]
fn double_quant_matches_bitsandbytes_on_long_absmax() {
    let bytes = fixture("dq_extra.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let names = cases(&st, "absmax");
    assert!(names.len() >= 3, "dq_extra cases: {names:?}");
    let mut longest = 0;
    let mut zero_blocks = 0;
    for name in &names {
        let absmax = f32s(&st, &format!("{name}.absmax"));
        let dq = check_case(&st, name, &absmax);
        longest = longest.max(absmax.len());
        zero_blocks += dq.state2_absmax.iter().filter(|&&a| a == 0.0).count();
    }
    // torch's cascade reaches its level 2 after 256 rows of 32 values (8192 elements)
    assert!(longest > 8192, "longest absmax {longest}");
    assert!(zero_blocks > 0, "no all-zero 256-block covered");
}

/// `hash_values` of `make_nf4_fixtures.py`: `k = (i * 2654435761 + seed * 40503) mod 2^24`,
/// `x[i] = k * 2^-(20 + i mod 7)`, all exact.
fn hash_values(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let k = (i * 2_654_435_761 + seed * 40_503) % (1 << 24);
            let scale = f32::from_bits((127 - 20 - (i % 7) as u32) << 23); // 2^-(20 + i mod 7)
            k as f32 * scale
        })
        .collect()
}

/// `torch_mean_f32` equals torch's `mean()` (one thread) for lengths that take the scalar path,
/// the ILP tail, each cascade level, and level_power 5 (more than 2^24 values).
#[test]
fn torch_mean_matches_torch() {
    let bytes = fixture("dq_extra.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("mean.n").unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::U32);
    let lengths: Vec<u32> = bytemuck::pod_collect_to_vec(t.data());
    let want = f32s(&st, "mean.torch");
    assert_eq!(lengths.len(), want.len());
    assert!(lengths.iter().any(|&n| n > 1 << 24), "{lengths:?}");
    for (&n, &w) in lengths.iter().zip(&want) {
        let got = nf4::torch_mean_f32(&hash_values(n as usize, n as u64));
        assert_eq!(got.to_bits(), w.to_bits(), "n={n}: {got:e} vs torch {w:e}");
    }
}

/// Cheap invariants that need no fixture.
#[test]
fn double_quant_edge_cases() {
    // one value: y = 0, an all-zero block -> byte 0, absmax2 0, reconstruction = offset
    let dq = nf4::double_quantize(&[0.25]);
    assert_eq!(dq.absmax_q, vec![0]);
    assert_eq!(dq.state2_absmax, vec![0.0]);
    assert_eq!(dq.offset, 0.25);
    assert_eq!(dq.dequantize(), vec![0.25]);
    // the signed map is not symmetric: it ends at 1.0 but starts at -0.99296874 (the appended
    // 1.0 has no negative twin), so y = -absmax2 maps to byte 0 and is not reconstructed exactly
    let code = nf4::dynamic_map_signed();
    assert_eq!((code[0], code[255]), (-0.992_968_74, 1.0));
    let dq = nf4::double_quantize(&[1.0, 3.0]);
    assert_eq!(dq.offset, 2.0);
    assert_eq!(dq.state2_absmax, vec![1.0]);
    assert_eq!(dq.absmax_q, vec![0, 255]);
    assert_eq!(dq.dequantize(), vec![code[0] + 2.0, 3.0]);
    // empty input: torch's mean of nothing is NaN; no blocks
    let dq = nf4::double_quantize(&[]);
    assert!(dq.offset.is_nan() && dq.absmax_q.is_empty() && dq.state2_absmax.is_empty());
}

/// torch's f32 mean is not the correctly rounded mean: check a case where the cascade order
/// matters against an independently computed f32 sum in torch's order for a short input
/// (fewer than 8 values use the scalar path: 4 ILP accumulators, then tail).
#[test]
fn torch_mean_small_inputs_follow_scalar_path() {
    // n = 6: accumulators p0..p3 get x0..x3 (one ILP row), x4 and x5 are added to p0, then
    // p0 + p1 + p2 + p3
    let x = [1.0e8f32, 3.0, 5.0, 7.0, -1.0e8, 1.0];
    let p0 = (x[0] + x[4]) + x[5];
    let want = (((p0 + x[1]) + x[2]) + x[3]) / 6.0;
    assert_eq!(nf4::torch_mean_f32(&x).to_bits(), want.to_bits());
}

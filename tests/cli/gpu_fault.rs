//! A fault on the GPU (here: a buffer beyond the device's limit, which wgpu reports through
//! its uncaptured-error path and by default turns into a panic) comes back as a one-line
//! error from the next read-back, and stays reported.

use wgtune::gpu::Gpu;

#[test]
fn an_oversized_buffer_is_an_error_not_a_panic() {
    // Its own device: the fault poisons it, and the shared one serves other tests.
    if crate::common::gpu().is_none() {
        return;
    }
    let gpu = Gpu::new_blocking().unwrap();
    assert!(gpu.check_healthy().is_ok());
    let words = (gpu.limits.max_buffer_size / 4 + 1024) as usize;
    let t = gpu.tensor(words);
    let e = pollster::block_on(gpu.read_f32(&t.slice(0, 4))).unwrap_err();
    let msg = e.to_string();
    println!("{msg}");
    // Its kind: wgpu's validation error, a wgtune bug (no size check caught it first).
    assert!(
        msg.starts_with("the GPU reported an error: Validation Error: ")
            && msg.ends_with("(please report this as a wgtune bug)"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(gpu.check_healthy().is_err(), "the fault stays recorded");
}

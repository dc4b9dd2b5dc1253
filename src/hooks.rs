//! Test hooks: environment variables that make wgtune misbehave on purpose, so that tests can
//! place faults nothing else produces on demand (a NaN loss at a given step, a kill between two
//! renames, a GPU that runs out of memory or is lost). This module exists only with the cargo
//! feature `test-hooks` (off by default; `scripts/test.sh` turns it on): a build made with plain
//! `cargo build` has no code that reads these variables. docs/testing.md lists them.

/// The value of `WGTUNE_TEST_<name>`, when set (never on wasm32, which has no environment).
pub fn var(name: &str) -> Option<String> {
    std::env::var(format!("WGTUNE_TEST_{name}")).ok()
}

/// `WGTUNE_TEST_<name>` as a step number, when set to one.
pub fn step(name: &str) -> Option<u32> {
    var(name).and_then(|v| v.trim().parse().ok())
}

/// Abort the process when `WGTUNE_TEST_ABORT_AT` names `point`: no unwinding and no cleanup,
/// the nearest a test gets to a `kill -9` at an exact place.
pub fn abort_at(point: &str) {
    if var("ABORT_AT").as_deref() == Some(point) {
        eprintln!("test hook: aborting at {point}");
        std::process::abort();
    }
}

/// `WGTUNE_TEST_GPU_FAULT=<kind>@<step>` (kind `oom` or `lost`): the fault to inject into the
/// device's fault log after the report of that training step.
pub fn gpu_fault() -> Option<(String, u32)> {
    let v = var("GPU_FAULT")?;
    let (kind, step) = v.split_once('@')?;
    Some((kind.to_string(), step.trim().parse().ok()?))
}

//! `wgtune selftest` as a user runs it: every kernel passes on this adapter; a broken kernel
//! (the test hook `WGTUNE_TEST_SELFTEST_BREAK`) makes a FAIL line, the summary and a non-zero
//! exit; `--filter` runs only the kernels it names.

use crate::harness::{hooks_or_skip, last_line, run_env};

fn selftest(extra: &[&str], env: &[(&str, &str)]) -> (std::process::Output, String) {
    let mut args = vec!["selftest".to_string(), "--quick".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run_env(&args, env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

/// The kernel lines of the output (PASS / FAIL / SKIP).
fn kernel_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| ["PASS ", "FAIL ", "SKIP "].iter().any(|p| l.starts_with(p)))
        .collect()
}

#[test]
fn quick_selftest_passes_every_kernel() {
    let _gpu = crate::gpu_or_skip!();
    let (out, stdout) = selftest(&[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "selftest failed:\n{stdout}\n{stderr}");
    assert!(stdout.starts_with("adapter: "), "{stdout}");
    for kernel in [
        "PASS  matmul register f32 weights",
        "PASS  matmul tiled 64x64 nf4 weights",
        "PASS  gemv nf4 weights",
        "PASS  layernorm ",
        "PASS  attention forward",
        "PASS  lm head cross-entropy",
        "PASS  grad norm, clipping and adamw",
    ] {
        assert!(stdout.contains(kernel), "no {kernel:?} line:\n{stdout}");
    }
    assert!(
        !stdout.contains("FAIL "),
        "a kernel failed but the run passed:\n{stdout}"
    );
    let summary = stdout.lines().last().unwrap_or("");
    assert!(
        summary.starts_with("selftest: ") && summary.contains(" kernels passed on "),
        "summary: {summary:?}"
    );
}

#[test]
fn a_broken_kernel_fails_the_selftest_with_its_line_and_the_summary() {
    let _gpu = crate::gpu_or_skip!();
    if !hooks_or_skip() {
        return;
    }
    // "norm" runs the layernorms (broken) and the grad norm + AdamW (not broken).
    let (out, stdout) = selftest(
        &["--filter", "norm"],
        &[("WGTUNE_TEST_SELFTEST_BREAK", "layernorm")],
    );
    assert_eq!(out.status.code(), Some(1), "exit status; stdout:\n{stdout}");
    let lines = kernel_lines(&stdout);
    assert!(
        lines.iter().any(|l| l.starts_with("FAIL  layernorm ")),
        "no FAIL layernorm line:\n{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("PASS  grad norm, clipping and adamw")),
        "the unbroken kernel did not pass:\n{stdout}"
    );
    let fail = lines.iter().find(|l| l.starts_with("FAIL ")).unwrap();
    assert!(
        fail.contains("got") && fail.contains("want") && fail.contains("tol"),
        "the failure names no element: {fail}"
    );
    let last = last_line(&out);
    assert!(
        last.starts_with("error: selftest: ") && last.contains(" kernels FAILED on "),
        "last stderr line: {last:?}"
    );
}

#[test]
fn filter_runs_only_the_kernels_it_names() {
    let _gpu = crate::gpu_or_skip!();
    let (out, stdout) = selftest(&["--filter", "gemv"], &[]);
    assert!(out.status.success(), "selftest failed:\n{stdout}");
    let lines = kernel_lines(&stdout);
    assert!(lines.len() >= 3, "too few gemv kernels:\n{stdout}");
    for l in &lines {
        assert!(l.contains("gemv"), "a kernel the filter excludes ran: {l}");
    }
}

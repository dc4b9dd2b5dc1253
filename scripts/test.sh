#!/usr/bin/env bash
# All the tests, as CI runs them: the native suite (kernels vs CPU references, GPT-2 and the
# Llama family vs transformers, training vs PEFT, the CLI's bad-input / interruption tests),
# and the end-to-end test of the built web app in headless Chromium over WebGPU. The e2e's
# "Check this GPU" runs every kernel family's selftest in the page (the cases of
# tests/kernels/), so scripts/test-browser-kernels.sh, which runs the same cases through
# wasm-bindgen-test, is not run again here: it is the quicker loop while working on a kernel.
# Browser parts need chromium, chromium-driver, wasm-bindgen-cli, trunk and node; without them
# they fail in CI (CI set: scripts/ci.sh) and are skipped with a message otherwise.
# The test hooks (WGTUNE_TEST_*, docs/testing.md) need the cargo feature test-hooks, which
# `cargo build` leaves off: the tests that use them fail without it in CI, skip elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo test"
cargo test --features test-hooks
echo "== web app end to end"
scripts/test-e2e.sh

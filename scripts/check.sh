#!/usr/bin/env bash
# Formatting and lints for both targets (native and wasm32), as CI runs them, and the
# layering rules of ARCHITECTURE.md (tests/layers.rs: arrows point down only, no import
# cycle, the library names no front end).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
# With the features the tests build with (scripts/test.sh), so the crate is not built twice.
cargo test --quiet --features test-hooks --test layers
# Natively twice: every target with the test hooks (the tests use them), and the library and
# binary as users build them (no hooks: nothing may be left unused without them).
cargo clippy --all-targets --features test-hooks -- -D warnings
cargo clippy --lib --bins -- -D warnings
# The library, the page's binary and the kernel tests (scripts/test-browser-kernels.sh) must
# build for the browser too; the other test targets are native-only.
cargo clippy --target wasm32-unknown-unknown --lib --bins -- -D warnings
cargo clippy --target wasm32-unknown-unknown --test kernels -- -D warnings

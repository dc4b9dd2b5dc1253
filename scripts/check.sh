#!/usr/bin/env bash
# Formatting and lints for both targets (native and wasm32), as CI runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The library and the page's binary must build for the browser too (tests are native-only
# until the browser test harness lands).
cargo clippy --target wasm32-unknown-unknown --lib --bins -- -D warnings

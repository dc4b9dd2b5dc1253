#!/usr/bin/env bash
# The kernel tests (tests/kernels) in headless Chromium over WebGPU, via wasm-bindgen-test.
# On a machine without a GPU Chromium's WebGPU runs on SwiftShader (flags in webdriver.json).
# Needs: chromium + chromium-driver (apt), wasm-bindgen-test-runner of the same version as
# Cargo.lock's wasm-bindgen (cargo install wasm-bindgen-cli), the wasm32 target (rustup).
# Without them: fails in CI (CI set, see scripts/ci.sh), skips with a message otherwise.
# Extra arguments go to `cargo test` (e.g. a name filter, or `-- --nocapture`, the default).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ci.sh

# The one wasm-bindgen version the runner must match (its CLI refuses other versions).
wb_version=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p}' Cargo.lock)
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=("chromium (apt-get install chromium)")
[ -x "$CHROMEDRIVER" ] || missing+=("chromedriver (apt-get install chromium-driver, or set CHROMEDRIVER)")
if ! command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
  missing+=("wasm-bindgen-test-runner (cargo install wasm-bindgen-cli --version $wb_version)")
elif ! wasm-bindgen-test-runner --version 2>/dev/null | grep -qF " $wb_version"; then
  missing+=("wasm-bindgen-test-runner $wb_version, found '$(wasm-bindgen-test-runner --version 2>&1 | head -1)' (cargo install wasm-bindgen-cli --version $wb_version)")
fi
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown ||
  missing+=("the wasm32 target (rustup target add wasm32-unknown-unknown)")
if [ ${#missing[@]} -gt 0 ]; then
  msg=$(IFS=';'; echo "${missing[*]}" | sed 's/;/; /g')
  if is_ci; then
    echo "error: browser kernel tests need: $msg" >&2
    exit 1
  fi
  echo "SKIPPING browser kernel tests, missing: $msg" >&2
  exit 0
fi

export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
# The whole suite shares one page; SwiftShader is slow, so allow it minutes, not 20 s.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-1200}"
# wasm-bindgen-test shows a passing test's console output only with --nocapture: without it
# a test skipped for a missing feature (SwiftShader has no shader-f16) would say nothing.
if [ $# -eq 0 ]; then set -- -- --nocapture; fi
exec cargo test --target wasm32-unknown-unknown --test kernels "$@"

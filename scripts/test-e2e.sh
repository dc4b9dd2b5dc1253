#!/usr/bin/env bash
# End-to-end test of the web app: build the page with trunk (release, as deployed), build the
# native CLI, and drive the page in Debian's headless Chromium (tests/browser/e2e.mjs).
# Screenshots go to target/e2e/ (docs/ holds the committed pair).
# Missing tools fail the run in CI (CI set, see scripts/ci.sh), otherwise they are reported and the
# test skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ci.sh

missing=()
command -v trunk >/dev/null || missing+=("trunk (cargo install trunk --version 0.21.14 --locked)")
command -v wasm-bindgen >/dev/null || missing+=("wasm-bindgen (cargo install wasm-bindgen-cli --version 0.2.130)")
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=("chromium (apt-get install chromium)")
command -v node >/dev/null || missing+=("node (Node.js 18 or newer)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "e2e test: missing ${missing[*]}" >&2
  if is_ci; then exit 1; fi
  echo "e2e test: SKIPPED (not CI)" >&2
  exit 0
fi

echo "== trunk build --release"
trunk build --release
echo "== cargo build (the CLI that checks the downloaded adapter)"
# With the features scripts/test.sh builds the tests with, so the crate is not compiled twice
# (the e2e sets no WGTUNE_TEST_* hook).
cargo build --bin wgtune --features test-hooks
echo "== npm ci (playwright-core, no browser download)"
(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
mkdir -p target/e2e
echo "== e2e"
WGTUNE_BIN=target/debug/wgtune DIST=dist SCREENSHOTS=target/e2e node tests/browser/e2e.mjs

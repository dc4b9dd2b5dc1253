#!/usr/bin/env bash
# Run one fuzz target (jsonl, safetensors or config) for SECONDS (default 600), one job.
# The committed seeds in fuzz/corpus/TARGET are read only: new inputs go to the ignored
# fuzz/scratch/TARGET, and crashes to fuzz/artifacts/TARGET. Extra arguments go to libFuzzer.
# Default cargo-fuzz build: optimised, with debug assertions and overflow checks, ASan.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh jsonl|safetensors|config [seconds] [libfuzzer args...]}
secs=${2:-600}
shift $(($# < 2 ? $# : 2))
case $target in
    jsonl) max_len=65536 ;;
    safetensors) max_len=131072 ;;
    config) max_len=8192 ;;
    *) echo "unknown target $target: use jsonl, safetensors or config" >&2; exit 2 ;;
esac
mkdir -p "scratch/$target"
exec cargo +nightly fuzz run "$target" "scratch/$target" "corpus/$target" -- \
    -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=2048 -timeout=30 \
    -print_final_stats=1 "$@"

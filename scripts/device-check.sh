#!/usr/bin/env bash
# One command for a machine with a real GPU: the selftest, the autotuner, wgtune's benchmarks
# and PyTorch + peft on the same shapes, written as one JSON file and a markdown table.
#
#   scripts/device-check.sh --bin PATH/wgtune [--out DIR] [--quick] [--python PY]
#
# It uses only prebuilt files: that machine may have no Rust toolchain and no network, so
# build the release binary beforehand (`cargo build --release`) and pass its path. The
# autotuner's cache goes to DIR/kernel-cache (so each check starts afresh and its choices
# are kept with the figures). Under 8 minutes on an H200-class machine with Vulkan drivers.
#
# --quick: the tiny shape only, the selftest without GPT-2-sized cases: a test of this script
# that CI runs on lavapipe (tests/cli/device_check.rs). PyTorch runs where `PY -c "import
# torch, peft"` works; bitsandbytes (QLoRA) where importable; each absence is said in the
# table. Needs only bash and python3's standard library besides.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="" out="device-check-$(date -u +%Y%m%dT%H%M%SZ)" quick=0 py=python3
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --python) py="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "device-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$bin" ] || { echo "device-check: --bin PATH/wgtune is required (build it with cargo build --release)" >&2; exit 2; }
[ -x "$bin" ] || { echo "device-check: $bin is not an executable" >&2; exit 2; }
command -v "$py" >/dev/null || { echo "device-check: $py not found (python3's standard library writes the report)" >&2; exit 2; }
mkdir -p "$out"
runs="$out/runs.jsonl"
: >"$runs"
export WGTUNE_CACHE_DIR="$out/kernel-cache" WGTUNE_AUTOTUNE=1
log() { echo "== $*" >&2; }

# One JSON line per step, each {"step": ..., "ok": bool, ...}.
record() { printf '%s\n' "$1" >>"$runs"; }

log "info"
"$bin" info >"$out/info.txt" 2>&1 || true

log "selftest"
st_args=()
[ $quick = 1 ] && st_args+=(--quick)
if "$bin" selftest "${st_args[@]}" >"$out/selftest.txt" 2>&1; then st_ok=true; else st_ok=false; fi
cat "$out/selftest.txt" >&2
record "$("$py" - "$out/selftest.txt" "$st_ok" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
print(json.dumps({"step": "selftest", "ok": sys.argv[2] == "true",
                  "kernels": [l for l in lines if l.startswith(("PASS", "FAIL"))],
                  "failed": sum(l.startswith("FAIL") for l in lines)}))
EOF
)"

# (shape, batch, seq, quant, extra flags): gpt2 4x128 and 8x512 with LoRA f32 and QLoRA,
# gpt2-medium both ways, gpt2-xl QLoRA with gradient checkpointing.
if [ $quick = 1 ]; then
  cases=("tiny 2 32 f32" "tiny 2 32 nf4")
else
  cases=("gpt2 4 128 f32" "gpt2 4 128 nf4" "gpt2 8 512 f32" "gpt2 8 512 nf4"
         "gpt2-medium 4 128 f32" "gpt2-medium 4 128 nf4" "gpt2-xl 4 128 nf4 --grad-checkpoint")
fi
steps=$([ $quick = 1 ] && echo 1 || echo 5)
for c in "${cases[@]}"; do
  read -r shape b t quant extra <<<"$c"
  log "wgtune bench $shape ${b}x$t $quant $extra"
  # The first bench of a shape tunes its kernels (bench prints the tuner's line on stderr).
  if line=$("$bin" bench --shape "$shape" --batch-size "$b" --seq-len "$t" --quant "$quant" \
      --targets c_attn --rank 8 --steps "$steps" --decode-tokens 8 ${extra:-} 2>"$out/bench.err"); then
    record "$("$py" -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(step="wgtune", ok=True); print(json.dumps(d))' "$line")"
  else
    record "$("$py" -c 'import json,sys; print(json.dumps({"step":"wgtune","ok":False,"shape":sys.argv[1],"quant":sys.argv[2],"error":sys.argv[3][-400:]}))' "$shape" "$quant" "$(cat "$out/bench.err")")"
  fi
  cat "$out/bench.err" >&2
done

# PyTorch + peft on the same shapes (LoRA fp32, bf16 for reference; QLoRA with bitsandbytes).
torch_ok=false bnb_ok=false device=cpu
if "$py" -c "import torch, peft, transformers" 2>/dev/null; then
  torch_ok=true
  "$py" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && device=cuda
  "$py" -c "import bitsandbytes" 2>/dev/null && bnb_ok=true
fi
record "{\"step\": \"torch-stack\", \"ok\": true, \"torch\": $torch_ok, \"bitsandbytes\": $bnb_ok, \"device\": \"$device\"}"
if [ $torch_ok = true ]; then
  for c in "${cases[@]}"; do
    read -r shape b t quant extra <<<"$c"
    [ "$shape" = tiny ] && continue  # compare_pytorch.py builds GPT-2 presets only
    dtypes=(fp32 bf16)
    [ "$quant" = nf4 ] && { [ $bnb_ok = true ] && dtypes=(bf16) || continue; }
    for dt in "${dtypes[@]}"; do
      log "pytorch $shape ${b}x$t $quant $dt on $device"
      if line=$("$py" benches/compare_pytorch.py --torch-only --device "$device" --dtype "$dt" \
          --shape "$shape" --batch "$b" --seq-len "$t" --quant "$quant" --steps "$steps" \
          ${extra:-} 2>"$out/torch.err" | tail -1); then
        record "$("$py" -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(step="pytorch", ok=True); print(json.dumps(d))' "$line")"
      else
        record "$("$py" -c 'import json,sys; print(json.dumps({"step":"pytorch","ok":False,"shape":sys.argv[1],"error":sys.argv[2][-400:]}))' "$shape" "$(cat "$out/torch.err")")"
      fi
    done
  done
fi

log "report"
"$py" - "$runs" "$out" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = sys.argv[2]
json.dump({"runs": runs}, open(f"{out}/device-check.json", "w"), indent=1)
f = lambda x, p=1: "" if x is None else f"{x:.{p}f}"
md = ["| run | shape | batch×seq | base | train tok/s | GFLOP/s | host ms/step | decode tok/s | host ms/token | peak MiB |",
      "|---|---|---|---|---|---|---|---|---|---|"]
for r in runs:
    if r["step"] not in ("wgtune", "pytorch"):
        continue
    if not r["ok"]:
        md.append(f"| {r['step']} | {r.get('shape','')} | | {r.get('quant','')} | failed: {r['error'].splitlines()[-1] if r['error'] else ''} | | | | | |")
        continue
    base = r.get("quant", "") + (" " + r["dtype"] if r.get("dtype") else "") + (" gc" if r.get("grad_checkpoint") else "")
    md.append(f"| {r['step']} | {r['shape']} | {r['batch_size']}×{r['seq_len']} | {base} | "
              f"{f(r.get('train_tokens_per_s'))} | {f(r.get('train_gflop_per_s'))} | {f(r.get('host_ms_per_step'), 2)} | "
              f"{f(r.get('decode_tokens_per_s'))} | {f(r.get('host_ms_per_token'), 2)} | {f(r.get('peak_gpu_mib'), 0)} |")
st = next(r for r in runs if r["step"] == "selftest")
stack = next(r for r in runs if r["step"] == "torch-stack")
notes = [f"selftest: {'all ' + str(len(st['kernels'])) + ' kernels passed' if st['ok'] else str(st['failed']) + ' kernels FAILED'}"]
if not stack["torch"]:
    notes.append("PyTorch + peft: not installed here, no PyTorch rows")
elif not stack["bitsandbytes"]:
    notes.append("bitsandbytes: not installed here, no PyTorch QLoRA rows")
open(f"{out}/device-check.md", "w").write("\n".join(md + [""] + [f"- {n}" for n in notes]) + "\n")
print(open(f"{out}/device-check.md").read())
sys.exit(0 if st["ok"] and all(r["ok"] for r in runs if r["step"] == "wgtune") else 1)
EOF

#!/usr/bin/env bash
# One command for a machine with a real GPU: the selftest, autotuning, `wgtune bench` on GPT-2
# shapes, and PyTorch + peft on the same shapes, written as one JSON file and a markdown table.
# It uses only prebuilt files (that machine may have no Rust toolchain and no network): build
# the release binary beforehand (`cargo build --release`) and pass its path.
#
#   scripts/device-check.sh --bin target/release/wgtune [--out DIR] [--python PY] [--quick]
#
# --quick: the tiny fixture shape and the quick selftest, for CI on lavapipe (a test of the
# script itself, tests/cli/device_check.rs). PyTorch runs where `--python` imports torch,
# transformers and peft (on CUDA when torch sees it, else not at all in the full mode: CPU
# figures for GPT-2 XL would take hours); QLoRA rows need bitsandbytes, and say so without it.
# Exits non-zero when the selftest fails or a wgtune benchmark fails; the files are written
# either way.
set -uo pipefail
cd "$(dirname "$0")/.."

bin=target/release/wgtune
out=device-check
python=python3
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "error: device-check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "error: device-check.sh: no wgtune binary at $bin (build it: cargo build --release; then --bin PATH)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "error: device-check.sh: python3 is needed to write the report" >&2; exit 2; }
mkdir -p "$out/logs"
# A cache of this run's own, so that the first benchmark tunes and the others read the cache.
export WGTUNE_CACHE_DIR="$out/kernel-cache"
rm -rf "$WGTUNE_CACHE_DIR"
# Tune on CPU adapters too (lavapipe in --quick; real GPUs tune by default).
export WGTUNE_AUTOTUNE=1
start=$(date +%s)
failed=0

# name shape batch seq quant extra-flags
if [ "$quick" = 1 ]; then
  configs=("tiny-1x16-f32 tiny 1 16 f32" "tiny-1x16-nf4 tiny 1 16 nf4")
  steps=1 decode=2 selftest_flags=(--quick)
else
  configs=(
    "gpt2-4x128-f32 gpt2 4 128 f32"
    "gpt2-4x128-nf4 gpt2 4 128 nf4"
    "gpt2-8x512-f32 gpt2 8 512 f32"
    "gpt2-8x512-nf4 gpt2 8 512 nf4"
    "gpt2-medium-4x128-nf4 gpt2-medium 4 128 nf4"
    "gpt2-xl-4x128-nf4-gc gpt2-xl 4 128 nf4 --grad-checkpoint"
  )
  steps=5 decode=16 selftest_flags=()
fi

echo "== wgtune info"
"$bin" info >"$out/logs/info.txt" 2>&1 || failed=1
head -3 "$out/logs/info.txt"

echo "== wgtune selftest ${selftest_flags[*]}"
if "$bin" selftest "${selftest_flags[@]}" >"$out/logs/selftest.txt" 2>&1; then
  echo "selftest=pass" >"$out/logs/selftest.status"
else
  echo "selftest=fail" >"$out/logs/selftest.status"
  failed=1
fi
tail -1 "$out/logs/selftest.txt"

for c in "${configs[@]}"; do
  read -r name shape b t quant flags <<<"$c"
  echo "== wgtune bench $name"
  # shellcheck disable=SC2086 # flags is a word list
  if ! "$bin" bench --shape "$shape" --batch-size "$b" --seq-len "$t" --quant "$quant" \
      --targets c_attn --rank 8 --steps "$steps" --decode-tokens "$decode" $flags \
      >"$out/logs/wgtune-$name.json" 2>"$out/logs/wgtune-$name.err"; then
    echo "wgtune bench $name failed: $(tail -1 "$out/logs/wgtune-$name.err")"
    failed=1
  fi
done

# PyTorch + peft on the same shapes, where the Python stack is there.
torch_device=""
if "$python" -c 'import torch, transformers, peft' >/dev/null 2>&1; then
  if "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    torch_device=cuda
  elif [ "$quick" = 1 ]; then
    torch_device=cpu
  fi
fi
has_bnb=0
"$python" -c 'import bitsandbytes' >/dev/null 2>&1 && has_bnb=1
echo "torch_device=$torch_device" >"$out/logs/torch.status"
echo "bitsandbytes=$has_bnb" >>"$out/logs/torch.status"
if [ -n "$torch_device" ]; then
  for c in "${configs[@]}"; do
    read -r name shape b t quant flags <<<"$c"
    [ "$quant" = nf4 ] && [ "$has_bnb" = 0 ] && continue
    for dtype in fp32 bf16; do
      echo "== torch $name $dtype ($torch_device)"
      # shellcheck disable=SC2086
      "$python" benches/compare_pytorch.py --torch-only --shape "$shape" --batch "$b" \
        --seq-len "$t" --quant "$quant" --steps "$steps" --decode-tokens "$decode" \
        --device "$torch_device" --dtype "$dtype" $flags \
        >"$out/logs/torch-$name-$dtype.json" 2>"$out/logs/torch-$name-$dtype.err" ||
        echo "torch $name $dtype failed: $(tail -1 "$out/logs/torch-$name-$dtype.err")"
    done
  done
fi

elapsed=$(( $(date +%s) - start ))
python3 - "$out" "$quick" "$elapsed" "${configs[@]}" <<'EOF'
import json, os, sys
out, quick, elapsed, configs = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4:]
logs = os.path.join(out, "logs")

def read(name):
    p = os.path.join(logs, name)
    return open(p).read() if os.path.exists(p) else ""

def last_json(name):
    for line in reversed(read(name).strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            pass
    return None

status = dict(l.split("=", 1) for l in (read("selftest.status") + read("torch.status")).split())
selftest = read("selftest.txt").strip().splitlines()
rows, torch_rows = [], []
for c in configs:
    name, quant = c.split()[0], c.split()[4]
    w = last_json(f"wgtune-{name}.json")
    rows.append({"config": name, "wgtune": w,
                 "error": None if w else (read(f"wgtune-{name}.err").strip().splitlines() or ["no output"])[-1]})
    for dtype in ("fp32", "bf16"):
        t = last_json(f"torch-{name}-{dtype}.json")
        if t:
            torch_rows.append({"config": name, "dtype": dtype, "torch": t})
torch_note = ("PyTorch not run: torch, transformers and peft are not importable by the given python"
              if not status.get("torch_device") else f"PyTorch on {status['torch_device']}")
if status.get("torch_device") and status.get("bitsandbytes") != "1":
    torch_note += "; bitsandbytes absent: QLoRA (nf4) rows not compared"
report = {
    "quick": quick, "elapsed_s": elapsed,
    "info": read("info.txt").strip().splitlines(),
    "selftest": {"passed": status.get("selftest") == "pass", "lines": selftest},
    "wgtune": rows, "torch": torch_rows, "torch_note": torch_note,
}
tmp = os.path.join(out, "device-check.json.tmp")
with open(tmp, "w") as f:
    json.dump(report, f, indent=1)
os.replace(tmp, os.path.join(out, "device-check.json"))

def fmt(v, spec=".1f"):
    return format(v, spec) if isinstance(v, (int, float)) else "–"

md = [f"# wgtune device check ({'quick' if quick else 'full'}, {elapsed} s)", ""]
md += [f"- {l.strip()}" for l in report["info"]
       if l.strip().startswith(("adapter:", "backend:", "driver:"))]
md += [f"- selftest: {selftest[-1] if selftest else 'no output'}", f"- {torch_note}", ""]
md += ["| config | wgtune train tok/s | GFLOP/s | host ms/step | decode tok/s | host ms/token | peak MiB | torch fp32 tok/s | torch bf16 tok/s | wgtune / torch fp32 |",
       "|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    w = r["wgtune"] or {}
    t = {x["dtype"]: x["torch"] for x in torch_rows if x["config"] == r["config"]}
    tf, tb = (t.get("fp32") or {}).get("train_tokens_per_s"), (t.get("bf16") or {}).get("train_tokens_per_s")
    wt = w.get("train_tokens_per_s")
    ratio = f"{wt / tf:.2f}" if wt and tf else "–"
    name = r["config"] + ("" if w else f" (failed: {r['error']})")
    md.append(f"| {name} | {fmt(wt)} | {fmt(w.get('train_gflop_per_s'))} | {fmt(w.get('host_ms_per_step'), '.2f')} | "
              f"{fmt(w.get('decode_tokens_per_s'))} | {fmt(w.get('host_ms_per_token'), '.2f')} | {fmt(w.get('peak_gpu_mib'), '.0f')} | "
              f"{fmt(tf)} | {fmt(tb)} | {ratio} |")
kernels = next((r["wgtune"].get("autotune") for r in rows if r["wgtune"]), None)
if kernels:
    md += ["", "Kernels (autotune): " + kernels]
tmp = os.path.join(out, "device-check.md.tmp")
with open(tmp, "w") as f:
    f.write("\n".join(md) + "\n")
os.replace(tmp, os.path.join(out, "device-check.md"))
print("\n".join(md))
EOF
echo "wrote $out/device-check.json and $out/device-check.md in ${elapsed} s"
exit $failed

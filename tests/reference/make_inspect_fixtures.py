"""Reference figures for `wgtune inspect` (tests/inspect.rs): for each fixture adapter, the
singular values of the dense update dW = scale * B @ A by numpy's SVD (float64), its
Frobenius norm, the base weight's norm (tests/fixtures/models/tiny) and the entropy-based
effective rank. numpy + safetensors only:

    python -m venv /tmp/np && /tmp/np/bin/pip install numpy safetensors
    /tmp/np/bin/python tests/reference/make_inspect_fixtures.py
"""

import json
import math
import pathlib

import numpy as np
from safetensors.numpy import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
ADAPTERS = {
    # r4 on c_attn, made by PEFT (trained ten AdamW steps).
    "attn_r4": FIX / "peft" / "attn_r4" / "adapter_final",
    # r8 rsLoRA on every target (c_attn, c_proj, c_fc), made by PEFT.
    "all_r8_rslora": FIX / "peft" / "all_r8_rslora" / "adapter_final",
    # r4 rsLoRA on c_attn + c_fc, written by wgtune.
    "wgtune_written": FIX / "peft" / "wgtune_written" / "adapter",
    # all-linear on the bitsandbytes 4-bit base, made by PEFT.
    "all_linear_nf4": FIX / "peft" / "all_linear_nf4" / "adapter_final",
}


def effective_rank(sv):
    total = float(np.sum(sv))
    if total <= 0:
        return 0.0
    p = sv / total
    p = p[p > 0]
    return float(math.exp(-np.sum(p * np.log(p))))


def main():
    base = load_file(str(FIX / "models" / "tiny" / "model.safetensors"))
    out_dir = FIX / "inspect"
    out_dir.mkdir(exist_ok=True)
    for name, d in ADAPTERS.items():
        cfg = json.loads((d / "adapter_config.json").read_text())
        r, alpha = cfg["r"], cfg["lora_alpha"]
        scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
        tensors = load_file(str(d / "adapter_model.safetensors"))
        modules = {}
        for key in sorted(tensors):
            if not key.endswith(".lora_A.weight"):
                continue
            module = key[len("base_model.model."):-len(".lora_A.weight")]
            a = tensors[key].astype(np.float64)
            b = tensors[key.replace("lora_A", "lora_B")].astype(np.float64)
            dw = scale * (b @ a)  # (out, in): PEFT's delta for fan_in_fan_out is its transpose
            sv = np.linalg.svd(dw, compute_uv=False)[: min(r, *dw.shape)]
            short = module[len("transformer."):] if module.startswith("transformer.") else module
            w = base.get(f"transformer.{short}.weight", base.get(f"{short}.weight"))
            modules[module] = {
                "singular_values": sv.tolist(),
                "norm": float(np.linalg.norm(dw)),
                "base_norm": float(np.linalg.norm(w.astype(np.float64))),
                "effective_rank": effective_rank(sv),
            }
        (out_dir / f"{name}.json").write_text(
            json.dumps({"scale": scale, "modules": modules}, indent=1) + "\n"
        )
        print(name, len(modules), "modules")


if __name__ == "__main__":
    main()

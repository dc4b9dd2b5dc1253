"""Prove that PEFT loads an adapter written by wgtune and record PEFT's logits with it.

The adapter in tests/fixtures/peft/wgtune_written/adapter/ was written by
    wgtune train --model tests/fixtures/models/tiny --quant f32 --targets c_attn,c_fc \
        --rank 4 --alpha 8 --rslora --dropout 0.1 --lr 1e-2 --seq-len 128 --max-steps 8 \
        --out tests/fixtures/peft/wgtune_written/adapter
This script loads it with `PeftModel.from_pretrained` (failing if PEFT rejects anything in it)
and writes tests/fixtures/peft/wgtune_written/reference.safetensors: a fixed batch
(`input_ids`, `attention_mask`) and PEFT's `logits` with the adapter. The Rust test
`wgtune_adapters_give_pefts_logits` checks that wgtune gives the same logits from the same
files: together they show PEFT reproduces our model.

Run: /path/to/venv/bin/python tests/reference/check_wgtune_adapter.py
(requirements: tests/reference/requirements.txt)
"""

import json
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests/fixtures/models/tiny"
CASE = ROOT / "tests/fixtures/peft/wgtune_written"


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    base = GPT2LMHeadModel.from_pretrained(MODEL, torch_dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, CASE / "adapter")
    model.eval()
    cfg = json.loads((CASE / "adapter/adapter_config.json").read_text())
    # The adapter must actually be applied: every targeted module got LoRA weights.
    lora_modules = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert len(lora_modules) == 2 * 2, lora_modules  # 2 layers x (c_attn, c_fc)
    assert cfg["use_rslora"] and cfg["r"] == 4
    ids = torch.randint(0, 999, (2, 16), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    ids[1, 12:] = 999
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    with model.disable_adapter(), torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
    diff = (logits - plain).abs().max().item()
    assert diff > 1e-3, f"the adapter changes nothing ({diff})"
    save_file(
        {"input_ids": ids.contiguous(), "attention_mask": mask.contiguous(), "logits": logits.float().contiguous()},
        CASE / "reference.safetensors",
        metadata={"info": "PEFT logits of tiny + the wgtune-written adapter (check_wgtune_adapter.py)"},
    )
    print(f"PEFT loaded the wgtune adapter; adapter effect on logits up to {diff:.4f}; wrote reference.safetensors")


if __name__ == "__main__":
    main()

"""Prove that PEFT loads Llama-family adapters written by wgtune, and record PEFT's logits.

The adapters under tests/fixtures/peft/wgtune_written_{llama,qwen2}/adapter/ were written by
    wgtune train --model tests/fixtures/models/llama_tiny --data tests/fixtures/data/messages.jsonl \
        --quant f32 --targets all-linear --rank 4 --alpha 8 --rslora --dropout 0.1 --lr 1e-2 \
        --max-steps 6 --batch-size 2 --out tests/fixtures/peft/wgtune_written_llama/adapter
    wgtune train --model tests/fixtures/models/qwen2_tiny --data tests/fixtures/data/messages.jsonl \
        --quant f32 --targets q_proj,v_proj --rank 8 --alpha 16 --dropout 0.05 --lr 1e-2 \
        --max-steps 6 --batch-size 2 --out tests/fixtures/peft/wgtune_written_qwen2/adapter
This script loads each with `PeftModel.from_pretrained` on its base (failing if PEFT rejects
anything in it, or if a targeted module got no LoRA weights) and writes
tests/fixtures/peft/wgtune_written_{llama,qwen2}/reference.safetensors: a fixed batch
(`input_ids`, `attention_mask`, with a padded row) and PEFT's `logits` with the adapter. The
Rust test `wgtune_written_adapters_give_pefts_logits` (tests/train/llama_peft.rs) checks that
wgtune gives the same logits from the same files.

Run: /path/to/venv/bin/python tests/reference/check_wgtune_llama_adapters.py
(requirements: tests/reference/requirements.txt)
"""

import json
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
# (case, base model, LoRA layers PEFT must create)
CASES = [
    ("wgtune_written_llama", "llama_tiny", 2 * 7),
    ("wgtune_written_qwen2", "qwen2_tiny", 2 * 2),
]


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for case, base_name, n_lora in CASES:
        d = ROOT / "tests/fixtures/peft" / case
        base = AutoModelForCausalLM.from_pretrained(
            ROOT / "tests/fixtures/models" / base_name, dtype=torch.float32, attn_implementation="eager"
        )
        model = PeftModel.from_pretrained(base, d / "adapter")
        model.eval()
        cfg = json.loads((d / "adapter/adapter_config.json").read_text())
        lora_modules = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
        assert len(lora_modules) == n_lora, (case, lora_modules)
        vocab = base.config.vocab_size
        ids = torch.randint(0, min(vocab, 999), (2, 16), generator=torch.Generator().manual_seed(5))
        mask = torch.ones_like(ids)
        mask[1, 12:] = 0
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        with model.disable_adapter(), torch.no_grad():
            plain = model(input_ids=ids, attention_mask=mask).logits
        diff = (logits - plain).abs().max().item()
        assert diff > 1e-4, f"{case}: the adapter changes nothing ({diff})"
        save_file(
            {"input_ids": ids.contiguous(), "attention_mask": mask.contiguous(), "logits": logits.float().contiguous()},
            d / "reference.safetensors",
            metadata={"info": f"PEFT logits of {base_name} + the wgtune-written adapter (check_wgtune_llama_adapters.py); r={cfg['r']}, rslora={cfg['use_rslora']}"},
        )
        print(f"{case}: PEFT loaded the wgtune adapter ({len(lora_modules)} LoRA layers); adapter effect on logits up to {diff:.4f}")


if __name__ == "__main__":
    main()

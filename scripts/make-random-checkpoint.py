#!/usr/bin/env python3
"""Write a GPT-2 folder of a preset's shape with random f32 weights, to measure loading a
large model (in the page: tests/browser/measure-load.mjs) without downloading one.

    /root/refvenv/bin/python scripts/make-random-checkpoint.py gpt2-large /tmp/gpt2-large-random

Writes config.json, model.safetensors (HF names with the `transformer.` prefix plus the
`.attn.bias` masks a real checkpoint carries, which loaders skip) and the tiny fixture's
tokenizer.json. Tensors are written one at a time: memory stays near the largest tensor.
Needs numpy only.
"""

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

SHAPES = {  # n_embd, n_head, n_layer
    "distilgpt2": (768, 12, 6),
    "gpt2": (768, 12, 12),
    "gpt2-medium": (1024, 16, 24),
    "gpt2-large": (1280, 20, 36),
    "gpt2-xl": (1600, 25, 48),
}
VOCAB, POSITIONS = 50257, 1024


def tensors(c, n_layer):
    """(name, shape, init) in the order GPT-2 checkpoints list them."""
    yield "transformer.wte.weight", (VOCAB, c), "normal"
    yield "transformer.wpe.weight", (POSITIONS, c), "normal"
    for i in range(n_layer):
        h = f"transformer.h.{i}"
        yield f"{h}.ln_1.weight", (c,), "ones"
        yield f"{h}.ln_1.bias", (c,), "zeros"
        yield f"{h}.attn.bias", (1, 1, POSITIONS, POSITIONS), "mask"
        yield f"{h}.attn.c_attn.weight", (c, 3 * c), "normal"
        yield f"{h}.attn.c_attn.bias", (3 * c,), "zeros"
        yield f"{h}.attn.c_proj.weight", (c, c), "normal"
        yield f"{h}.attn.c_proj.bias", (c,), "zeros"
        yield f"{h}.ln_2.weight", (c,), "ones"
        yield f"{h}.ln_2.bias", (c,), "zeros"
        yield f"{h}.mlp.c_fc.weight", (c, 4 * c), "normal"
        yield f"{h}.mlp.c_fc.bias", (4 * c,), "zeros"
        yield f"{h}.mlp.c_proj.weight", (4 * c, c), "normal"
        yield f"{h}.mlp.c_proj.bias", (c,), "zeros"
    yield "transformer.ln_f.weight", (c,), "ones"
    yield "transformer.ln_f.bias", (c,), "zeros"


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in SHAPES:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(SHAPES)}}} OUT_DIR")
    preset, out = sys.argv[1], Path(sys.argv[2])
    c, n_head, n_layer = SHAPES[preset]
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "vocab_size": VOCAB, "n_positions": POSITIONS, "n_embd": c, "n_head": n_head,
        "n_layer": n_layer, "n_inner": None, "layer_norm_epsilon": 1e-5,
        "bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": True,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tok = Path(__file__).resolve().parent.parent / "tests/fixtures/models/tiny/tokenizer.json"
    shutil.copy(tok, out / "tokenizer.json")

    header, offset = {}, 0
    for name, shape, _ in tensors(c, n_layer):
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    rng = np.random.default_rng(0)
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for name, shape, init in tensors(c, n_layer):
            if init == "normal":
                t = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            elif init == "ones":
                t = np.ones(shape, np.float32)
            elif init == "mask":
                t = np.tril(np.ones(shape[-2:], np.float32)).reshape(shape)
            else:
                t = np.zeros(shape, np.float32)
            f.write(t.astype("<f4").tobytes())
    print(f"{out}: {preset} shape, {offset / 2**30:.2f} GiB of f32 tensors")


if __name__ == "__main__":
    main()

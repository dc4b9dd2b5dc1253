#!/usr/bin/env python3
"""wgtune vs PyTorch + peft (LoRA) / bitsandbytes (QLoRA) on the same shape, same machine.

Runs `wgtune bench --shape ...` and the same training step in PyTorch, interleaved
(wgtune, torch, wgtune, torch, ... for --rounds rounds), and prints both figures and the ratio
wgtune / torch. Random GPT-2 weights from GPT2Config: nothing is downloaded.

    pip install torch transformers peft bitsandbytes
    cargo build --release
    python benches/compare_pytorch.py --shape gpt2 --batch 1 --seq-len 64 --steps 2 --quant nf4

What is compared, per step: forward + loss + backward to the LoRA weights + AdamW step on
the LoRA parameters, base weights frozen (f32, or NF4 through bitsandbytes' Linear4bit with
f32 compute, as transformers' `load_in_4bit` builds it); prefill = one forward over a
seq-len prompt (batch 1); decode = one token at a time with the KV cache. Peak memory is
wgtune's own buffer accounting on its side; on the torch side it is the CUDA allocator's peak
on a GPU, and the process's peak resident set (everything, Python included) on the CPU, so
that column is only indicative there.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SHAPES = {  # n_embd, n_head, n_layer
    "tiny": (64, 4, 2),
    "distilgpt2": (768, 12, 6),
    "gpt2": (768, 12, 12),
    "gpt2-medium": (1024, 16, 24),
    "gpt2-large": (1280, 20, 36),
    "gpt2-xl": (1600, 25, 48),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", default="gpt2", choices=SHAPES)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=2, help="timed training steps after a warm-up")
    p.add_argument("--decode-tokens", type=int, default=8)
    p.add_argument("--quant", default="nf4", choices=["nf4", "f32"])
    p.add_argument("--targets", default="c_attn", help="comma-separated LoRA targets")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--grad-checkpoint", action="store_true")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                   help="torch weights and compute (QLoRA: bitsandbytes' compute dtype)")
    p.add_argument("--rounds", type=int, default=1, help="wgtune/torch pairs, interleaved")
    p.add_argument("--wgtune", default="target/release/wgtune", help="the wgtune binary")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p.parse_args()


def run_wgtune(a):
    cmd = [
        a.wgtune, "bench", "--shape", a.shape, "--batch-size", str(a.batch),
        "--seq-len", str(a.seq_len), "--steps", str(a.steps), "--quant", a.quant,
        "--targets", a.targets, "--rank", str(a.rank),
        "--decode-tokens", str(a.decode_tokens),
    ] + (["--grad-checkpoint"] if a.grad_checkpoint else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def build_model(a):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BitsAndBytesConfig, GPT2Config, GPT2LMHeadModel

    c, h, l = SHAPES[a.shape]
    vocab = 1000 if a.shape == "tiny" else 50257
    cfg = GPT2Config(n_embd=c, n_head=h, n_layer=l, vocab_size=vocab, n_positions=1024,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(1)
    model = GPT2LMHeadModel(cfg)
    if a.quant == "nf4":
        # Linear4bit layers are built by from_pretrained: save the random model and reload it.
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            del model
            q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_compute_dtype=dtype_of(a))
            model = GPT2LMHeadModel.from_pretrained(d, quantization_config=q,
                                                    device_map=a.device)
    else:
        model = model.to(a.device, dtype=dtype_of(a))
    if a.grad_checkpoint:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.05,
                      target_modules=a.targets.split(","), fan_in_fan_out=True,
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora), vocab


def dtype_of(a):
    import torch
    return torch.bfloat16 if a.dtype == "bf16" else torch.float32


def sync(device):
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_torch(a):
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    model, vocab = build_model(a)
    if a.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    ids = (torch.arange(a.batch * a.seq_len) * 2654435761 % vocab).reshape(a.batch, a.seq_len)
    ids = ids.to(a.device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step():
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()

    step()  # warm-up
    times = []
    for _ in range(a.steps):
        sync(a.device)
        t0 = time.perf_counter()
        step()
        sync(a.device)
        times.append(time.perf_counter() - t0)
    train_s = statistics.median(times)

    model.eval()
    with torch.no_grad():
        prompt = ids[:1]
        sync(a.device)
        t0 = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True)
        sync(a.device)
        prefill_s = time.perf_counter() - t0
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(a.decode_tokens):
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        sync(a.device)
        decode_s = time.perf_counter() - t0
    if a.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
        peak_kind = "cuda max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_kind = "process max RSS"
    return {
        "shape": a.shape, "batch_size": a.batch, "seq_len": a.seq_len, "quant": a.quant,
        "dtype": a.dtype, "grad_checkpoint": a.grad_checkpoint,
        "train_tokens_per_s": a.batch * a.seq_len / train_s,
        "train_step_s": train_s,
        "prefill_tokens_per_s": a.seq_len / prefill_s,
        "decode_tokens_per_s": a.decode_tokens / decode_s,
        "peak_mib": peak,
        "peak_kind": peak_kind,
        "adapter": f"torch {torch.__version__} on {a.device} ({torch.get_num_threads()} threads)",
    }


def main():
    torch_only = "--torch-only" in sys.argv  # internal: one torch run in a fresh process
    if torch_only:
        sys.argv.remove("--torch-only")
    a = parse_args()
    if torch_only:
        print(json.dumps(run_torch(a)))
        return
    rows = []
    for r in range(a.rounds):
        w = run_wgtune(a)
        print(f"round {r + 1} wgtune: {json.dumps(w)}", file=sys.stderr)
        # A fresh process per measurement, so that torch's peak RSS is this run's own.
        out = subprocess.run([sys.executable, __file__, "--torch-only"] + sys.argv[1:],
                             check=True, capture_output=True, text=True).stdout
        t = json.loads(out.strip().splitlines()[-1])
        print(f"round {r + 1} torch:  {json.dumps(t)}", file=sys.stderr)
        rows.append((w, t))
    keys = ["train_tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s"]
    print(f"shape {a.shape}, batch {a.batch}, seq {a.seq_len}, quant {a.quant}, "
          f"targets {a.targets}, r {a.rank}, grad_checkpoint {a.grad_checkpoint}")
    print(f"wgtune: {rows[0][0]['adapter']}; torch: {rows[0][1]['adapter']}")
    print(f"{'round':<6} {'figure':<22} {'wgtune':>12} {'torch':>12} {'ratio':>8}")
    for i, (w, t) in enumerate(rows):
        for k in keys:
            print(f"{i + 1:<6} {k:<22} {w[k]:>12.2f} {t[k]:>12.2f} {w[k] / t[k]:>8.3f}")
        print(f"{i + 1:<6} {'peak MiB':<22} {w['peak_gpu_mib']:>12.1f} {t['peak_mib']:>12.1f}"
              f"   (torch: {t['peak_kind']})")
    summary = {
        "wgtune": rows[-1][0], "torch": rows[-1][1],
        "ratio": {k: rows[-1][0][k] / rows[-1][1][k] for k in keys},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""Generate the LoRA / QLoRA (PEFT) training reference fixtures with the real Python stack.

Run it from the repository root with the reference venv (versions in requirements.txt here),
after make_fixtures.py has written tests/fixtures/models/tiny:

    /root/refvenv/bin/python tests/reference/make_peft_fixtures.py

CPU only, well under a minute. Deterministic: torch runs on one thread, every random draw is
seeded, and the script re-executes itself with PYTHONHASHSEED=0 (PEFT writes a set-valued
`target_modules` to adapter_config.json as `list(set)`, whose order depends on the string hash
seed), so a second run on the same machine writes byte-identical files. (On another CPU torch's
f32 reductions may round differently: a rerun on an AMD EPYC moved the ten-step parameters and
grad norms by up to 1.5e-5 of each tensor's largest value, the gradients by 1.4e-6.) Do not hand-edit the outputs; change this
script and rerun it.

Base model: tests/fixtures/models/tiny (n_embd 64, 4 heads, 2 layers, n_positions 128, vocab
1000, F32, tied head), loaded by transformers in float32 with attn_implementation="eager" and
resid_pdrop = embd_pdrop = attn_pdrop = 0 (config override at load time), in eval() mode
throughout (LoRA dropout is 0, so train() would change nothing). It is loaded by the relative
path "tests/fixtures/models/tiny" (the script chdirs to the repository root), which is what
PEFT records as base_model_name_or_path.

Cases (one directory each under tests/fixtures/peft/):

  attn_r4         LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn"],
                  fan_in_fan_out=True, bias="none", task_type="CAUSAL_LM"); f32 base.
  all_r8_rslora   r=8, lora_alpha=16, target_modules=["c_attn", "c_proj", "c_fc"] (c_proj matches
                  attn.c_proj and mlp.c_proj), use_rslora=True (scale 16/sqrt(8)),
                  fan_in_fan_out=True; f32 base.
  all_linear_nf4  r=4, lora_alpha=16, target_modules="all-linear" (fan_in_fan_out left at its
                  default False: the quantized layers are bitsandbytes Linear4bit, i.e.
                  nn.Linear [out,in], not Conv1D); base = tiny loaded with
                  BitsAndBytesConfig(load_in_4bit, nf4, blocksize 64, compute dtype float32, no
                  double quant), device_map="cpu". PEFT expands "all-linear" to the full names of
                  every Linear/Conv1D module except the output embedding (lm_head), and writes
                  those full names as target_modules.

For every case: torch.manual_seed(seed) then get_peft_model (so lora_A has PEFT's seeded
kaiming-uniform init, U(-1/sqrt(in), 1/sqrt(in))); then every lora_B is overwritten, in
named_parameters order, by torch.randn(shape, generator=Generator().manual_seed(seed + 1000))
* 0.05 (non-zero, so that the gradients reach A too).

Data: two batches, B=2, T=24, ids drawn by torch.randint(0, 999) from one seeded generator
(batch 0 then batch 1). Batch 1's second sequence is right-padded by 6 (id 999, attention_mask
0). labels = ids, with -100 at padded positions and at the first 5 ("prompt") positions of each
sequence. Loss = model(input_ids, attention_mask=..., labels=...).loss (transformers' causal LM
loss: position t predicts label t+1; mean over all non-ignored shifted tokens of the batch).

Training: torch.optim.AdamW(lora params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
weight_decay=0.01, foreach=False (the CPU default anyway)), constant LR; before each step
torch.nn.utils.clip_grad_norm_(params, 1.0) (total L2 norm over all LoRA grads; grads are
multiplied by min(1, 1/(total + 1e-6))). Ten steps from the initial adapter on batches
0, 1, 0, 1, ...; zero_grad(set_to_none=True) before each forward.

Outputs (all under tests/fixtures/peft/):

<case>/adapter_init/{adapter_config.json, adapter_model.safetensors}
    The initial adapter, written by PeftModel.save_pretrained (PEFT also writes a generic
    README.md model card; it is deleted here).
<case>/adapter_final/{adapter_config.json, adapter_model.safetensors}
    The adapter after the ten steps, same writer. The script checks that
    PeftModel.from_pretrained(fresh base, adapter_final) reproduces logits_final, and that
    PeftModel.from_pretrained(fresh base, adapter_init) reproduces loss0.
<case>/reference.safetensors
    batch{k}.input_ids       i64 [2,24]   k = 0, 1
    batch{k}.attention_mask  i64 [2,24]
    batch{k}.labels          i64 [2,24]
    loss0                    f32 [1]      loss of batch0 with the initial adapter
    grad.<key>               f32          its gradient for every LoRA parameter; <key> is the PEFT
                                          save key, e.g.
                                          base_model.model.transformer.h.0.attn.c_attn.lora_A.weight
                                          (A [r,in], B [out,r])
    steps.loss               f32 [10]     loss of each training step, before its update
    steps.grad_norm          f32 [10]     total norm returned by clip_grad_norm_ (before clipping)
    final.<key>              f32          parameters after the ten steps (= adapter_final)
    logits_final             f32 [2,24,1000]  logits of batch0 (with its attention_mask) with the
                                          final adapter
    merged_logits            f32 [2,24,1000]  (attn_r4 only) logits of batch0 from
                                          merge_and_unload() of the final model
attn_r4/merged/{config.json, model.safetensors}
    The merged model (merge_and_unload, then save_pretrained; written only if under 800 KB;
    generation_config.json deleted). Its config's dropout probabilities are restored to those of
    models/tiny/config.json, so the config equals tiny's. The script checks that loading it
    reproduces merged_logits.
all_linear_nf4/all_linear_modules.json
    {"nf4": [...], "f32": [...]}: the sorted module names "all-linear" selects on the 4-bit
    model and on the f32 model (tests/train/peft.rs all_linear_selects_the_modules_peft_selects).
print_trainable.json
    {"<case>": line, ..., "gpt2_small_c_attn_r8": line}: the exact line printed by
    PeftModel.print_trainable_parameters() (stdout captured, newline stripped) for each case and
    for a randomly initialised GPT2LMHeadModel(GPT2Config()) with r=8, alpha=16, target c_attn.
"""

import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

import bitsandbytes  # noqa: E402
import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.numpy import save_file as np_save_file  # noqa: E402
from safetensors.torch import load_file as torch_load_file  # noqa: E402
from transformers import BitsAndBytesConfig, GPT2Config, GPT2LMHeadModel  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.chdir(REPO)
TINY = "tests/fixtures/models/tiny"  # relative: PEFT records it as base_model_name_or_path
OUT = os.path.join("tests", "fixtures", "peft")
f32 = np.float32

B, T, PROMPT, PAD_ID, PAD_N = 2, 24, 5, 999, 6
DATA_SEED = 4242
N_STEPS = 10
LR, BETAS, EPS, WD, MAX_NORM = 1e-2, (0.9, 0.999), 1e-8, 0.01, 1.0
MERGED_MAX_BYTES = 800_000
GPT2_SMALL_EXPECTED = "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364"

CASES = [
    (
        "attn_r4",
        11,
        False,
        dict(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True),
    ),
    (
        "all_r8_rslora",
        12,
        False,
        dict(r=8, lora_alpha=16, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True, use_rslora=True),
    ),
    (
        "all_linear_nf4",
        13,
        True,
        dict(r=4, lora_alpha=16, target_modules="all-linear"),
    ),
]


def info(msg):
    print(msg, flush=True)


def load_base(nf4):
    cfg = GPT2Config.from_pretrained(TINY, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    kw = {}
    if nf4:
        kw = dict(
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.float32,
                bnb_4bit_use_double_quant=False,
            ),
            device_map="cpu",
        )
    m = GPT2LMHeadModel.from_pretrained(TINY, config=cfg, dtype=torch.float32, attn_implementation="eager", **kw)
    if nf4:
        for blk in m.transformer.h:
            for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                lin = blk.get_submodule(name)
                assert isinstance(lin, bitsandbytes.nn.Linear4bit), type(lin)
                qs = lin.weight.quant_state
                assert qs.blocksize == 64 and qs.quant_type == "nf4" and not qs.nested
    return m.eval()


def lora_config(kw):
    return LoraConfig(lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", **kw)


def make_batches():
    g = torch.Generator().manual_seed(DATA_SEED)
    batches = []
    for k in range(2):
        ids = torch.randint(0, PAD_ID, (B, T), generator=g)
        mask = torch.ones(B, T, dtype=torch.int64)
        if k == 1:
            ids[1, -PAD_N:] = PAD_ID
            mask[1, -PAD_N:] = 0
        labels = ids.clone()
        labels[mask == 0] = -100
        labels[:, :PROMPT] = -100
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return batches


def manual_loss(logits, labels):
    lab = labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), lab, ignore_index=-100)


def save_key(name):
    # named_parameters: base_model.model....lora_A.default.weight -> save key without the adapter name
    assert ".default." in name, name
    return name.replace(".default.", ".")


def save_adapter(pm, d):
    shutil.rmtree(d, ignore_errors=True)
    pm.save_pretrained(d)
    readme = os.path.join(d, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    assert sorted(os.listdir(d)) == ["adapter_config.json", "adapter_model.safetensors"], os.listdir(d)


def trainable_line(pm):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def logits_of(model, b):
    with torch.no_grad():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(dp, f)) for dp, _dn, fns in os.walk(d) for f in fns)


def run_case(name, seed, nf4, kw, batches):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    base = load_base(nf4)
    torch.manual_seed(seed)
    pm = get_peft_model(base, lora_config(kw))
    pm.peft_config["default"].base_model_name_or_path = TINY
    pm.eval()
    line = trainable_line(pm)

    named = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    assert named and all(".lora_A." in n or ".lora_B." in n for n, _ in named), [n for n, _ in named]
    keys = [save_key(n) for n, _ in named]
    params = [p for _, p in named]
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for n, p in named:
            if ".lora_B." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    init = {k: p.detach().clone() for k, p in zip(keys, params)}

    save_adapter(pm, os.path.join(d, "adapter_init"))
    saved = torch_load_file(os.path.join(d, "adapter_init", "adapter_model.safetensors"))
    assert sorted(saved) == sorted(keys), (sorted(saved), sorted(keys))
    assert all(torch.equal(saved[k], init[k]) for k in keys)

    tensors = {}
    for k, b in enumerate(batches):
        for f in ("input_ids", "attention_mask", "labels"):
            tensors[f"batch{k}.{f}"] = b[f].numpy().astype(np.int64)

    # one gradient on batch0 from the initial adapter
    b0 = batches[0]
    pm.zero_grad(set_to_none=True)
    out = pm(**b0)
    out.loss.backward()
    loss0 = out.loss.detach().float()
    ml = float(manual_loss(out.logits.detach().float(), b0["labels"]))
    assert abs(ml - float(loss0)) < 1e-6, (ml, float(loss0))
    tensors["loss0"] = loss0.reshape(1).numpy().astype(f32)
    grad0 = {}
    for k, p in zip(keys, params):
        assert p.grad is not None and float(p.grad.abs().max()) > 0, f"no gradient for {k}"
        grad0[k] = p.grad.detach().clone()
        tensors[f"grad.{k}"] = grad0[k].numpy().astype(f32)

    # ten AdamW steps with global-norm clipping, alternating batch0 / batch1
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, foreach=False)
    losses, norms = [], []
    for s in range(N_STEPS):
        b = batches[s % 2]
        opt.zero_grad(set_to_none=True)
        loss = pm(**b).loss
        loss.backward()
        if s == 0:
            assert torch.equal(loss.detach(), loss0.reshape(loss.shape))
            assert all(torch.equal(p.grad, grad0[k]) for k, p in zip(keys, params))
        gn = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
        opt.step()
        losses.append(float(loss))
        norms.append(float(gn))
    tensors["steps.loss"] = np.array(losses, f32)
    tensors["steps.grad_norm"] = np.array(norms, f32)
    for k, p in zip(keys, params):
        tensors[f"final.{k}"] = p.detach().numpy().astype(f32).copy()
    logits_final = logits_of(pm, b0)
    tensors["logits_final"] = logits_final.numpy().astype(f32)

    save_adapter(pm, os.path.join(d, "adapter_final"))
    saved = torch_load_file(os.path.join(d, "adapter_final", "adapter_model.safetensors"))
    assert sorted(saved) == sorted(keys) and all(np.array_equal(saved[k].numpy(), tensors[f"final.{k}"]) for k in keys)

    # reload checks
    re_final = PeftModel.from_pretrained(load_base(nf4), os.path.join(d, "adapter_final")).eval()
    reload_diff = float((logits_of(re_final, b0) - logits_final).abs().max())
    assert reload_diff <= 1e-6, f"{name}: adapter_final reload differs by {reload_diff}"
    re_init = PeftModel.from_pretrained(load_base(nf4), os.path.join(d, "adapter_init")).eval()
    with torch.no_grad():
        re_loss0 = float(re_init(**b0).loss)
    assert abs(re_loss0 - float(loss0)) <= 1e-6, (re_loss0, float(loss0))

    summary = {
        "line": line,
        "loss0": round(float(loss0), 6),
        "losses": [round(x, 4) for x in losses],
        "grad_norms": [round(x, 4) for x in norms],
        "reload_diff": reload_diff,
    }

    if name == "attn_r4":
        merged = pm.merge_and_unload()
        merged_logits = logits_of(merged, b0)
        diff = float((merged_logits - logits_final).abs().max())
        assert diff < 1e-4, f"merged vs unmerged logits: {diff}"
        summary["merged_vs_unmerged"] = diff
        tensors["merged_logits"] = merged_logits.numpy().astype(f32)
        md = os.path.join(d, "merged")
        orig = GPT2Config.from_pretrained(TINY)
        for attr in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            setattr(merged.config, attr, getattr(orig, attr))
        merged.save_pretrained(md)
        gc = os.path.join(md, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)
        size = dir_bytes(md)
        if size >= MERGED_MAX_BYTES:
            shutil.rmtree(md)
            summary["merged_dir"] = f"skipped ({size} bytes)"
        else:
            assert sorted(os.listdir(md)) == ["config.json", "model.safetensors"], os.listdir(md)
            with open(os.path.join(md, "config.json")) as f1, open(os.path.join(TINY, "config.json")) as f2:
                assert json.load(f1) == json.load(f2), "merged config differs from tiny's"
            cfg = GPT2Config.from_pretrained(md, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
            rm = GPT2LMHeadModel.from_pretrained(md, config=cfg, dtype=torch.float32, attn_implementation="eager")
            assert torch.equal(logits_of(rm.eval(), b0), merged_logits), "merged reload differs"
            summary["merged_dir"] = f"{size} bytes"

    if nf4:
        sel_nf4 = sorted(pm.peft_config["default"].target_modules)
        f32_pm = get_peft_model(load_base(False), lora_config(kw))
        sel_f32 = sorted(f32_pm.peft_config["default"].target_modules)
        with open(os.path.join(d, "all_linear_modules.json"), "w", newline="\n") as f:
            f.write(json.dumps({"nf4": sel_nf4, "f32": sel_f32}, indent=1) + "\n")
        summary["all_linear"] = sel_nf4

    meta = {
        "info": (
            f"generator=tests/reference/make_peft_fixtures.py; case={name}; torch={torch.__version__}; "
            f"transformers={transformers.__version__}; peft={peft.__version__}; "
            f"bitsandbytes={bitsandbytes.__version__}; torch_threads={torch.get_num_threads()}"
        )
    }
    np_save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(d, "reference.safetensors"), metadata=meta)
    info(f"  {name}: {json.dumps(summary)}")
    return line


def gpt2_small_line():
    torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config()).eval()
    pm = get_peft_model(m, lora_config(dict(r=8, lora_alpha=16, target_modules=["c_attn"], fan_in_fan_out=True)))
    line = trainable_line(pm)
    assert line == GPT2_SMALL_EXPECTED, line
    return line


def main():
    info(
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"bitsandbytes {bitsandbytes.__version__}, numpy {np.__version__}"
    )
    os.makedirs(OUT, exist_ok=True)
    batches = make_batches()
    lines = {}
    for name, seed, nf4, kw in CASES:
        lines[name] = run_case(name, seed, nf4, kw, batches)
    lines["gpt2_small_c_attn_r8"] = gpt2_small_line()
    with open(os.path.join(OUT, "print_trainable.json"), "w", newline="\n") as f:
        f.write(json.dumps(lines, indent=1) + "\n")
    total = 0
    for dp, dn, fns in sorted(os.walk(OUT)):
        dn.sort()
        for fn in sorted(fns):
            p = os.path.join(dp, fn)
            total += os.path.getsize(p)
            info(f"  {p:70s} {os.path.getsize(p):9d}")
    info(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generate the parity fixtures: references that fail when wgtune's optimizer, default QLoRA
path, dropout or merge is wrong (issue 15, item 1).

Run it from the repository root with the reference venv (versions in requirements.txt here),
after make_fixtures.py and make_peft_fixtures.py have written tests/fixtures/models/tiny and
tests/fixtures/peft:

    /work/ref/bin/python tests/reference/make_parity_fixtures.py

CPU only, about half a minute. Deterministic on one machine (one torch thread, seeded draws,
PYTHONHASHSEED=0 through make_peft_fixtures); on another CPU, torch's f32 reductions may round
differently (their SIMD width differs), which moves the last bits (we saw up to 1.5e-5 relative
in ten-step parameters): the Rust tests' bounds leave room for that. Do not hand-edit the outputs;
change this script and rerun it.

Shared with make_peft_fixtures.py (imported): the tiny model (f32, eager attention, resid /
embd / attn dropout 0, eval() mode throughout), the two batches (B=2, T=24, batch 1 right-padded
by 6, labels -100 on the first 5 positions and on padding), lora_B overwritten by
randn * 0.05 from Generator(seed + 1000) after get_peft_model (so that A gets gradients), and
torch.optim.AdamW(lr 1e-2, betas (0.9, 0.999), eps 1e-8, foreach=False) after
clip_grad_norm_(1.0), constant LR, batches 0, 1, 0, 1, ...

Cases (one directory each under tests/fixtures/parity/):

  decay           f32 base; LoraConfig(r=4, lora_alpha=8, target c_attn, fan_in_fan_out=True,
                  dropout 0); ten AdamW steps with weight_decay=1.0 (each step multiplies every
                  parameter by 1 - lr*wd = 0.99), and the same ten steps with weight_decay=0
                  (final_no_decay.*), so that a test can check that decay moves the result by far
                  more than its tolerance.
  default_nf4     wgtune's default training set-up: bitsandbytes NF4 base (Linear4bit,
                  blocksize 64, nf4, compute dtype float32, no double quant) with the token
                  embedding rounded to f16 and back (wgtune stores wte in f16 for every base but
                  f32; wte is tied to lm_head, so the head is rounded too); LoraConfig(r=8,
                  lora_alpha=16, lora_dropout=0.05, target c_attn) (`--rank 8 --alpha 16
                  --dropout 0.05 --targets c_attn`); seed 11. Dropout masks: wgtune's, supplied
                  to PEFT (below). One-step gradients and five AdamW steps (weight_decay 0.01).
  default_nf4_dq  the same with bnb_4bit_use_double_quant=True (`--quant nf4-dq`).
  merge_rslora    PEFT's merge_and_unload() on the f32 base of the adapter
                  peft/all_r8_rslora/adapter_final (rsLoRA, r 8, alpha 16: scale 16/sqrt(8);
                  c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj of both blocks).
  merge_nf4       merge_and_unload() on the f32 base (the original, unquantized weights) of
                  peft/all_linear_nf4/adapter_final, an adapter trained on the bitsandbytes NF4
                  base (all-linear, r 4, alpha 16). figures.json compares this with the other
                  meanings of "merging a QLoRA adapter" (below).

Dropout masks (default_nf4*). wgtune draws a LoRA dropout mask per (step, micro-batch, layer,
module) from a hash, not from torch's generator, so torch cannot draw the same masks; instead
this script computes wgtune's masks (the same hash, replicated here in numpy) and PEFT runs
with them: every adapted module's lora_dropout["default"] (an nn.Dropout) is replaced by a module
returning x * (mask / (1 - p)), torch's own dropout arithmetic with its Bernoulli draw replaced by
the supplied mask. The masks are saved too, so the Rust test first checks that wgtune draws
exactly these (a clear message if the hash or the seed derivation changes: rerun this script).
  step seed    s_step = SplitMix64(seed ^ (step + 1) * 0x9E3779B97F4A7C15) as u32
               (src/train/session.rs step_seed; seed = --seed = 42, step 0-based);
               micro-batch i adds i (one micro-batch here)
  module seed  fmix32(s ^ fmix32(4 * layer + module + 1)), module 0..3 = c_attn, attn.c_proj,
               mlp.c_fc, mlp.c_proj (src/model/adapter_ref.rs dropout_seed; MurmurHash3 fmix32)
  keep(i)      h = pcg(i ^ pcg(module seed)); f32(h >> 8) * 2^-24 >= p, with
               pcg(v) = ((w >> 22) ^ w), w = ((t >> ((t >> 28) + 4)) ^ t) * 277803737,
               t = v * 747796405 + 2891336453 (u32 arithmetic; shaders/lora.wgsl)
  i runs over the module's input (B, T, in) in row-major order.

Outputs:

parity/<case>/adapter_init/{adapter_config.json, adapter_model.safetensors}   (training cases)
    The initial adapter (PeftModel.save_pretrained, README.md deleted).
parity/<case>/reference.safetensors
  training cases:
    batch{k}.{input_ids, attention_mask, labels}  i64 [2,24]
    loss0, grad.<key>      (default_nf4*) loss of batch 0 from adapter_init and its gradients
                           (with step 0's masks); <key> is the PEFT save key
    steps.loss, steps.grad_norm   f32 [n]  each step's loss (before its update) and the total
                           norm clip_grad_norm_ returned
    final.<key>            the parameters after the n steps
    final_no_decay.<key>   (decay) after the same steps with weight_decay 0
    mask.step{s}.h.{l}.attn.c_attn  u8 [B*T, in] (default_nf4*) 1 = kept
  merge cases:
    merged.transformer.h.{l}.{attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj}.weight  f32 [in,out]
                           the targeted Conv1D weights of merge_and_unload()'s model (every other
                           tensor is the base's, checked here)
parity/<case>/figures.json   (default_nf4, merge_nf4) figures quoted in docs/testing.md:
    default_nf4: how far the f16-rounded embedding sits from the f32 one, on the NF4 model with
        adapter_init (max |logits diff| and losses on both batches; the gradients' largest
        difference relative to each tensor's largest gradient), and on a randomly initialised
        GPT-2 small (f32; logits and losses).
    merge_nf4: max |logits diff| and loss on batch 0 of (a) the trained QLoRA model (NF4 base +
        adapter, what training optimised), (b) the merge into the original f32 weights (what
        wgtune and this fixture do), (c) the merge into the NF4-dequantized weights, kept in f32,
        (d) PEFT's merge_and_unload() on the 4-bit model (dequantize, add, quantize again to NF4).
"""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import make_peft_fixtures as pf  # noqa: E402  (re-executes with PYTHONHASHSEED=0, chdirs to the repo)
import make_nf4_fixtures as nf4ref  # noqa: E402

import bitsandbytes  # noqa: E402
import bitsandbytes.functional as BF  # noqa: E402
import numpy as np  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.numpy import save_file as np_save_file  # noqa: E402
from transformers import BitsAndBytesConfig, GPT2Config, GPT2LMHeadModel  # noqa: E402

OUT = os.path.join("tests", "fixtures", "parity")
f32 = np.float32
M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
RUN_SEED = 42  # wgtune's --seed default
MODULES = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]  # wgtune's Module order


def info(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- wgtune's dropout masks


def step_seed(seed, step):
    z = (seed ^ ((step + 1) * 0x9E3779B97F4A7C15)) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return (z ^ (z >> 31)) & M32


def fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def dropout_seed(seed, layer, module):
    return fmix32(seed ^ fmix32(4 * layer + MODULES.index(module) + 1))


def pcg(v):
    v = np.asarray(v, dtype=np.uint64)
    t = (v * 747796405 + 2891336453) & M32
    w = (((t >> ((t >> 28) + 4)) ^ t) * 277803737) & M32
    return ((w >> 22) ^ w) & M32


def keep_mask(n, seed, p):
    i = np.arange(n, dtype=np.uint64)
    h = pcg(i ^ pcg(np.uint64(seed)))
    u = (h >> 8).astype(f32) * f32(1.0 / 16777216.0)
    return u >= f32(p)


class SuppliedMask(torch.nn.Module):
    """nn.Dropout(p) with its Bernoulli draw replaced by wgtune's mask for the current step."""

    def __init__(self, state, layer, module, p):
        super().__init__()
        self.state, self.layer, self.module, self.p = state, layer, module, p

    def forward(self, x):
        seed = dropout_seed(step_seed(RUN_SEED, self.state["step"]), self.layer, self.module)
        keep = keep_mask(x.numel(), seed, self.p).reshape(x.shape)
        self.state["masks"][(self.state["step"], self.layer, self.module)] = keep
        noise = torch.from_numpy(keep.astype(f32)) / (1.0 - self.p)  # torch: noise.div_(1 - p)
        return x * noise


def supply_masks(pm, p):
    state = {"step": 0, "masks": {}}
    n = 0
    for name, mod in pm.named_modules():
        if not hasattr(mod, "lora_dropout") or "default" not in mod.lora_dropout:
            continue
        assert isinstance(mod.lora_dropout["default"], torch.nn.Dropout), type(mod.lora_dropout["default"])
        assert mod.lora_dropout["default"].p == p
        layer = int(name.split(".h.")[1].split(".")[0])
        module = name.split(f".h.{layer}.")[1]
        mod.lora_dropout["default"] = SuppliedMask(state, layer, module, p)
        n += 1
    assert n > 0
    return state


# ---------------------------------------------------------------- models


def load_base(quant):
    """tiny as make_peft_fixtures loads it; quant is "f32", "nf4" or "nf4-dq"."""
    cfg = GPT2Config.from_pretrained(pf.TINY, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    kw = {}
    if quant != "f32":
        dq = quant == "nf4-dq"
        kw = dict(
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.float32,
                bnb_4bit_use_double_quant=dq,
            ),
            device_map="cpu",
        )
    m = GPT2LMHeadModel.from_pretrained(pf.TINY, config=cfg, dtype=torch.float32, attn_implementation="eager", **kw)
    if quant != "f32":
        code8 = nf4ref.np_dynamic_map()
        for blk in m.transformer.h:
            for name in MODULES:
                lin = blk.get_submodule(name)
                assert isinstance(lin, bitsandbytes.nn.Linear4bit), type(lin)
                qs = lin.weight.quant_state
                assert qs.blocksize == 64 and qs.quant_type == "nf4" and qs.nested == dq
                # bitsandbytes' CPU dequantize is right when rows are multiples of 64 (they
                # are here); check it against code[nibble] * absmax anyway.
                if dq:
                    am = nf4ref.np_dequant_absmax_dq(
                        qs.absmax.numpy(), qs.offset.reshape(1).numpy()[0], qs.state2.absmax.numpy(), code8
                    )
                else:
                    am = qs.absmax.numpy()
                got = BF.dequantize_4bit(lin.weight.data, qs).numpy().reshape(-1)
                want = nf4ref.np_dequant_nf4(lin.weight.data.numpy().reshape(-1), am, got.size)
                assert np.array_equal(nf4ref.u32(got), nf4ref.u32(want)), name
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr(), "lm_head not tied"
    return m.eval()


def round_wte_f16(m):
    with torch.no_grad():
        w = m.transformer.wte.weight
        w.copy_(w.half().float())
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()


def lora_config(kw):
    return LoraConfig(bias="none", task_type="CAUSAL_LM", **kw)


def peft_model(base, seed, kw):
    torch.manual_seed(seed)
    pm = get_peft_model(base, lora_config(kw))
    pm.peft_config["default"].base_model_name_or_path = pf.TINY
    pm.eval()
    named = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    assert named and all(".lora_A." in n or ".lora_B." in n for n, _ in named)
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for n, p in named:
            if ".lora_B." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return pm, [pf.save_key(n) for n, _ in named], [p for _, p in named]


def grads_of(pm, keys, params, b):
    pm.zero_grad(set_to_none=True)
    out = pm(**b)
    out.loss.backward()
    return float(out.loss), {k: p.grad.detach().clone() for k, p in zip(keys, params)}


def train(pm, keys, params, batches, n_steps, wd, state=None):
    opt = torch.optim.AdamW(params, lr=pf.LR, betas=pf.BETAS, eps=pf.EPS, weight_decay=wd, foreach=False)
    losses, norms = [], []
    for s in range(n_steps):
        if state is not None:
            state["step"] = s
        opt.zero_grad(set_to_none=True)
        loss = pm(**batches[s % 2]).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, pf.MAX_NORM)))
        opt.step()
        losses.append(float(loss))
    return losses, norms, {k: p.detach().numpy().astype(f32).copy() for k, p in zip(keys, params)}


def batch_tensors(batches):
    t = {}
    for k, b in enumerate(batches):
        for f in ("input_ids", "attention_mask", "labels"):
            t[f"batch{k}.{f}"] = b[f].numpy().astype(np.int64)
    return t


def write(d, tensors, case):
    meta = {
        "info": (
            f"generator=tests/reference/make_parity_fixtures.py; case={case}; torch={torch.__version__}; "
            f"transformers={transformers.__version__}; peft={peft.__version__}; "
            f"bitsandbytes={bitsandbytes.__version__}; torch_threads={torch.get_num_threads()}"
        )
    }
    np_save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(d, "reference.safetensors"), metadata=meta)


def write_json(path, obj):
    with open(path, "w", newline="\n") as f:
        f.write(json.dumps(obj, indent=1) + "\n")


def fresh(case):
    d = os.path.join(OUT, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def rel(a, b):
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ---------------------------------------------------------------- cases


def decay_case(batches):
    d = fresh("decay")
    kw = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn"], fan_in_fan_out=True)
    wd, n = 1.0, 10
    pm, keys, params = peft_model(load_base("f32"), 21, kw)
    pf.save_adapter(pm, os.path.join(d, "adapter_init"))
    init = [p.detach().clone() for p in params]
    losses, norms, final = train(pm, keys, params, batches, n, wd)
    with torch.no_grad():
        for p, v in zip(params, init):
            p.copy_(v)
    _, _, final0 = train(pm, keys, params, batches, n, 0.0)
    t = batch_tensors(batches)
    t["steps.loss"] = np.array(losses, f32)
    t["steps.grad_norm"] = np.array(norms, f32)
    for k in keys:
        t[f"final.{k}"] = final[k]
        t[f"final_no_decay.{k}"] = final0[k]
    write(d, t, "decay")
    effect = {k: rel(final[k], final0[k]) for k in keys}
    info(f"  decay: wd {wd}, {n} steps; losses {[round(x, 4) for x in losses]}")
    info(f"  decay: max|final - final_no_decay| / max|final| per tensor: {min(effect.values()):.3e} .. {max(effect.values()):.3e}")


def default_case(case, quant, batches):
    d = fresh(case)
    p, n = 0.05, 5
    kw = dict(r=8, lora_alpha=16, lora_dropout=p, target_modules=["c_attn"])
    base = load_base(quant)
    figures = {}
    if quant == "nf4":
        # How far the f16-rounded embedding sits from the f32 one (same adapter, no dropout).
        ref, keys, params = peft_model(load_base(quant), 11, dict(kw, lora_dropout=0.0))
        l32 = [pf.logits_of(ref, b) for b in batches]
        loss32 = [float(ref(**b).loss) for b in batches]
        _, g32 = grads_of(ref, keys, params, batches[0])
        round_wte_f16(ref)
        l16 = [pf.logits_of(ref, b) for b in batches]
        loss16 = [float(ref(**b).loss) for b in batches]
        _, g16 = grads_of(ref, keys, params, batches[0])
        figures["f16_wte_vs_f32_wte"] = {
            "what": "NF4 base + adapter_init, no dropout: f16-rounded wte (and tied head) vs f32 wte",
            "max_abs_logits_diff": [float((a - b).abs().max()) for a, b in zip(l16, l32)],
            "max_abs_logits": [float(a.abs().max()) for a in l32],
            "loss_f32_wte": loss32,
            "loss_f16_wte": loss16,
            "grad_max_rel_diff": max(rel(g16[k], g32[k]) for k in keys),
        }
        del ref
        # The same on a randomly initialised GPT-2 small (transformers' init, f32 blocks): no
        # trained GPT-2 is reachable here, so this only shows how the rounding scales with width.
        torch.manual_seed(0)
        big = GPT2LMHeadModel(GPT2Config()).eval()
        b32 = [pf.logits_of(big, b) for b in batches]
        bl32 = [float(big(**b).loss) for b in batches]
        round_wte_f16(big)
        b16 = [pf.logits_of(big, b) for b in batches]
        bl16 = [float(big(**b).loss) for b in batches]
        figures["f16_wte_vs_f32_wte_gpt2_small_random_init"] = {
            "what": "GPT2LMHeadModel(GPT2Config()) after torch.manual_seed(0), f32, the same batches",
            "max_abs_logits_diff": [float((a - b).abs().max()) for a, b in zip(b16, b32)],
            "max_abs_logits": [float(a.abs().max()) for a in b32],
            "loss_f32_wte": bl32,
            "loss_f16_wte": bl16,
        }
        del big
    round_wte_f16(base)
    pm, keys, params = peft_model(base, 11, kw)
    state = supply_masks(pm, p)
    pf.save_adapter(pm, os.path.join(d, "adapter_init"))
    t = batch_tensors(batches)
    loss0, g0 = grads_of(pm, keys, params, batches[0])
    t["loss0"] = np.array([loss0], f32)
    for k in keys:
        assert float(g0[k].abs().max()) > 0, k
        t[f"grad.{k}"] = g0[k].numpy().astype(f32)
    losses, norms, final = train(pm, keys, params, batches, n, pf.WD, state)
    assert losses[0] == loss0
    t["steps.loss"] = np.array(losses, f32)
    t["steps.grad_norm"] = np.array(norms, f32)
    for k in keys:
        t[f"final.{k}"] = final[k]
    for (s, layer, module), keep in sorted(state["masks"].items()):
        t[f"mask.step{s}.h.{layer}.{module}"] = keep.reshape(-1, keep.shape[-1]).astype(np.uint8)
    write(d, t, case)
    if figures:
        write_json(os.path.join(d, "figures.json"), figures)
        info(f"  {case}: {json.dumps(figures)}")
    kept = np.mean([m.mean() for m in state["masks"].values()])
    info(f"  {case}: loss0 {loss0:.6f}; losses {[round(x, 4) for x in losses]}; keep rate {kept:.4f}")


def merged_tensors(merged, base_sd, targets):
    sd = merged.state_dict()
    out = {}
    for name, v in base_sd.items():
        got = sd[name]
        short = name.removeprefix("transformer.")
        if any(short == f"h.{l}.{m}.weight" for l, m in targets):
            assert not torch.equal(got, v), name
            out[f"merged.{name}"] = got.detach().numpy().astype(f32).copy()
        else:
            assert torch.equal(got, v), f"untargeted {name} changed"
    assert len(out) == len(targets)
    return out


def merge_case(case, adapter_case, batches):
    d = fresh(case)
    adapter = os.path.join("tests", "fixtures", "peft", adapter_case, "adapter_final")
    targets = [(l, m) for l in range(2) for m in MODULES]
    base_sd = {k: v.clone() for k, v in load_base("f32").state_dict().items()}
    merged = PeftModel.from_pretrained(load_base("f32"), adapter).eval().merge_and_unload()
    t = merged_tensors(merged, base_sd, targets)
    write(d, t, case)
    if adapter_case != "all_linear_nf4":
        return
    b0 = batches[0]

    def figure(model):
        with torch.no_grad():
            out = model(**b0)
        return out.logits.float(), float(out.loss)

    qlora, qlora_loss = figure(PeftModel.from_pretrained(load_base("nf4"), adapter).eval())
    into_orig, into_orig_loss = figure(merged)
    # The NF4 base's dequantized weights, kept in f32, plus the adapter's delta.
    deq = load_base("f32")
    nf4m = load_base("nf4")
    with torch.no_grad():
        for l in range(2):
            for m in MODULES:
                lin = nf4m.transformer.h[l].get_submodule(m)
                w = BF.dequantize_4bit(lin.weight.data, lin.weight.quant_state)  # [out, in]
                deq.transformer.h[l].get_submodule(m).weight.copy_(w.t())
    into_deq, into_deq_loss = figure(PeftModel.from_pretrained(deq, adapter).eval().merge_and_unload())
    requant, requant_loss = figure(PeftModel.from_pretrained(load_base("nf4"), adapter).eval().merge_and_unload())
    figures = {
        "what": "batch 0 logits of each meaning of merging the NF4-trained adapter, vs the trained QLoRA model",
        "qlora_model_loss": qlora_loss,
        "max_abs_logits": float(qlora.abs().max()),
        "into_original_f32": {"max_abs_logits_diff": float((into_orig - qlora).abs().max()), "loss": into_orig_loss},
        "into_dequantized_f32": {"max_abs_logits_diff": float((into_deq - qlora).abs().max()), "loss": into_deq_loss},
        "peft_4bit_merge_and_unload": {"max_abs_logits_diff": float((requant - qlora).abs().max()), "loss": requant_loss},
        "into_original_vs_peft_4bit": float((into_orig - requant).abs().max()),
    }
    write_json(os.path.join(d, "figures.json"), figures)
    info(f"  {case}: {json.dumps(figures)}")


def main():
    info(
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"bitsandbytes {bitsandbytes.__version__}, numpy {np.__version__}"
    )
    os.makedirs(OUT, exist_ok=True)
    batches = pf.make_batches()
    decay_case(batches)
    default_case("default_nf4", "nf4", batches)
    default_case("default_nf4_dq", "nf4-dq", batches)
    merge_case("merge_rslora", "all_r8_rslora", batches)
    merge_case("merge_nf4", "all_linear_nf4", batches)
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

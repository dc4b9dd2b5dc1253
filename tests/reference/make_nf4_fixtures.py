"""Generate the NF4 reference fixture with real bitsandbytes, after checking a NumPy port.

Run it (from the repository root) with the reference venv (see requirements.txt in this folder):

    /path/to/venv/bin/python tests/reference/make_nf4_fixtures.py

It runs on the CPU only; it takes about a minute, most of it the self-check.

It does two things:

1. Self-check. A pure-NumPy re-implementation of what bitsandbytes 0.50.x does on the CPU for
   `bitsandbytes.functional.quantize_4bit(w, blocksize=64, quant_type="nf4",
   compress_statistics=False/True)` is compared bit for bit with bitsandbytes on many random
   tensors (odd sizes, ties, zeros, all-zero blocks). The script stops if anything differs.
   The NumPy functions below are the spec that the Rust port follows:

   * `np_quantize_nf4`: NF4 4-bit quantisation (the pure-PyTorch "default" kernel in
     bitsandbytes/backends/default/ops.py; the CPU backend registers no quantize_4bit of its own).
   * `np_torch_mean_f32`: `absmax.mean()` (torch's cascade float32 sum, then / n).
   * `np_dynamic_map`: `create_dynamic_map(signed=True)`, the 256-entry code for the absmax.
   * `np_quantize_blockwise_8bit`: `quantize_blockwise(absmax - offset, blocksize=256)`, the
     native C++ CPU kernel (`quantize_cpu_impl` in csrc/cpu_ops.cpp, with its 65536-entry LUT).

2. Fixture. It writes tests/fixtures/nf4/nf4_reference.safetensors (tensor list at the end of
   this file, in `write_fixture`), and tests/fixtures/nf4/dq_extra.safetensors
   (`write_dq_extra`): bitsandbytes' double quantisation of longer absmax arrays (up to 11003
   blocks), of ones with all-zero 256-blocks and of ones where the kernel's reciprocal multiply
   matters; and torch's f32 mean of deterministic `hash_values` arrays of many lengths (so the
   cascade order of the sum is pinned down).
"""

import os
import sys

import numpy as np
import torch

torch.set_num_threads(1)  # torch's float32 sum (used by absmax.mean()) depends on the thread count

import bitsandbytes  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

f32 = np.float32
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_PATH = os.path.join(REPO, "tests", "fixtures", "nf4", "nf4_reference.safetensors")
DQ_EXTRA_PATH = os.path.join(REPO, "tests", "fixtures", "nf4", "dq_extra.safetensors")

# ----------------------------------------------------------------------------------------------
# NF4
# ----------------------------------------------------------------------------------------------

# bitsandbytes.functional.get_4bit_type("nf4"): these float literals, as float32, divided by
# max|.| = 1.0 (a no-op).
NF4_CODE = np.array(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=f32,
)
# (code[:-1] + code[1:]) / 2, in float32 (15 decision bounds)
NF4_BOUNDS = ((NF4_CODE[:-1] + NF4_CODE[1:]) / f32(2)).astype(f32)
ABSMAX_FLOOR = f32(1e-38)  # torch clamp(min=1e-38) on float32: a subnormal float32


def np_quantize_nf4(x, blocksize=64):
    """Returns (packed uint8 [ceil(n/2)], absmax f32 [ceil(n/blocksize)])."""
    x = np.ascontiguousarray(x, dtype=f32).reshape(-1)
    n = x.size
    rem = n % blocksize
    full = n - rem
    with np.errstate(all="ignore"):
        blocks = x[:full].reshape(-1, blocksize)
        absmax = np.abs(blocks).max(axis=1) if full else np.zeros(0, f32)
        # full blocks: x * (1 / max(absmax, 1e-38)); absmax itself is stored unclamped
        inv = (f32(1) / np.maximum(absmax, ABSMAX_FLOOR)).astype(f32)
        scaled = np.clip((blocks * inv[:, None]).astype(f32), f32(-1), f32(1)).reshape(-1)
        if rem:
            # tail block: x / max(absmax, 1e-38), a true division; the clamped absmax is stored
            am = np.maximum(np.abs(x[full:]).max(), ABSMAX_FLOOR).astype(f32)
            absmax = np.concatenate([absmax, np.array([am], f32)])
            tail = np.clip((x[full:] / am).astype(f32), f32(-1), f32(1))
            scaled = np.concatenate([scaled, tail])
    if scaled.size % 2:
        scaled = np.concatenate([scaled, np.zeros(1, f32)])  # pad value 0.0 -> nibble 7
    # torch.bucketize(right=False): index = #bounds strictly below the value (a value equal to a
    # bound goes to the lower code)
    q = np.searchsorted(NF4_BOUNDS, scaled, side="left").astype(np.uint8)
    packed = ((q[0::2] << 4) | q[1::2]).astype(np.uint8)  # element 2i: high nibble
    return packed, absmax.astype(f32)


def np_dequant_nf4(packed, absmax, n, blocksize=64):
    """code[nibble] * absmax[i // blocksize] in float32, high nibble first, flat blocks."""
    q = np.empty(packed.size * 2, np.uint8)
    q[0::2] = packed >> 4
    q[1::2] = packed & 0xF
    q = q[:n]
    return (NF4_CODE[q] * absmax[np.arange(n) // blocksize]).astype(f32)


# ----------------------------------------------------------------------------------------------
# torch float32 mean on CPU (aten/src/ATen/native/cpu/SumKernel.cpp cascade_sum, 1 thread)
# ----------------------------------------------------------------------------------------------


def _ceil_log2(x):
    return 1 if x <= 2 else int(x - 1).bit_length()


def _multi_row_sum(rows):
    """rows: [size, nrows, lanes] float32; returns [nrows, lanes] (all adds in float32)."""
    size, nrows, lanes = rows.shape
    num_levels = 4
    level_power = max(4, _ceil_log2(size) // num_levels)
    level_step = 1 << level_power
    level_mask = level_step - 1
    acc = np.zeros((num_levels, nrows, lanes), f32)
    i = 0
    while i + level_step <= size:
        for _ in range(level_step):
            acc[0] = acc[0] + rows[i]
            i += 1
        for j in range(1, num_levels):
            acc[j] = acc[j] + acc[j - 1]
            acc[j - 1] = 0
            if i & (level_mask << (j * level_power)):
                break
    while i < size:
        acc[0] = acc[0] + rows[i]
        i += 1
    for j in range(1, num_levels):
        acc[0] = acc[0] + acc[j]
    return acc[0]


def _row_sum(elems):
    """elems: [size, lanes] float32 -> [lanes]; ilp_factor 4."""
    size, lanes = elems.shape
    size_ilp = size // 4
    partial = _multi_row_sum(elems[: size_ilp * 4].reshape(size_ilp, 4, lanes))
    for i in range(size_ilp * 4, size):
        partial[0] = partial[0] + elems[i]
    for k in range(1, 4):
        partial[0] = partial[0] + partial[k]
    return partial[0]


def np_torch_sum_f32(x, lanes):
    """torch.sum of a contiguous 1-D float32 CPU tensor, one thread. lanes =
    Vectorized<float>::size() of the sum kernel: 8 on x86-64 (AVX2 and DEFAULT builds; the sum
    kernel has no AVX512 build, so AVX512 machines use the AVX2 one too)."""
    x = np.ascontiguousarray(x, dtype=f32).reshape(-1)
    n = x.size
    if n >= lanes:  # vectorized_inner_sum
        nvec = n // lanes
        vacc = _row_sum(x[: nvec * lanes].reshape(nvec, lanes))
        acc = f32(0)
        for k in range(nvec * lanes, n):  # scalar tail first ...
            acc = f32(acc + x[k])
        for k in range(lanes):  # ... then the lanes in order
            acc = f32(acc + vacc[k])
    else:  # scalar_outer_sum -> row_sum over scalars
        acc = _row_sum(x.reshape(n, 1))[0] if n else f32(0)
    return f32(f32(0) + acc)  # stored into the zero-filled output


def np_torch_mean_f32(x, lanes):
    """mean = sum(x) / float32(n), one float32 division (at::mean_out on CPU: sum_out().div_(n))."""
    return f32(np_torch_sum_f32(x, lanes) / f32(np.asarray(x).size))


# ----------------------------------------------------------------------------------------------
# 8-bit dynamic map and blockwise 8-bit quantisation (double quantisation of absmax)
# ----------------------------------------------------------------------------------------------


def _fma_f32(a, b, c):
    """float32 fma(a, b, c), correctly rounded (via exact rational arithmetic)."""
    from fractions import Fraction

    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    d = f32(float(exact))
    cands = [np.nextafter(d, f32(-np.inf)), d, np.nextafter(d, f32(np.inf))]
    return min(cands, key=lambda v: (abs(Fraction(float(v)) - exact), int(np.array(v, f32).view(np.uint32)) & 1))


def _torch_linspace_f32(start, end, steps):
    """torch.linspace(start, end, steps, dtype=float32) on CPU: step = (end-start)/(steps-1) in f32;
    idx < steps//2: fma(step, idx, start); else fma(-step, steps-1-idx, end)."""
    start, end = f32(start), f32(end)
    step = f32(f32(end - start) / f32(steps - 1))
    half = steps // 2
    out = []
    for idx in range(steps):
        if idx < half:
            out.append(_fma_f32(step, f32(idx), start))
        else:
            out.append(_fma_f32(-step, f32(steps - 1 - idx), end))
    return np.array(out, f32)


def np_dynamic_map():
    """create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)."""
    data = []
    for i in range(7):
        b = _torch_linspace_f32(0.1, 1.0, 2**i + 1)
        means = ((b[:-1] + b[1:]) / f32(2)).astype(f32)
        scale = f32(10.0 ** (-6 + i))  # the Python scalar is rounded to float32 first
        data += list((scale * means).astype(f32))
        data += list((-scale * means).astype(f32))
    data += [f32(0), f32(1)]
    assert len(data) == 256
    return np.sort(np.array(data, f32))


def np_build_lut(code):
    """csrc/cpu_ops.cpp build_quantize_lut: lut[i] = #(midpoints < -1 + (2*i)/65535)."""
    mids = (f32(0.5) * (code[:-1] + code[1:]).astype(f32)).astype(f32)
    i = np.arange(65536, dtype=f32)
    vals = (f32(-1) + ((f32(2) * i).astype(f32) / f32(65535)).astype(f32)).astype(f32)
    return np.searchsorted(mids, vals, side="left").astype(np.uint8)


def np_quantize_blockwise_8bit(x, code, blocksize=256):
    """csrc/cpu_ops.cpp quantize_cpu_impl<float> (the x86 scalar path)."""
    x = np.ascontiguousarray(x, dtype=f32).reshape(-1)
    lut = np_build_lut(code)
    n = x.size
    nb = -(-n // blocksize)
    absmax = np.zeros(nb, f32)
    out = np.zeros(n, np.uint8)
    for b in range(nb):
        v = x[b * blocksize : (b + 1) * blocksize]
        am = f32(np.abs(v).max())
        absmax[b] = am
        if am == 0:
            continue  # an all-zero block stores index 0 (code[0] = -1.0), not the zero code
        inv = f32(f32(1) / am)
        t = np.clip((v * inv).astype(f32), f32(-1), f32(1))
        t = ((t + f32(1)).astype(f32) * f32(0.5)).astype(f32)
        idx = ((t * f32(65535)).astype(f32) + f32(0.5)).astype(f32)
        out[b * blocksize : (b + 1) * blocksize] = lut[idx.astype(np.uint16)]  # truncation
    return out, absmax


def np_quantize_nf4_dq(x, lanes, blocksize=64):
    packed, absmax = np_quantize_nf4(x, blocksize)
    offset = np_torch_mean_f32(absmax, lanes)
    q8, absmax2 = np_quantize_blockwise_8bit((absmax - offset).astype(f32), np_dynamic_map(), 256)
    return packed, q8, offset, absmax2


def np_dequant_absmax_dq(q8, offset, absmax2, code8):
    """dequantize_blockwise(q8, state2) + offset: code8[q] * absmax2[i // 256], then + offset."""
    a = (code8[q8] * absmax2[np.arange(q8.size) // 256]).astype(f32)
    return (a + offset).astype(f32)


# ----------------------------------------------------------------------------------------------
# self-check against bitsandbytes
# ----------------------------------------------------------------------------------------------


def bnb_nf4(w, compress):
    packed, st = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=compress)
    return packed, st


def u32(a):
    return np.ascontiguousarray(np.asarray(a, f32)).view(np.uint32)


def check_one(x, lanes, label):
    xt = torch.from_numpy(np.ascontiguousarray(x, f32))
    p_ref, a_ref = np_quantize_nf4(x)
    packed, st = bnb_nf4(xt, False)
    assert packed.dtype == torch.uint8 and tuple(packed.shape) == ((x.size + 1) // 2, 1), (label, packed.shape)
    assert np.array_equal(packed.numpy().reshape(-1), p_ref), f"packed differs: {label}"
    assert np.array_equal(u32(st.absmax.numpy()), u32(a_ref)), f"absmax differs: {label}"
    # flat-block reference dequantisation vs bnb's pure-PyTorch dequant (flat blocks, right shape)
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

    dq_bnb = _dequantize_4bit_compute.__wrapped__(packed.reshape(-1), st.absmax, st.code, 64, (x.size,), torch.float32)
    assert np.array_equal(u32(dq_bnb.numpy()), u32(np_dequant_nf4(p_ref, a_ref, x.size))), f"dequant: {label}"

    packed2, st2 = bnb_nf4(xt, True)
    p2, q8, off, am2 = np_quantize_nf4_dq(x, lanes)
    assert np.array_equal(packed2.numpy().reshape(-1), p2), f"dq packed differs: {label}"
    assert u32(st2.offset.numpy().reshape(1))[0] == u32(np.array([off]))[0], f"offset differs: {label}"
    assert np.array_equal(st2.absmax.numpy(), q8), f"absmax_q differs: {label}"
    assert np.array_equal(u32(st2.state2.absmax.numpy()), u32(am2)), f"state2 absmax differs: {label}"
    assert st2.state2.blocksize == 256
    rec = F.dequantize_blockwise(st2.absmax, st2.state2) + st2.offset
    assert np.array_equal(u32(rec.numpy()), u32(np_dequant_absmax_dq(q8, off, am2, np_dynamic_map()))), label


def self_check(lanes):
    code8 = np_dynamic_map()
    assert np.array_equal(u32(F.create_dynamic_map(signed=True).numpy()), u32(code8)), "dynamic map"
    assert np.array_equal(u32(F.get_4bit_type("nf4", device="cpu").numpy()), u32(NF4_CODE)), "nf4 code"

    # torch mean emulation, many lengths (including > 32768, which uses the serial path here
    # only because torch.set_num_threads(1))
    g = np.random.default_rng(1)
    for n in list(range(1, 300)) + [511, 512, 513, 1023, 4097, 16 * 64 * 5 + 3, 40000, 70001]:
        a = (np.abs(g.standard_normal(n)) * g.uniform(0.01, 3)).astype(f32)
        t = torch.from_numpy(a).mean().numpy()
        assert u32(t.reshape(1))[0] == u32(np.array([np_torch_mean_f32(a, lanes)]))[0], f"mean n={n}"

    # 8-bit blockwise (native CPU kernel) on wide-ranging data, including exact midpoints.
    # (The LUT is not an exact nearest-code search: on wide-ranging data about 3% of the indices
    # differ from argmin |x - code|, so this check tells the two apart.)
    mids = ((code8[:-1] + code8[1:]) / f32(2)).astype(f32)
    for trial in range(40):
        n = int(g.integers(1, 3000))
        kind = trial % 4
        if kind == 0:
            y = g.standard_normal(n)
        elif kind == 1:
            y = g.standard_normal(n) * np.exp(g.uniform(-12, 3, n))
        elif kind == 2:
            y = g.choice(np.concatenate([mids, code8, -mids]), n)
            y[:: 256] = 1.0
        else:
            y = g.uniform(-1, 1, n)
            y[g.integers(0, n, n // 5)] = 0.0
        y = y.astype(f32)
        q, st = F.quantize_blockwise(torch.from_numpy(y), blocksize=256)
        q_ref, am_ref = np_quantize_blockwise_8bit(y, code8, 256)
        assert np.array_equal(q.numpy(), q_ref), f"8-bit blockwise q trial {trial}"
        assert np.array_equal(u32(st.absmax.numpy()), u32(am_ref)), f"8-bit blockwise absmax trial {trial}"

    # values where x / absmax and x * (1 / absmax) fall on different sides of an NF4 bound: full
    # blocks must follow the multiply rule, the tail block the division rule
    straddle = []
    while len(straddle) < 32:
        am, b = f32(g.uniform(0.01, 2)), f32(g.choice(NF4_BOUNDS))
        w = f32(b * am)
        for step in range(7):
            w2 = w
            for _ in range(abs(step - 3)):
                w2 = np.nextafter(w2, f32(np.inf) if step > 3 else f32(-np.inf))
            by_div = np.searchsorted(NF4_BOUNDS, f32(w2 / am))
            by_mul = np.searchsorted(NF4_BOUNDS, f32(w2 * f32(f32(1) / am)))
            if by_div != by_mul:
                straddle.append((am, w2))
                break
    for am, w in straddle:
        full_block = np.concatenate([np.array([am, w], f32), np.zeros(62, f32)])
        tail_block = np.concatenate([np.ones(64, f32), np.array([am, w], f32)])
        check_one(full_block, lanes, "straddle full")
        check_one(tail_block, lanes, "straddle tail")

    # NF4 (+ double quantisation) on many tensors
    sizes = [17 * 50, 1, 2, 3, 15, 63, 64, 65, 127, 128, 129, 1000 * 96, 96 * 288, 64 * 64, 64 * 300 + 1]
    cases = 0
    for n in sizes:
        for kind in range(6):
            if kind == 0:
                x = g.standard_normal(n)
            elif kind == 1:  # GPT-2-ish scale with exact zeros
                x = g.standard_normal(n) * 0.02
                x[g.integers(0, n, max(1, n // 7))] = 0.0
            elif kind == 2:  # values exactly on NF4 decision bounds / codes (ties), absmax 1
                x = g.choice(np.concatenate([NF4_BOUNDS, -NF4_BOUNDS, NF4_CODE]), n)
                x[::64] = 1.0
            elif kind == 3:  # all-zero blocks, an all-zero tail, -0.0
                x = g.standard_normal(n) * 3
                x[: min(n, 64)] = 0.0
                x[(n // 64) * 64 :] = -0.0
                if n > 200:
                    x[128:192] = 0.0
            elif kind == 4:  # wide dynamic range between blocks
                x = g.standard_normal(n) * np.repeat(np.exp(g.uniform(-20, 5, n // 64 + 1)), 64)[:n]
            else:  # heavy tails, scaled ties (bounds * absmax rarely exact: checks rounding)
                x = g.standard_t(2, n) * 0.1
            check_one(x.astype(f32), lanes, f"n={n} kind={kind}")
            cases += 1
    return cases + 2 * len(straddle)


# ----------------------------------------------------------------------------------------------
# fixture
# ----------------------------------------------------------------------------------------------


def make_weights():
    """GPT-2-style Conv1D weights W [in, out] (y = x @ W), torch seed 0."""
    torch.manual_seed(0)
    ws = {}
    for name, (i, o) in [("c96x288", (96, 288)), ("c17x50", (17, 50)), ("c64x64", (64, 64)), ("c3x5", (3, 5))]:
        ws[name] = torch.randn(i, o, dtype=torch.float32) * 0.02
    w = torch.randn(96, 128, dtype=torch.float32) * 0.02
    w[torch.rand(96, 128) < 0.05] = 0.0  # some exact zeros
    # one all-zero 64-block in Linear layout [128, 96]: flat 192..255 = row 2, cols 0..63,
    # which is W[0:64, 2] in Conv1D layout
    w[0:64, 2] = 0.0
    ws["c96x128z"] = w
    return ws


def write_fixture(lanes):
    code8 = np_dynamic_map()
    tensors = {
        "nf4.code": NF4_CODE.copy(),
        "dq.code": F.create_dynamic_map(signed=True).numpy().astype(f32),
    }
    for name, w in make_weights().items():
        w_lin = w.t().contiguous()  # nn.Linear layout [out, in]
        assert np.all(w_lin.reshape(-1)[192:256].numpy() == 0) or name != "c96x128z"
        packed, st = F.quantize_4bit(w_lin, blocksize=64, quant_type="nf4", compress_statistics=False)
        packed2, st2 = F.quantize_4bit(w_lin, blocksize=64, quant_type="nf4", compress_statistics=True)
        assert torch.equal(packed, packed2)
        p_ref, a_ref = np_quantize_nf4(w_lin.numpy())
        assert np.array_equal(packed.numpy().reshape(-1), p_ref) and np.array_equal(u32(a_ref), u32(st.absmax))
        n = w_lin.numel()
        offset = st2.offset.reshape(1).numpy().astype(f32)
        absmax_dq = np_dequant_absmax_dq(st2.absmax.numpy(), offset[0], st2.state2.absmax.numpy(), code8)
        rec = (F.dequantize_blockwise(st2.absmax, st2.state2) + st2.offset).numpy()
        assert np.array_equal(u32(rec), u32(absmax_dq))
        tensors[f"{name}.weight"] = w.numpy().astype(f32)
        tensors[f"{name}.packed"] = packed.numpy().reshape(-1).astype(np.uint8)
        tensors[f"{name}.absmax"] = st.absmax.numpy().astype(f32)
        if n <= 5000:  # keeps the file small; larger cases are checked through packed + absmax
            tensors[f"{name}.dequant"] = np_dequant_nf4(p_ref, a_ref, n)
        tensors[f"{name}.dq.absmax_q"] = st2.absmax.numpy().astype(np.uint8)
        tensors[f"{name}.dq.offset"] = offset
        tensors[f"{name}.dq.state2_absmax"] = st2.state2.absmax.numpy().astype(f32)
        tensors[f"{name}.dq.absmax"] = absmax_dq
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    # one metadata key: safetensors writes metadata in hash order, so several keys would make
    # the file differ byte-wise from run to run
    metadata = {
        "info": (
            f"generator=tests/reference/make_nf4_fixtures.py; bitsandbytes={bitsandbytes.__version__}; "
            f"torch={torch.__version__}; torch_threads={torch.get_num_threads()}; "
            "X.weight is the Conv1D weight [in,out]; every other X.* is about X.weight.T "
            "(nn.Linear [out,in]) flattened row-major; blocksize 64; dq blocksize 256"
        )
    }
    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    save_file(tensors, OUT_PATH, metadata=metadata)
    os.chmod(OUT_PATH, 0o644)
    return tensors


def hash_values(n, seed):
    """Deterministic f32 test values, cheap to regenerate exactly in Rust (so only torch's mean
    of them needs storing): k = (i * 2654435761 + seed * 40503) mod 2^24 (integer arithmetic),
    x[i] = f32(k) * 2^-(20 + i mod 7) (exact)."""
    i = np.arange(n, dtype=np.uint64)
    k = (i * np.uint64(2654435761) + np.uint64(seed) * np.uint64(40503)) % np.uint64(2**24)
    e = (20 + (i % np.uint64(7))).astype(np.int64)
    return (k.astype(f32) * np.ldexp(f32(1), -e).astype(f32)).astype(f32)


# lengths for torch's mean: scalar path (< 8), the ILP tail, cascade levels 1, 2 and 3 (flushes
# after 16, 256 and 4096 rows of 32 values), past 32768 (torch sums that across threads unless
# it has one, as here) and past 2^24 (level_power 5). 1000003 and 20000001 were picked because
# their sums change if level 3 or level_power 5 is handled wrongly (many lengths don't).
MEAN_LENGTHS = [1, 3, 7, 8, 9, 31, 33, 100, 513, 600, 1000, 2049, 4096, 8191, 8193, 16384, 20000,
                32767, 70001, 1000003, 20000001]


def index_straddle_absmax(g, code8, count):
    """Absmax arrays (256 values) in which y * (1 / absmax2), the native kernel's rule, and
    y / absmax2 give different bytes for element 1: element 1 is placed on an edge of the
    65536-cell index grid where the LUT value changes, then moved ulp by ulp. (The other
    plausible variant, idx = fma(u, 65535, 0.5), never differs at a LUT edge: adding 0.5 is
    exact there, so no such case exists.)"""
    lut = np_build_lut(code8)

    def byte1(a, div):
        y = (a - np_torch_mean_f32(a, 8)).astype(f32)
        am = f32(np.abs(y).max())
        t = f32(y[1] / am) if div else f32(y[1] * f32(f32(1) / am))
        u = f32(f32(min(max(t, f32(-1)), f32(1)) + f32(1)) * f32(0.5))
        return lut[int(f32(f32(u * f32(65535)) + f32(0.5)))]

    edges = np.nonzero(lut[:-1] != lut[1:])[0]
    found = []
    for e in g.permutation(edges):
        a = (np.abs(g.standard_normal(256)) * f32(g.uniform(0.05, 2))).astype(f32)
        a[0] = f32(a.max() * 1.5)  # absmax2 comes from element 0, away from element 1
        t = 2 * ((e + 0.5) / 65535) - 1  # idx = e + 1 exactly: the edge of cells e and e + 1
        for _ in range(6):  # element 1 moves the mean: iterate to a fixed point
            off = np_torch_mean_f32(a, 8)
            a[1] = f32(t * f32(np.abs(a - off).max()) + off)
        v0 = a[1]
        for s in range(-40, 41):
            v = v0
            for _ in range(abs(s)):
                v = np.nextafter(v, f32(np.inf) if s > 0 else f32(-np.inf))
            a[1] = v
            if byte1(a, False) != byte1(a, True):
                found.append(a.copy())
                break
        if len(found) == count:
            return found
    raise AssertionError("no index-straddle case found")


def dq_extra_weights():
    """Flat nn.Linear-layout weights whose NF4 absmax arrays exercise double quantisation.
    numpy seed 7; all lengths stay below 32768 blocks (torch sums longer arrays across threads)."""
    g = np.random.default_rng(7)
    ws = {}
    # long absmax arrays with a wide range of block scales; odd lengths leave a scalar tail and
    # a partial ILP group in torch's sum, and a partial last 64-block
    for n_blocks in (3001, 11003):
        scale = np.repeat(np.exp(g.uniform(-6, 1, n_blocks)), 64)[: n_blocks * 64 - 5]
        ws[f"long{n_blocks}"] = (g.standard_normal(scale.size) * scale).astype(f32)
    # absmax = 1 everywhere: the mean is exactly 1, so every 256-block of y is zero (bytes 0)
    ws["const300"] = np.where(g.random(300 * 64) < 0.5, f32(-1), f32(1)).astype(f32)
    # absmax 1 x 256, 0.5 x 128, 1.5 x 128: mean exactly 1, so block 0 is all zero, block 1 not
    am = np.concatenate([np.full(256, 1.0), np.full(128, 0.5), np.full(128, 1.5)]).astype(f32)
    ws["mixed512"] = np.repeat(am, 64) * np.where(g.random(512 * 64) < 0.5, f32(-1), f32(1)).astype(f32)
    # given absmax arrays: block j of the weight is [a_j, 0, ..., 0] (full blocks store max|x|)
    for k, a in enumerate(index_straddle_absmax(g, np_dynamic_map(), 4)):
        w = np.zeros(a.size * 64, f32)
        w[::64] = a
        ws[f"straddle{k}"] = w
    return ws


def write_dq_extra(lanes):
    """N.absmax (bnb's plain NF4 absmax of weight N), N.dq.absmax_q, N.dq.offset,
    N.dq.state2_absmax (bnb, compress_statistics=True) and N.dq.absmax (the
    reconstruction); the weights themselves are not stored (size)."""
    code8 = np_dynamic_map()
    tensors = {}
    for name, w in dq_extra_weights().items():
        wt = torch.from_numpy(np.ascontiguousarray(w, f32))
        _, st = F.quantize_4bit(wt, blocksize=64, quant_type="nf4", compress_statistics=False)
        _, st2 = F.quantize_4bit(wt, blocksize=64, quant_type="nf4", compress_statistics=True)
        absmax = st.absmax.numpy().astype(f32)
        offset = st2.offset.reshape(1).numpy().astype(f32)
        q8, am2 = st2.absmax.numpy().astype(np.uint8), st2.state2.absmax.numpy().astype(f32)
        # the NumPy port agrees (it is what the Rust port follows)
        q_ref, am2_ref = np_quantize_blockwise_8bit((absmax - np_torch_mean_f32(absmax, lanes)).astype(f32), code8)
        assert u32(offset)[0] == u32(np.array([np_torch_mean_f32(absmax, lanes)]))[0], name
        assert np.array_equal(q8, q_ref) and np.array_equal(u32(am2), u32(am2_ref)), name
        rec = (F.dequantize_blockwise(st2.absmax, st2.state2) + st2.offset).numpy().astype(f32)
        assert np.array_equal(u32(rec), u32(np_dequant_absmax_dq(q8, offset[0], am2, code8))), name
        tensors[f"{name}.absmax"] = absmax
        tensors[f"{name}.dq.absmax_q"] = q8
        tensors[f"{name}.dq.offset"] = offset
        tensors[f"{name}.dq.state2_absmax"] = am2
        tensors[f"{name}.dq.absmax"] = rec
    # torch's mean of hash_values(n, seed=n) for each n in MEAN_LENGTHS
    means = []
    for n in MEAN_LENGTHS:
        x = hash_values(n, n)
        m = torch.from_numpy(x).mean().numpy().astype(f32).reshape(1)
        assert u32(m)[0] == u32(np.array([np_torch_mean_f32(x, lanes)]))[0], f"hash mean n={n}"
        means.append(m[0])
    tensors["mean.n"] = np.array(MEAN_LENGTHS, np.uint32)
    tensors["mean.torch"] = np.array(means, f32)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    metadata = {
        "info": (
            f"generator=tests/reference/make_nf4_fixtures.py; bitsandbytes={bitsandbytes.__version__}; "
            f"torch={torch.__version__}; torch_threads={torch.get_num_threads()}; "
            "N.absmax: NF4 absmax (blocksize 64) of a flat weight; N.dq.*: its double quantisation "
            "(blocksize 256); N.dq.absmax: the reconstructed absmax; mean.torch[k]: torch's f32 "
            "mean of hash_values(mean.n[k], seed=mean.n[k])"
        )
    }
    save_file(tensors, DQ_EXTRA_PATH, metadata=metadata)
    os.chmod(DQ_EXTRA_PATH, 0o644)
    return tensors


def main():
    cap = torch.backends.cpu.get_cpu_capability()
    lanes = 8
    print(f"bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__}, CPU capability {cap}")
    cases = self_check(lanes)
    print(f"self-check passed: {cases} NF4 tensors (plain and double-quantised) match bit for bit")
    tensors = write_fixture(lanes)
    for k in sorted(tensors):
        print(f"  {k:28s} {str(tensors[k].dtype):8s} {list(tensors[k].shape)}")
    print(f"wrote {os.path.relpath(OUT_PATH, REPO)} ({os.path.getsize(OUT_PATH)} bytes)")
    extra = write_dq_extra(lanes)
    for k in sorted(extra):
        print(f"  {k:28s} {str(extra[k].dtype):8s} {list(extra[k].shape)}")
    print(f"wrote {os.path.relpath(DQ_EXTRA_PATH, REPO)} ({os.path.getsize(DQ_EXTRA_PATH)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

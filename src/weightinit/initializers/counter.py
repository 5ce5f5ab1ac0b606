"""Counter-based random draws: Philox4x32-10 keyed by (seed, parameter name), counted by the
element's index in the full tensor.

A value drawn here is a pure function of ``(key, stream, index)``, so a rank that holds a shard
of a parameter generates exactly its own elements (from the shard's global indices) and gets the
same bits as a single process that generates the whole tensor. It is what ``seed=`` draws
from (rng version :data:`RNG_VERSION`, recorded in every plan; see ``Plan.apply``).

The scheme (version ``"philox-v1"``):

- **Block cipher**: Philox4x32 with 10 rounds (Salmon, Moraes, Dror and Shaw, "Parallel random
  numbers: as easy as 1, 2, 3", SC'11), one of cuRAND's generators (the one torch draws
  with on CUDA) and that of TensorFlow's stateless random ops; checked against Random123's
  known-answer vectors. It runs in
  torch integer ops: int64 tensors hold uint32 words, and each 32x32 -> 64-bit product M a is
  one int64 product by M - 2^32 (:func:`_mulhilo`), so that no int64 operation overflows.
- **Key**: 64 bits of BLAKE2b (``hashlib.blake2b``, digest 8 bytes, personalization
  ``b"wi-philox-v1"``) of ``f"{seed}"``, a NUL byte and the UTF-8 name (:func:`philox_key`);
  stable across processes and platforms, unlike Python's ``hash()``.
- **Counter**: elements come in tiles of 256, each drawn from 64 consecutive Philox blocks
  (four words each), lane-major: element ``i``, at ``q = i % 256`` in tile ``t = i // 256``,
  takes word (lane) ``q // 64`` of block ``j = 64 t + q % 64``. So lane by lane, a tile's values
  are contiguous runs of 64, which Box-Muller fills without interleaving. The counter of block
  ``j`` is ``(j mod 2**32, j // 2**32, stream, 0)``, where the stream word names the draw
  (0 uniform, 1 normal, 2 truncated normal), so that the uniform, normal and truncated-normal
  values of one element are independent. The value of element ``i`` depends only on
  ``(key, stream, i)``: not on the tensor's size or shape, nor on which slice is generated.

Indices are given as a ``range`` (with any step: a strided shard), a sequence of ranges
(concatenated) or an int64 tensor (the result has its shape; each of its elements costs a
whole Philox block, four times a range's work per element). Every draw has an eager path in
torch ops and a compiled path (``torch.compile`` of the integer kernel, the same arithmetic;
Box-Muller's log, cos and sin are eager on both paths). The compiled kernels are built when
asked for (:func:`compiled_available`, or ``impl="compiled"``): seconds, tens of seconds with
a cold inductor cache, far more than most draws take, so a draw never waits for a compiler
unless asked. Once built (probed once: they must reproduce the eager bits, else the eager path
is used silently), ``impl="auto"`` uses them for draws of 2^20 elements and more. On one CPU thread, a compiled normal draw of 2^24 float32 values ran at about
0.9x the throughput of torch's ``Tensor.normal_`` into a preallocated tensor, the eager one at
about 0.22x (``benchmarks/bench_generator.py``; docs/performance.md).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Literal

import torch

from weightinit._checks import finite, is_integer, positive

__all__ = [
    "RNG_VERSION",
    "compiled_available",
    "normal",
    "philox4x32",
    "philox_key",
    "truncated_normal",
    "uniform",
]

RNG_VERSION = "philox-v1"

Index = range | Sequence[range] | torch.Tensor
Key = tuple[int, int]
Impl = Literal["auto", "eager", "compiled"]

_MASK = 0xFFFFFFFF
# Philox4x32 constants (Salmon et al. 2011, Random123's philox.h): round multipliers and the
# Weyl increments of the key schedule.
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_N0, _N1 = _M0 - 2**32, _M1 - 2**32  # the multipliers less 2^32 (_mulhilo)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_ROUNDS = 10
# Stream words (counter word 2): which draw an element's words feed.
_UNIFORM, _NORMAL, _TRUNCATED = 0, 1, 2
_LANES = 4  # elements per Philox block
_TILE_BLOCKS = 64  # blocks per tile
_TILE = _LANES * _TILE_BLOCKS  # elements per tile: lane-major within it
_MAX_INDEX = 2**63 - 1  # int64 tensors hold the indices
_COMPILE_FROM = 1 << 20  # impl="auto" uses built compiled kernels from this many elements
# the compiled kernels built in this process, by (kind, dtype, device type): None where
# compiling failed or changed the bits (impl="auto" uses only these: it never compiles)
_BUILT: dict[tuple[str, torch.dtype, str], tuple | None] = {}
#: the largest |z| the normal draw yields: sqrt(-2 ln u1) with u1 >= 2^-32 (Box-Muller)
NORMAL_MAX_Z = math.sqrt(64.0 * math.log(2.0))
_TRUNCATED_CHUNK = 1 << 20  # elements a truncated-normal draw computes at a time (float64)
_CHUNK = 1 << 14  # blocks drawn at a time, eager: 65536 elements, their temporaries stay in L2
_PARALLEL_CHUNK = 1 << 17  # eager with more than one thread: each op is split between threads
_COMPILED_CHUNK = 1 << 18  # compiled: fewer calls (each costs ~0.2 ms of guards and eager ops)
_TWO_POW_M32 = 2.0**-32


def _mulhilo(n: int, a):
    """(hi, lo) 32-bit words of the 64-bit product M a, for uint32 a and n = M - 2^32, M one of
    the round multipliers (both above 2^31, so -2^30 < n < 0).

    M a = a 2^32 + n a, and |n a| < 2^62: p = n a is exact in int64. With p = H 2^32 + L
    (H = p >> 32, an arithmetic shift; 0 <= L < 2^32), M a = (a + H) 2^32 + L, so hi = a + H
    and lo = L. One product, and no int64 operation overflows (M a itself would, and wrapping
    is not promised everywhere), in Python ints, eager torch and compiled code alike."""
    p = a * n
    return a + (p >> 32), p & _MASK


def _philox_words(c0, c1, c2, c3, k0, k1, rounds: int = _ROUNDS):
    """Philox4x32-``rounds`` on words held in int64 tensors (or ints): Random123's
    ``philox4x32_R``, the key bumped by the Weyl constants before every round but the first."""
    for r in range(rounds):
        if r:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        hi0, lo0 = _mulhilo(_N0, c0)
        hi1, lo1 = _mulhilo(_N1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _mulhilo_(n: int, a, free: list):
    """:func:`_mulhilo` reusing ``a``'s storage for hi (``a`` is consumed) and tensors from
    ``free`` (spare tensors of a's shape, int64) for lo and the shift: no allocation once
    ``free`` holds two (fresh memory costs page faults)."""
    if not isinstance(a, torch.Tensor):
        return _mulhilo(n, a)
    p = torch.mul(a, n, out=free.pop() if free else torch.empty_like(a))
    shifted = torch.bitwise_right_shift(p, 32, out=free.pop() if free else torch.empty_like(a))
    a.add_(shifted)
    free.append(shifted)
    return a, p.bitwise_and_(_MASK)


def _xor_(h, c, k: int):
    """h ^ c ^ k for int k and ints or int64 tensors h, c, in place in a tensor among them (which
    is consumed), the ints combined first."""
    if isinstance(h, torch.Tensor):
        return (
            h.bitwise_xor_(c ^ k)
            if not isinstance(c, torch.Tensor)
            else h.bitwise_xor_(c).bitwise_xor_(k)
        )
    return c.bitwise_xor_(h ^ k) if isinstance(c, torch.Tensor) else h ^ c ^ k


def _philox_words_(c0, c1, c2, c3, k0: int, k1: int, rounds: int = _ROUNDS):
    """:func:`_philox_words` for int keys in fewer eager ops: in place in the tensors among the
    words (which are consumed), spent tensors reused, ints kept as ints (a word that is an int in
    every element, as c1, c2 and c3 often are, costs no tensor op until it meets a tensor)."""
    free: list[torch.Tensor] = []
    for r in range(rounds):
        if r:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        hi0, lo0 = _mulhilo_(_N0, c0, free)
        hi1, lo1 = _mulhilo_(_N1, c2, free)
        new0, new2 = _xor_(hi1, c1, k0), _xor_(hi0, c3, k1)
        free += [
            w for w in (c1, c3) if isinstance(w, torch.Tensor) and w is not new0 and w is not new2
        ]
        c0, c1, c2, c3 = new0, lo1, new2, lo0
    return c0, c1, c2, c3


def philox4x32(counters: torch.Tensor, key: Key, rounds: int = _ROUNDS) -> torch.Tensor:
    """The Philox4x32 block cipher, applied to every counter of ``counters`` under ``key``.

    Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11. A
    round maps the words (c0, c1, c2, c3) under the key (k0, k1) to

    .. math::
        (\\mathrm{hi}(M_1 c_2) \\oplus c_1 \\oplus k_0,\\ \\mathrm{lo}(M_1 c_2),\\
        \\mathrm{hi}(M_0 c_0) \\oplus c_3 \\oplus k_1,\\ \\mathrm{lo}(M_0 c_0))

    with M0 = 0xD2511F53, M1 = 0xCD9E8D57; the key grows by (0x9E3779B9, 0xBB67AE85) mod 2^32
    between rounds. With 10 rounds this is Random123's ``philox4x32_10``.

    Args:
        counters: int64 tensor of shape (..., 4) holding uint32 words.
        key: two uint32 words (k0, k1), e.g. from :func:`philox_key`.
        rounds: number of rounds (10 is the standard; 7 is Random123's fastest crush-resistant).

    Returns:
        int64 tensor of the same shape: the four output words of each counter.

    Example (Random123's known-answer vector for the zero counter and key)::

        >>> out = philox4x32(torch.zeros(1, 4, dtype=torch.int64), (0, 0))
        >>> [hex(w) for w in out[0].tolist()]
        ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    if not isinstance(counters, torch.Tensor) or counters.dtype != torch.int64:
        raise TypeError(
            f"philox4x32: `counters` must be an int64 tensor of uint32 words, got "
            f"{getattr(counters, 'dtype', type(counters).__name__)}"
        )
    if counters.ndim == 0 or counters.shape[-1] != 4:
        raise ValueError(
            f"philox4x32: `counters` must have shape (..., 4), got {tuple(counters.shape)}"
        )
    if counters.numel() and (counters.min() < 0 or counters.max() > _MASK):
        raise ValueError("philox4x32: `counters` must hold uint32 words, in [0, 2**32)")
    k0, k1 = _check_key(key, "philox4x32")
    if not is_integer(rounds) or rounds < 1:
        raise ValueError(f"philox4x32: `rounds` must be a positive int, got {rounds!r}")
    words = _philox_words(*counters.unbind(-1), k0, k1, int(rounds))
    return torch.stack(words, dim=-1)


def philox_key(seed: int, name: str) -> Key:
    """The 64-bit Philox key of a parameter: two uint32 words from BLAKE2b of (seed, name).

    ``k0 + 2**32 k1`` is the little-endian integer of ``blake2b(f"{seed}" + "\\0" + name,
    digest_size=8, person=b"wi-philox-v1")`` (RFC 7693; ``hashlib``), the same on every
    machine and in every process. ``name`` is the parameter's canonical (unsharded) name.

    Example::

        >>> philox_key(0, "fc.weight") == philox_key(0, "fc.weight")
        True
        >>> philox_key(0, "fc.weight") != philox_key(1, "fc.weight")
        True
    """
    if not is_integer(seed) or isinstance(seed, bool):
        raise TypeError(f"philox_key: `seed` must be an int, got {seed!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"philox_key: `seed` must be in [0, 2**64), got {seed}")
    if not isinstance(name, str):
        raise TypeError(f"philox_key: `name` must be a str, got {type(name).__name__}")
    digest = hashlib.blake2b(
        f"{int(seed)}".encode() + b"\0" + name.encode("utf-8"),
        digest_size=8,
        person=b"wi-philox-v1",
    ).digest()
    value = int.from_bytes(digest, "little")
    return value & _MASK, value >> 32


# -- the draws' kernels: blocks j (int64 counters) -> the standard values of their four lanes -----

_STREAMS = {"uniform": _UNIFORM, "normal": _NORMAL, "truncated_normal": _TRUNCATED}


def _values(kind: str, words, dtype: torch.dtype):
    """The standard values of the four lanes of blocks from their Philox words (int64 tensors),
    in ``dtype``, the same ops eager and compiled: four tensors of the words' shape.

    - uniform: U[0, 1) on a 2^-24 grid, (w >> 8) 2^-24 (exact in float32 and float64);
    - normal: Box-Muller's inputs from the word pairs (w0, w1) and (w2, w3), u1 = (w0 + 1) 2^-32
      in (0, 1] and theta = 2 pi w1 2^-32 of each pair, each a correctly rounded product of an
      exact integer (the same bits eager or compiled): (u1, theta) of the first pair, then of the
      second;
    - truncated normal: U(0, 1) at the cell midpoints (w + 1/2) 2^-32 (exact in float64)."""
    if kind == "uniform":
        return tuple((w >> 8).to(dtype) * 2.0**-24 for w in words)
    if kind == "normal":
        w0, w1, w2, w3 = words
        angle = 2.0 * math.pi * _TWO_POW_M32
        return (
            (w0 + 1).to(dtype) * _TWO_POW_M32,
            w1.to(dtype) * angle,
            (w2 + 1).to(dtype) * _TWO_POW_M32,
            w3.to(dtype) * angle,
        )
    return tuple((w.to(dtype) + 0.5) * _TWO_POW_M32 for w in words)


def _kernel(kind: str, j: torch.Tensor, k: torch.Tensor, dtype: torch.dtype):
    """The compiled kernel for blocks ``j`` (any shape); ``k`` holds the key (int64, (2,))."""
    words = _philox_words(j & _MASK, j >> 32, _STREAMS[kind], 0, k[0], k[1])
    return _values(kind, words, dtype)


def _range_kernel(kind: str, first: torch.Tensor, n: int, k: torch.Tensor, dtype: torch.dtype):
    """The compiled kernel for the blocks first, first + 1, ..., first + n - 1 (``first`` a 0-d
    int64 tensor): their counters never leave the compiled code."""
    return _kernel(kind, torch.arange(n, device=k.device) + first, k, dtype)


def _eager_kernel(kind: str, j: torch.Tensor, key: Key, dtype: torch.dtype, wide: bool = True):
    """The eager kernel for blocks ``j`` (consumed where ``wide`` is false: all of them below
    2^32, so that the counter's word c0 is j itself and c1 is 0)."""
    c0, c1 = (j & _MASK, j >> 32) if wide else (j, 0)
    return _values(kind, _philox_words_(c0, c1, _STREAMS[kind], 0, *key), dtype)


def _box_muller(u1a, theta_a, u1b, theta_b, trig, out: torch.Tensor) -> None:
    """Standard normals into ``out`` (rows, 4, L) from :func:`_values`'s four tensors (rows, L),
    which it consumes, by way of ``trig`` (scratch, (2, 2, rows, L)): r = sqrt(-2 ln u1); lanes
    0 to 3 are r cos theta, r sin theta of the first pair, then of the second.

    Eager torch ops, also after the compiled kernel: torch.compile's log, cos and sin differ
    from eager's in the last bit for about one value in five, and its sqrt (correctly rounded)
    from eager's (MKL's, on x86) for about one in 150, which would break "the eager fallback
    gives the same bits". Every op but the last runs on contiguous memory, in place (products
    written straight into ``out``'s runs of 64 took twice as long as this copy)."""
    rows, width = out.shape[0], out.shape[2]
    for pair, (u1, theta) in enumerate(((u1a, theta_a), (u1b, theta_b))):
        r = u1.log_().mul_(-2.0).sqrt_()
        torch.cos(theta, out=trig[0, pair])
        torch.sin(theta, out=trig[1, pair])
        trig[:, pair].mul_(r)  # (cos/sin, pair, row, block)
    out.view(rows, 2, 2, width).copy_(trig.permute(2, 1, 0, 3))


def _chunk_blocks(compiled: bool) -> int:
    """Blocks drawn at a time: their temporaries stay in cache; eager with more than one thread,
    enough for torch to split each op between threads (it does from 32768 elements)."""
    if compiled:
        return _COMPILED_CHUNK
    return _CHUNK if torch.get_num_threads() == 1 else _PARALLEL_CHUNK


def _block_values(
    kind: str, j: int | torch.Tensor, key: Key, out: torch.Tensor, compiled: tuple | None
) -> None:
    """The standard values of blocks into ``out`` (rows, 4 L), lanes 0 to 3 one after the other
    in each row, a chunk of rows at a time (their temporaries stay in cache). An int ``j``
    stands for the tiles of blocks j, j + 1, ... (L = 64), a tensor ``j`` (rows,) for single
    blocks (L = 1).

    Per chunk, the kernel gives the four lanes' values (the compiled one, ``compiled``:
    :func:`_compiled_kernel`'s functions, writes them into scratch tensors reused from chunk to
    chunk: fresh memory costs page faults); then Box-Muller (always eager,
    :func:`_box_muller`) for the normal, a copy for the others, into ``out``."""
    width = _TILE_BLOCKS if isinstance(j, int) else 1
    step = max(1, _chunk_blocks(compiled is not None) // width)
    lanes = out.view(len(out), _LANES, width)
    size = min(step, len(out)) * width
    if compiled:
        scratch = [torch.empty(size, dtype=out.dtype, device=out.device) for _ in range(_LANES)]
        k = torch.tensor(key, dtype=torch.int64, device=out.device)
    if kind == "normal":
        trig = torch.empty(2, 2, size, dtype=out.dtype, device=out.device)
    for c in range(0, len(out), step):
        rows = min(step, len(out) - c)
        n = rows * width
        if compiled:
            if n < size:  # the last chunk: whole tensors, not views, for the kernel's guards
                scratch = [torch.empty(n, dtype=out.dtype, device=out.device) for _ in scratch]
            if isinstance(j, int):
                first = torch.tensor(j + c * width, dtype=torch.int64, device=out.device)
                compiled[0](first, k, *scratch)
            else:
                compiled[1](j[c : c + rows].clone(), k, *scratch)
            values = scratch
        elif isinstance(j, int):
            first = j + c * width
            blocks = torch.arange(first, first + n, device=out.device)
            values = _eager_kernel(kind, blocks, key, out.dtype, wide=first + n > 2**32)
        else:
            values = _eager_kernel(kind, j[c : c + rows], key, out.dtype)
        values = [x.view(rows, width) for x in values]
        if kind == "normal":
            part = (
                trig[:, :, :n].view(2, 2, rows, width) if n < size else trig.view(2, 2, rows, width)
            )
            _box_muller(*values, part, lanes[c : c + rows])
        else:
            torch.stack(values, dim=1, out=lanes[c : c + rows])


def _fill(values, o0, o1, o2, o3) -> None:
    for o, v in zip((o0, o1, o2, o3), values):
        o.copy_(v)


# The compiled kernels, one function each (torch.compile keeps its compiled code per function:
# closures would share it, and their guards, between kinds), writing the four lanes' values into
# o0 to o3 (of the result's dtype): for ranges of blocks from ``first`` (a 0-d int64 tensor) and
# for tensors ``j`` of blocks.


def _uniform_of_range(first, k, o0, o1, o2, o3):
    _fill(_range_kernel("uniform", first, o0.shape[0], k, o0.dtype), o0, o1, o2, o3)


def _normal_of_range(first, k, o0, o1, o2, o3):
    _fill(_range_kernel("normal", first, o0.shape[0], k, o0.dtype), o0, o1, o2, o3)


def _truncated_of_range(first, k, o0, o1, o2, o3):
    _fill(_range_kernel("truncated_normal", first, o0.shape[0], k, o0.dtype), o0, o1, o2, o3)


def _uniform_of_blocks(j, k, o0, o1, o2, o3):
    _fill(_kernel("uniform", j, k, o0.dtype), o0, o1, o2, o3)


def _normal_of_blocks(j, k, o0, o1, o2, o3):
    _fill(_kernel("normal", j, k, o0.dtype), o0, o1, o2, o3)


def _truncated_of_blocks(j, k, o0, o1, o2, o3):
    _fill(_kernel("truncated_normal", j, k, o0.dtype), o0, o1, o2, o3)


_COMPILED = {
    "uniform": (_uniform_of_range, _uniform_of_blocks),
    "normal": (_normal_of_range, _normal_of_blocks),
    "truncated_normal": (_truncated_of_range, _truncated_of_blocks),
}


def _compiled_kernel(kind: str, dtype: torch.dtype, device_type: str) -> tuple | None:
    """``torch.compile`` of one kernel, for ranges of blocks and for tensors of blocks, or None
    where compiling fails or changes the bits; built once per kernel, dtype and device type
    (:data:`_BUILT`)."""
    where = (kind, dtype, device_type)
    if where not in _BUILT:
        _BUILT[where] = _compile(kind, dtype, device_type)
    return _BUILT[where]


def _compile(kind: str, dtype: torch.dtype, device_type: str) -> tuple | None:
    """The compiled kernel, probed on a few thousand blocks against the eager kernel (below
    and across 2^32 and far beyond); None where compiling fails or changes the bits. Only the
    integer part and the exact integer -> float conversions are compiled: Box-Muller stays
    eager (:func:`_box_muller`)."""
    try:
        fns = tuple(torch.compile(f, dynamic=True, fullgraph=True) for f in _COMPILED[kind])
        key = (0x12345678, 0x9ABCDEF0)
        k = torch.tensor(key, dtype=torch.int64, device=device_type)
        for first, n in ((0, 67 * _TILE_BLOCKS), (2**32 - 40 * _TILE_BLOCKS, 67 * _TILE_BLOCKS)):
            blocks = torch.arange(first, first + n, device=device_type)
            eager = _eager_kernel(kind, blocks, key, dtype, wide=first + n > 2**32)
            ours = [torch.empty(n, dtype=dtype, device=device_type) for _ in range(_LANES)]
            fns[0](torch.tensor(first, dtype=torch.int64, device=device_type), k, *ours)
            if not all(torch.equal(x, y) for x, y in zip(ours, eager)):
                return None
        j = torch.arange(2**40 - 17, 2**40 + 1014, device=device_type)
        j[::7] = torch.arange(0, len(j), 7, device=device_type) * 0x1234567
        ours = [torch.empty(len(j), dtype=dtype, device=device_type) for _ in range(_LANES)]
        fns[1](j, k, *ours)
        if not all(torch.equal(x, y) for x, y in zip(ours, _eager_kernel(kind, j, key, dtype))):
            return None
        return fns
    except Exception:  # noqa: BLE001 (no compiler, an unsupported platform: eager, same bits)
        return None


def compiled_available(
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> bool:
    """Build the compiled kernels of every draw for results of ``dtype`` on ``device``, once
    per process, and say whether ``torch.compile`` works here and reproduces the eager bits.
    Afterwards, draws with ``impl="auto"`` (as ``Plan.apply`` makes them) of 2^20 elements and
    more use them: about 4x faster than eager for a normal draw, worth it for models of a
    billion parameters or more per process. The first call compiles: about 40 s for float32
    with an empty inductor cache on a 2-core machine, 6 s with a warm one.

    Example::

        >>> compiled_available()  # doctest: +SKIP
        True
    """
    compute = _compute_dtype(dtype, "compiled_available")
    kind_of_device = torch.device(device).type
    return all(_compiled_kernel(kind, compute, kind_of_device) is not None for kind in _COMPILED)


# -- indices ------------------------------------------------------------------------------------


def _check_key(key: object, fn: str) -> Key:
    if (
        not isinstance(key, tuple)
        or len(key) != 2
        or not all(is_integer(w) and 0 <= w <= _MASK for w in key)
    ):
        raise ValueError(
            f"{fn}: `key` must be a tuple of two uint32 ints (k0, k1), as philox_key(seed, name) "
            f"returns, got {key!r}"
        )
    return int(key[0]), int(key[1])


def _check_range(r: range, fn: str) -> None:
    if len(r) and (min(r[0], r[-1]) < 0 or max(r[0], r[-1]) > _MAX_INDEX):
        raise ValueError(f"{fn}: `index` must lie in [0, 2**63), got {r}")


def _pieces(index: Index, fn: str) -> tuple[list[range | torch.Tensor], tuple[int, ...]]:
    """The index as contiguous ranges (step 1, the fast path) and int64 tensors, in order, and
    the result's shape."""
    if isinstance(index, torch.Tensor):
        if index.dtype != torch.int64:
            raise TypeError(f"{fn}: an `index` tensor must be int64, got {index.dtype}")
        if index.numel() and index.min() < 0:
            raise ValueError(f"{fn}: `index` must lie in [0, 2**63), got a negative index")
        return ([index.reshape(-1)] if index.numel() else []), tuple(index.shape)
    ranges = [index] if isinstance(index, range) else index
    if not isinstance(ranges, Sequence) or not all(isinstance(r, range) for r in ranges):
        raise TypeError(
            f"{fn}: `index` must be a range, a sequence of ranges or an int64 tensor, got "
            f"{type(index).__name__}"
        )
    pieces: list[range | torch.Tensor] = []
    for r in ranges:
        _check_range(r, fn)
        if len(r) and r.step != 1:
            pieces.append(torch.arange(r.start, r.stop, r.step, dtype=torch.int64))
        elif len(r):
            pieces.append(r)
    return pieces, (sum(len(p) for p in pieces),)


def _standard(
    kind: str, key: Key, index: Index, dtype: torch.dtype, device, impl: Impl, fn: str
) -> torch.Tensor:
    """Standard values (U[0, 1), N(0, 1) or U(0, 1)) of the elements ``index``, in ``dtype``."""
    if impl not in ("auto", "eager", "compiled"):
        raise ValueError(f"{fn}: `impl` must be 'auto', 'eager' or 'compiled', got {impl!r}")
    pieces, shape = _pieces(index, fn)
    compiled = None
    device_type = torch.empty(0, device=device).device.type
    if impl == "auto" and math.prod(shape) >= _COMPILE_FROM:
        compiled = _BUILT.get((kind, dtype, device_type))  # built, or eager: never compiles
    elif impl == "compiled":
        compiled = _compiled_kernel(kind, dtype, device_type)
        if compiled is None:
            raise RuntimeError(
                f"{fn}: impl='compiled' but torch.compile does not work here (no C compiler?) "
                "or does not reproduce the eager bits; use impl='eager' (the same values)"
            )
    out = []
    for piece in pieces:
        if isinstance(piece, range):  # whole tiles, then the slice
            first, last = piece.start // _TILE, (piece.stop - 1) // _TILE
            values = torch.empty(last + 1 - first, _TILE, dtype=dtype, device=device)
            _block_values(kind, first * _TILE_BLOCKS, key, values, compiled)
            offset = piece.start - first * _TILE
            out.append(values.view(-1)[offset : offset + len(piece)])
        else:  # each element's block alone, then its lane
            i = piece.to(device)
            q = i % _TILE
            blocks = (i - q) // _LANES + q % _TILE_BLOCKS
            values = torch.empty(len(i), _LANES, dtype=dtype, device=device)
            _block_values(kind, blocks, key, values, compiled)
            out.append(values.gather(1, (q // _TILE_BLOCKS).unsqueeze(1)).squeeze(1))
    if not out:
        return torch.empty(shape, dtype=dtype, device=device)
    return (out[0] if len(out) == 1 else torch.cat(out)).reshape(shape)


def _compute_dtype(dtype: object, fn: str) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{fn}: `dtype` must be a floating-point torch.dtype, got {dtype!r}")
    return torch.float64 if dtype == torch.float64 else torch.float32


def _below(bound: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` value strictly below ``bound``."""
    b = torch.tensor(bound, dtype=dtype)
    if b.item() >= bound:
        b = torch.nextafter(b, torch.tensor(-math.inf, dtype=dtype))
    return b.item()


# -- the public draws ---------------------------------------------------------------------------


def uniform(
    key: Key,
    index: Index,
    low: float = 0.0,
    high: float = 1.0,
    dtype: torch.dtype = torch.float32,
    *,
    device: torch.device | str | None = None,
    impl: Impl = "auto",
) -> torch.Tensor:
    """U[low, high) values of the elements ``index`` of the stream keyed by ``key``.

    Element i takes its word w (lane) of Philox4x32-10 (Salmon et al. 2011) at the counter of
    its block in stream 0 (the layout is in the module's docstring) and gives

    .. math::
        x_i = \\mathrm{low} + (\\mathrm{high} - \\mathrm{low})\\, u_i, \\qquad
        u_i = \\lfloor w / 2^8 \\rfloor\\, 2^{-24} \\in [0, 1),

    computed in float64 for a float64 result and in float32 otherwise, then rounded to
    ``dtype``; a value that rounding lifts to ``high`` is set to the largest value below it.
    u is exact (24 bits) in float32 and float64, on every device.

    Args:
        key: from :func:`philox_key`.
        index: the elements' indices in the full (flattened) tensor: a ``range``, a sequence of
            ranges (concatenated) or an int64 tensor (the result takes its shape).
        low, high: the interval, low < high.
        dtype: a floating-point dtype.
        device: where to draw (default CPU).
        impl: "eager", "compiled" (torch.compile, built on first use; an error where it does
            not work) or "auto" (the compiled kernels for draws of 2^20 elements and more once
            :func:`compiled_available` has built them in this process, else eager). Same bits.
            Building takes seconds (40 s for the three draws' float32 kernels with an empty
            inductor cache on a 2-core machine, 6 s with a warm one); the compiled normal runs
            about 4x faster than the eager one.

    Example::

        >>> key = philox_key(0, "fc.weight")
        >>> x = uniform(key, range(10), -1.0, 1.0)
        >>> torch.equal(x[3:7], uniform(key, range(3, 7), -1.0, 1.0))
        True
        >>> bool(((x >= -1) & (x < 1)).all())
        True
    """
    fn = "uniform"
    key = _check_key(key, fn)
    low, high = finite(fn, "low", low), finite(fn, "high", high)
    if not low < high:
        raise ValueError(f"{fn}: `low` must be < `high`, got low={low}, high={high}")
    compute = _compute_dtype(dtype, fn)
    x = _standard("uniform", key, index, compute, device, impl, fn)
    if (low, high) != (0.0, 1.0):
        x.mul_(high - low).add_(low)
    return x.to(dtype).clamp_(max=_below(high, dtype))


def normal(
    key: Key,
    index: Index,
    mean: float = 0.0,
    std: float = 1.0,
    dtype: torch.dtype = torch.float32,
    *,
    device: torch.device | str | None = None,
    impl: Impl = "auto",
) -> torch.Tensor:
    """N(mean, std^2) values of the elements ``index`` of the stream keyed by ``key``.

    Box-Muller (Box and Muller 1958) on the words of Philox4x32-10 (Salmon et al. 2011) at
    the counter of element i's block in stream 1 (the layout is in the module's docstring): the
    word pairs (w0, w1) and (w2, w3) each give two values, lanes 0 (cos), 1 (sin) and 2, 3:

    .. math::
        u_1 = (w_0 + 1)\\, 2^{-32} \\in (0, 1],\\quad u_2 = w_1 2^{-32},\\quad
        z = \\sqrt{-2 \\ln u_1}\\, (\\cos 2\\pi u_2,\\ \\sin 2\\pi u_2),\\quad
        x = \\mathrm{mean} + \\mathrm{std}\\, z.

    32-bit uniforms: |z| <= sqrt(64 ln 2) = 6.66. The math runs in float32 (float64 for a
    float64 result) with torch's log, sqrt, cos and sin, so values are exact functions of the
    element's counter on one device and backend (eager and compiled agree bit for bit, which
    the compiled path checks, and any cut of a range gives the same bits, which the tests
    check); other devices' libraries may differ by a few ulp (untested: CPU only so far).

    Args:
        key, index, dtype, device, impl: as for :func:`uniform`.
        mean, std: the distribution, std > 0.

    Example::

        >>> key = philox_key(0, "fc.weight")
        >>> z = normal(key, range(1000))
        >>> torch.equal(z[[5, 17]], normal(key, torch.tensor([5, 17])))
        True
        >>> abs(float(z.mean())) < 0.15
        True
    """
    fn = "normal"
    key = _check_key(key, fn)
    mean, std = finite(fn, "mean", mean), positive(fn, "std", std)
    compute = _compute_dtype(dtype, fn)
    z = _standard("normal", key, index, compute, device, impl, fn)
    if (mean, std) != (0.0, 1.0):
        z.mul_(std).add_(mean)
    return z.to(dtype)


def _phi(x: float) -> float:
    """Standard normal CDF, accurate in both tails: erfc(-x / sqrt 2) / 2."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def truncated_normal(
    key: Key,
    index: Index,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    dtype: torch.dtype = torch.float32,
    *,
    device: torch.device | str | None = None,
    impl: Impl = "auto",
) -> torch.Tensor:
    """N(mean, std^2) truncated to [a, b] (absolute bounds, as in ``torch.nn.init.trunc_normal_``)
    for the elements ``index`` of the stream keyed by ``key``, by the inverse CDF: no rejection.

    With alpha = (a - mean) / std, beta = (b - mean) / std and u = (w + 1/2) 2^-32 from element
    i's word of Philox4x32-10 (Salmon et al. 2011) at its block's counter in stream 2 (the
    layout is in the module's docstring):

    .. math::
        x = \\mathrm{mean} + \\mathrm{std}\\; \\Phi^{-1}\\big(\\Phi(\\alpha)
            + u\\, (\\Phi(\\beta) - \\Phi(\\alpha))\\big),

    in float64 (``torch.special.ndtri``, 2^20 elements at a time), clamped to [a, b] after
    rounding to ``dtype``. When alpha > 0 the interval is mirrored (x = mean - std
    Phi^-1(Phi(-beta) + u (Phi(-alpha) - Phi(-beta)))) so that Phi is always taken in its lower
    tail, where float64 keeps its relative precision: the quantile's error stays near
    1e-16 / |x| even far in a tail. An interval whose probability underflows float64 (beyond
    about 37 std) is an error.

    When the bounds lie beyond the largest |z| the normal draw yields (alpha <= -6.66 and
    beta >= 6.66, :data:`NORMAL_MAX_Z`; torchtitan's +-2 at std 0.02 are +-100 std), nothing
    the normal draw makes falls outside them, so the values are :func:`normal`'s (stream 1),
    clamped to [a, b] after rounding: the truncation removes a mass of 3e-11 that a 32-bit
    uniform cannot resolve, and the draw costs what a normal one does.

    Args:
        key, index, dtype, device, impl: as for :func:`uniform`.
        mean, std: of the untruncated normal, std > 0.
        a, b: the bounds, a < b.

    Example::

        >>> key = philox_key(0, "fc.weight")
        >>> x = truncated_normal(key, range(1000), 0.0, 1.0, -2.0, 2.0)
        >>> bool(((x >= -2) & (x <= 2)).all())
        True
    """
    fn = "truncated_normal"
    key = _check_key(key, fn)
    mean, std = finite(fn, "mean", mean), positive(fn, "std", std)
    a, b = finite(fn, "a", a), finite(fn, "b", b)
    if not a < b:
        raise ValueError(f"{fn}: `a` must be < `b`, got a={a}, b={b}")
    _compute_dtype(dtype, fn)
    alpha, beta = (a - mean) / std, (b - mean) / std
    sign = -1.0 if alpha > 0 else 1.0
    lo, hi = (-beta, -alpha) if sign < 0 else (alpha, beta)
    p_lo, p_hi = _phi(lo), _phi(hi)
    if not p_hi > p_lo:
        raise ValueError(
            f"{fn}: the interval [a, b] = [{a}, {b}] has probability {p_hi - p_lo:.3g} under "
            f"N({mean}, {std}^2), too small to draw from in float64; move a, b or mean closer"
        )
    if alpha <= -NORMAL_MAX_Z and beta >= NORMAL_MAX_Z:
        return normal(key, index, mean, std, dtype, device=device, impl=impl).clamp_(a, b)
    pieces, shape = _pieces(index, fn)
    x = torch.empty(sum(len(p) for p in pieces), dtype=dtype, device=device)
    done = 0
    for piece in pieces:
        for start in range(0, len(piece), _TRUNCATED_CHUNK):  # float64 temporaries: bounded
            part = piece[start : start + _TRUNCATED_CHUNK]
            u = _standard("truncated_normal", key, part, torch.float64, device, impl, fn)
            z = torch.special.ndtri(u.mul_(p_hi - p_lo).add_(p_lo)).clamp_(lo, hi)
            x[done : done + len(u)] = z.mul_(sign * std).add_(mean)
            done += len(u)
    return x.view(shape).clamp_(a, b)

"""Counter-based random numbers keyed by (seed, stream, shot, pixel, draw), in array-API integer arithmetic.

Each value is SplitMix64's output function applied to ``key + pixel * gamma``:

    z = key(seed, stream, shot, draw) + pixel * 0x9E3779B97F4A7C15   (mod 2^64)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z =  z ^ (z >> 31)

where ``key`` is the same function applied, on the host, to the seed, the
stream number, the shot and the draw index.  The arithmetic is done in int64
arrays (multiplication wraps modulo 2^64 on every backend; right shifts are
made logical by masking), so the same key and pixel give the same 64-bit
integer on NumPy, torch, JAX (x64), CuPy, Dask and array-api-strict, whatever
the tiling of the image.  Where the backend's uint64 arrays wrap and shift
logically (``Capabilities.wrapping_uint64``) the same arithmetic runs in
uint64, one operation shorter per shift; the bits are the same.  Single uniform deviates take the top 53 bits:
u = (z >>> 11 + 0.5) 2^-53, in (0, 1), exactly representable in float64;
pairs (for Box-Muller and the Poisson rejection rounds) take the two 32-bit
halves of one value.

Box-Muller turns one value into two normal deviates, r cos(theta) and
r sin(theta), with r = sqrt(-2 ln u1) from the high half and theta =
2 pi u2 from the low half.  cos and sin are formed without the library's
trigonometric functions (slow in float64 on some backends): the top 10 bits
of the low half pick one of 1024 equal arcs (cos and sin of its centre from
a host table) and the remaining 22 bits the offset delta from that centre,
|delta| < pi/1024, where two terms of each Taylor series are exact to the
last bit (error below 2e-18).  The angle is exactly 2 pi u2.
"""

from __future__ import annotations

import math

from .._backend import take_rows

__all__ = ["GAMMA", "stream_key", "pixel_base", "bits", "uniform", "uniform_pair", "normal", "normal_pair",
           "STREAMS"]

_M64 = (1 << 64) - 1
GAMMA_U = 0x9E3779B97F4A7C15
_M1_U = 0xBF58476D1CE4E5B9
_M2_U = 0x94D049BB133111EB
#: stream numbers; the read-out stream's Box-Muller pair gives the read-out deviate (cosine) and the Poisson
#: normal approximation's deviate (sine)
STREAMS = {"flicker": 1, "calibration": 2, "poisson": 3, "readout": 4}


def _signed(u: int) -> int:
    u &= _M64
    return u - (1 << 64) if u >= 1 << 63 else u


GAMMA = _signed(GAMMA_U)
_M1 = _signed(_M1_U)
_M2 = _signed(_M2_U)


def _mix_host(z: int) -> int:
    z &= _M64
    z = ((z ^ (z >> 30)) * _M1_U) & _M64
    z = ((z ^ (z >> 27)) * _M2_U) & _M64
    return z ^ (z >> 31)


def stream_key(seed: int, stream: int, shot: int, draw: int) -> int:
    """The 64-bit key (as a signed int64 value) of one draw of one stream, shot and seed."""
    z = _mix_host(int(seed) * GAMMA_U + 0x632BE59BD9B4E019)
    z = _mix_host(z + int(stream) * GAMMA_U)
    z = _mix_host(z + int(shot) * GAMMA_U)
    z = _mix_host(z + int(draw) * GAMMA_U)
    return _signed(z)


_UNSIGNED: dict = {}


def unsigned(xp) -> bool:
    """Whether this namespace hashes in uint64 (see the module docstring)."""
    got = _UNSIGNED.get(id(xp))
    if got is None:
        from .._backend import Capabilities, backend_name

        got = _UNSIGNED[id(xp)] = Capabilities.of(backend_name(xp)).wrapping_uint64
    return got


def _shr(x, s: int, logical: bool = False):
    """Logical right shift of int64 values (``logical``: of uint64 values, which shift logically)."""
    return x >> s if logical else (x >> s) & ((1 << (64 - s)) - 1)


def pixel_base(xp, pixel_index):
    """pixel * gamma (mod 2^64) for an int64 array of global pixel indices (computed once per image);
    uint64 where the namespace hashes in it."""
    if unsigned(xp):
        return xp.astype(pixel_index, xp.uint64) * GAMMA_U
    return pixel_index * GAMMA


def bits(xp, base, key: int):
    """64 random bits per element of ``base`` (from :func:`pixel_base`: int64 or uint64) for one key."""
    u = base.dtype == xp.uint64
    if u:
        z = base + (key & _M64)
        z = (z ^ (z >> 30)) * _M1_U
        z = (z ^ (z >> 27)) * _M2_U
        return z ^ (z >> 31)
    z = base + key
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def uniform(xp, base, key: int, dtype):
    """Uniform deviates in (0, 1) (``dtype`` float64 keeps all 53 bits)."""
    z = bits(xp, base, key)
    top = xp.astype(_shr(z, 11, z.dtype == xp.uint64), dtype)
    return (top + 0.5) * (2.0 ** -53)


def uniform_pair(xp, base, key: int, dtype):
    """Two uniform deviates in (0, 1) from one 64-bit value: its high and low 32 bits (resolution 2^-32)."""
    z = bits(xp, base, key)
    hi = xp.astype(_shr(z, 32, z.dtype == xp.uint64), dtype)
    lo = xp.astype(z & 0xFFFFFFFF, dtype)
    return (hi + 0.5) * (2.0 ** -32), (lo + 0.5) * (2.0 ** -32)


_ARCS = 1024                       # arcs of the Box-Muller angle (top 10 bits of the low half)
_ARC_BITS = 22                     # bits of the offset within an arc
_ARC_CENTRE = [2.0 * math.pi * (j + 0.5) / _ARCS for j in range(_ARCS)]
_COS_TABLE = [math.cos(a) for a in _ARC_CENTRE]
_SIN_TABLE = [math.sin(a) for a in _ARC_CENTRE]
_TABLES: dict = {}


def _tables(xp, like):
    """cos and sin of the arc centres as arrays of ``like``'s namespace, dtype and device (cached)."""
    from .._backend import device_of, values_readable

    dev = device_of(like)
    key = (id(xp), str(like.dtype), str(dev))
    got = _TABLES.get(key)
    if got is None:
        got = tuple(xp.asarray(t, dtype=like.dtype, device=dev) for t in (_COS_TABLE, _SIN_TABLE))
        # never keep a value made inside a trace (under jax.jit it is a tracer, invalid after the trace)
        if len(_TABLES) < 64 and values_readable(got[0]):
            _TABLES[key] = got
    return got


def _box_muller_parts(xp, base, key: int, dtype):
    """r = sqrt(-2 ln u1), the cos and sin of the angle's arc centre, and cos(delta) - 1 and sin(delta) of
    its offset from that centre (see the module docstring)."""
    z = bits(xp, base, key)
    hi = xp.astype(_shr(z, 32, z.dtype == xp.uint64), dtype)
    r = xp.sqrt(-2.0 * xp.log((hi + 0.5) * (2.0 ** -32)))
    lo = z & 0xFFFFFFFF
    arc = lo >> _ARC_BITS                                   # lo >= 0: an arithmetic shift is logical here
    off = xp.astype(lo & ((1 << _ARC_BITS) - 1), dtype)
    delta = (off - ((1 << (_ARC_BITS - 1)) - 0.5)) * (2.0 * math.pi / 2.0 ** 32)
    d2 = delta * delta
    cm1 = d2 * (d2 * (1.0 / 24.0) - 0.5)                   # cos(delta) - 1
    sn = delta + delta * (d2 * (d2 * (1.0 / 120.0) - 1.0 / 6.0))   # sin(delta)
    C, S = _tables(xp, delta)
    if arc.dtype != xp.int64:
        arc = xp.astype(arc, xp.int64)                      # an index of the platform's type: two takes
    return r, take_rows(xp, C, arc), take_rows(xp, S, arc), cm1, sn


def normal_pair(xp, base, seed: int, stream: int, shot: int, draw: int, dtype):
    """Two independent standard normal deviates (r cos theta, r sin theta) from one hashed value (Box-Muller;
    the 32-bit radius uniform bounds |N| below 6.7)."""
    r, c, s, cm1, sn = _box_muller_parts(xp, base, stream_key(seed, stream, shot, draw), dtype)
    return r * (c + (c * cm1 - s * sn)), r * (s + (s * cm1 + c * sn))


def normal(xp, base, seed: int, stream: int, shot: int, draw: int, dtype):
    """The first (cosine) deviate of :func:`normal_pair`."""
    r, c, s, cm1, sn = _box_muller_parts(xp, base, stream_key(seed, stream, shot, draw), dtype)
    return r * (c + (c * cm1 - s * sn))

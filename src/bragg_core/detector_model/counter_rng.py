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
the tiling of the image.  Single uniform deviates take the top 53 bits:
u = (z >>> 11 + 0.5) 2^-53, in (0, 1), exactly representable in float64;
pairs (for Box-Muller and the Poisson rejection rounds) take the two 32-bit
halves of one value.
"""

from __future__ import annotations

import math

__all__ = ["GAMMA", "stream_key", "pixel_base", "bits", "uniform", "uniform_pair", "normal", "STREAMS"]

_M64 = (1 << 64) - 1
GAMMA_U = 0x9E3779B97F4A7C15
_M1_U = 0xBF58476D1CE4E5B9
_M2_U = 0x94D049BB133111EB
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


def _shr(x, s: int):
    """Logical right shift of int64 values."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def pixel_base(xp, pixel_index):
    """pixel * gamma (mod 2^64) for an int64 array of global pixel indices (computed once per image)."""
    return pixel_index * GAMMA


def bits(xp, base, key: int):
    """64 random bits (int64) per element of ``base`` for one key."""
    z = base + key
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def uniform(xp, base, key: int, dtype):
    """Uniform deviates in (0, 1) (``dtype`` float64 keeps all 53 bits)."""
    top = xp.astype(_shr(bits(xp, base, key), 11), dtype)
    return (top + 0.5) * (2.0 ** -53)


def uniform_pair(xp, base, key: int, dtype):
    """Two uniform deviates in (0, 1) from one 64-bit value: its high and low 32 bits (resolution 2^-32)."""
    z = bits(xp, base, key)
    hi = xp.astype(_shr(z, 32), dtype)
    lo = xp.astype(z & 0xFFFFFFFF, dtype)
    return (hi + 0.5) * (2.0 ** -32), (lo + 0.5) * (2.0 ** -32)


def normal(xp, base, seed: int, stream: int, shot: int, draw: int, dtype):
    """Standard normal deviates by Box-Muller from the two halves of draw ``draw``
    (the 32-bit radius uniform bounds |N| below 6.7)."""
    u1, u2 = uniform_pair(xp, base, stream_key(seed, stream, shot, draw), dtype)
    return xp.sqrt(-2.0 * xp.log(u1)) * xp.cos((2.0 * math.pi) * u2)

"""Identifiers that look like the real ones and are unique by construction."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_MASK_40 = (1 << 40) - 1
_MASK_64 = (1 << 64) - 1
# Odd multipliers make `x * k mod 2**n` a bijection, so distinct indexes never share an id.
_GOLDEN_40 = 0x9E3779B97F & _MASK_40 | 1


# Two digits per step: ids are built for every row of a million-row export.
_PAIRS = tuple(high + low for high in _BASE62 for low in _BASE62)
_PAIR_BASE = 62 * 62


def base62(value: int, *, width: int) -> str:
    """Encode a non-negative integer in base 62, left-padded (and cut) to `width` characters."""
    text = ""
    while len(text) < width:
        value, pair = divmod(value, _PAIR_BASE)
        text = _PAIRS[pair] + text
    return text[-width:]


def random_base62(rng: random.Random, *, width: int) -> str:
    """Random base-62 text of `width` characters."""
    return base62(rng.getrandbits(6 * width), width=width)


def scramble_64(index: int, *, salt: int) -> int:
    """A 64-bit bijection of `index` that looks random (splitmix64's finalizer)."""
    z = (index + salt) & _MASK_64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK_64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK_64
    return z ^ (z >> 31)


def scramble_40(index: int, *, salt: int) -> int:
    """A 40-bit bijection of `index` (fits in 7 base-62 characters)."""
    # Each step (xor with a right shift, multiply by an odd number mod 2**40) is invertible.
    z = (index + salt) & _MASK_40
    z = ((z ^ (z >> 20)) * _GOLDEN_40) & _MASK_40
    z = ((z ^ (z >> 17)) * 0x94D049BB13) & _MASK_40
    return z ^ (z >> 21)


def seed_salt(seed: int, kind: int) -> int:
    """A salt that differs wildly between seeds, so two seeds' id ranges practically never overlap."""
    return scramble_64(seed, salt=kind)


def stripe_id(*, prefix: str, index: int, salt: int, account_fragment: str, rng: random.Random) -> str:
    """A Stripe-style id: a unique part, the owning account's fragment, random filler (24 characters)."""
    unique = base62(scramble_40(index, salt=salt), width=7)
    return f"{prefix}_1{unique}{account_fragment}{random_base62(rng, width=6)}"

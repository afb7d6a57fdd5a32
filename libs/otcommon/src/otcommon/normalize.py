"""Normalization rules shared by ingest (what is stored) and the query API (what is matched).

The dashboard matches ticket types, sources and referral codes trimmed and lowercased, and
keeps the original text for display; these helpers are the single definition of those rules.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Literal

SourceBucket = Literal["online", "boxoffice", "other"]

_SEPARATORS = re.compile(r"[\s_\-]+")
_WHITESPACE = re.compile(r"\s+")
_NON_DIGITS = re.compile(r"\D+")
_SLUG_INVALID = re.compile(r"[^a-z0-9]+")
_OPENERS = {"(": ")", "[": "]", "{": "}"}


def normalize_text(value: str | None) -> str:
    """Trim, collapse inner whitespace and lowercase (casefold) a value for matching."""
    if not value:
        return ""
    return _WHITESPACE.sub(" ", value).strip().casefold()


def split_ticket_types(value: str | None) -> list[str]:
    """Split a TicketTypes cell on top-level commas; each type normalized, empties and repeats dropped.

    Commas inside brackets belong to one type's name ("VIP (Meet, Greet)" stays whole).
    """
    if not value:
        return []
    parts: list[str] = []
    current: list[str] = []
    closers: list[str] = []
    for char in value:
        if char in _OPENERS:
            closers.append(_OPENERS[char])
        elif closers and char == closers[-1]:
            closers.pop()
        if char == "," and not closers:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    seen: dict[str, None] = {}
    for part in parts:
        normalized = normalize_text(part)
        if normalized:
            seen.setdefault(normalized, None)
    return list(seen)


def source_bucket(purchase_from: str | None) -> SourceBucket:
    """Map PurchaseFrom to one of the three buckets the dashboard counts."""
    compact = _SEPARATORS.sub("", (purchase_from or "").casefold())
    if compact == "online":
        return "online"
    if compact == "boxoffice":
        return "boxoffice"
    return "other"


def normalize_referral_code(value: str | None) -> str | None:
    """Referral codes match trimmed and lowercased; an empty code is no code."""
    normalized = normalize_text(value)
    return normalized or None


def normalize_email(value: str | None) -> str | None:
    """Emails match trimmed and lowercased; anything without an '@' is not an email."""
    normalized = (value or "").strip().casefold()
    return normalized if "@" in normalized else None


def phone_digits(value: str | None) -> str | None:
    """Phones match on their digits alone; fewer than five digits identify nobody."""
    digits = _NON_DIGITS.sub("", value or "")
    return digits if len(digits) >= 5 else None  # noqa: PLR2004 - shorter runs are extensions or noise


def normalize_name(value: str | None) -> str | None:
    """Names match with accents, case and spacing folded."""
    decomposed = unicodedata.normalize("NFKD", normalize_text(value))
    folded = "".join(char for char in decomposed if not unicodedata.combining(char))
    return folded or None


def customer_key(*, email: str | None, phone: str | None, name: str | None) -> str | None:
    """The buyer's identity: normalized email, else phone digits, else normalized name."""
    if normalized := normalize_email(email):
        return f"email:{normalized}"
    if digits := phone_digits(phone):
        return f"phone:{digits}"
    if normalized := normalize_name(name):
        return f"name:{normalized}"
    return None


def search_key(*values: str | None) -> str:
    """Lowercased text searched by the global search; fields joined so no match spans two."""
    return "\n".join(normalize_text(value) for value in values if value)


def slugify(value: str) -> str:
    """A URL- and id-safe slug ("Summer Tour: Berlin" -> "summer-tour-berlin")."""
    decomposed = unicodedata.normalize("NFKD", value)
    ascii_only = decomposed.encode("ascii", "ignore").decode("ascii")
    return _SLUG_INVALID.sub("-", ascii_only.casefold()).strip("-")


def stable_id(*parts: str) -> str:
    """A deterministic id from several values: the same inputs always give the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:32]

"""Human sizes ("4G", "512M", "1.5T") <-> bytes, with the SGE meaning of the suffixes (powers of 1024)."""

from __future__ import annotations

import re

_SUFFIX = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Parse a size; raises ValueError with a message a person can act on."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative, got {text}")
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use a number with an optional K, M, G or T suffix, e.g. 4G)")
    number, suffix = match.groups()
    return int(float(number) * _SUFFIX[suffix.upper()])


def format_size(n_bytes: int) -> str:
    value = float(n_bytes)
    for suffix in ("B", "K", "M", "G", "T"):
        if value < 1024 or suffix == "T":
            return f"{value:.0f}{suffix}" if suffix == "B" or value >= 100 else f"{value:.1f}{suffix}"
        value /= 1024
    raise AssertionError("unreachable")

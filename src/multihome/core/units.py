"""PURE: sizes and rates as people write them (90KB, 100mbit) and as the lab prints them."""

from __future__ import annotations

import re

# Sizes are binary, as in the article (90 KB = 92,160 bytes); rates are decimal, as in tc.
_SIZE = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}
_RATE = {
    "bit": 1,
    "bps": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _SIZE:
        raise ValueError(f"{text!r} is not a size (e.g. 90KB, 1MB, 4096)")
    return int(float(match.group(1)) * _SIZE[match.group(2).lower()])


def parse_rate(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*", text)
    if not match or match.group(2).lower() not in _RATE:
        raise ValueError(f"{text!r} is not a rate (e.g. 100mbit, 1gbit)")
    rate = int(float(match.group(1)) * _RATE[match.group(2).lower()])
    if rate < 10**5:
        raise ValueError(f"{text!r} is too slow for the lab (at least 100kbit)")
    return rate


def human_bytes(count: float) -> str:
    """ifconfig's style: 1.9 GB, 670.3 KB (binary multiples, one decimal)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")


def human_rate(bits_per_second: float) -> str:
    return f"{bits_per_second / 1e6:,.1f} Mbit/s"

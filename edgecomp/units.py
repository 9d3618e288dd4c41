"""The few numeric conventions every layer shares: how a ratio of two measurements is taken and how a count or a
size is written for a person. One copy, so that a record's summary, the report's tables and a compressor's result
agree on them."""

from __future__ import annotations

MB = 1e6  # sizes are shown in MB of 10^6 bytes (the run summary's "6.10 MB", the tables' size columns)
_SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, None where either is unknown or the reference is zero (a ratio to nothing means nothing)."""
    if value is None or not reference:
        return None
    return value / reference


def si_text(value: float, unit: str = "", separator: str = " ") -> str:
    """`value` with an SI prefix and two decimals from a thousand up (12_300_000 -> "12.30 M"), whole below it."""
    for factor, prefix in _SI_PREFIXES:
        if abs(value) >= factor:
            return f"{value / factor:.2f}{separator}{prefix}{unit}"
    return f"{value:.0f}{separator}{unit}".rstrip()

"""Builds TCF v2 core segments for tests (the decoder is checked against published fixtures
separately, so this writer only has to produce the layout the specification describes)."""

from __future__ import annotations

import base64


def _bits(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def _bitfield(numbers: set[int], width: int) -> str:
    return "".join("1" if i + 1 in numbers else "0" for i in range(width))


def tcf_core_string(
    purposes: set[int], vendors: set[int] = frozenset({1}), vendor_list_version: int = 150
) -> str:
    max_vendor = max(vendors) if vendors else 0
    bits = "".join(
        [
            _bits(2, 6),  # version
            _bits(17_000_000_000, 36),  # created
            _bits(17_000_000_000, 36),  # last updated
            _bits(300, 12),  # cmp id
            _bits(1, 12),  # cmp version
            _bits(1, 6),  # consent screen
            _bits(4, 6) + _bits(13, 6),  # language "EN"
            _bits(vendor_list_version, 12),
            _bits(4, 6),  # policy version 4 = TCF v2.2
            "0",  # is service specific
            "0",  # non-standard texts
            _bitfield(set(), 12),  # special features
            _bitfield(purposes, 24),
            _bitfield(set(), 24),  # legitimate interests
            "0",  # purpose one treatment
            _bits(13, 6) + _bits(11, 6),  # publisher country "NL"
            _bits(max_vendor, 16) + "0" + _bitfield(vendors, max_vendor),
            _bits(0, 16) + "0",  # no vendor legitimate interests
            _bits(0, 12),  # no publisher restrictions
        ]
    )
    bits += "0" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")

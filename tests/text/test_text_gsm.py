"""GSM-7 alphabet, encoding choice and segmentation (3GPP TS 23.038 / 23.040)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsms.text import analyse, split_segments
from mailsms.text.gsm import GSM_BASIC, GSM_EXTENSION

# Independent reference, typed from the TS 23.038 table by code point
# (0x1B is the escape and is left as a placeholder).
REF_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x00ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
REF_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
           "]": 0x3E, "|": 0x40, "€": 0x65}  # fmt: skip
ESC = 0x1B


def ref_septets(text: str) -> list[int] | None:
    """Septet codes of text, or None when it is not GSM-7."""
    out: list[int] = []
    for ch in text:
        if ch in REF_EXT:
            out += [ESC, REF_EXT[ch]]
        elif ch != "\x00" and ch in REF_BASIC:
            out.append(REF_BASIC.index(ch))
        else:
            return None
    return out


def ref_units(text: str) -> list[int]:
    data = text.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def ref_segments(text: str) -> int:
    """Straightforward count: encode, then cut parts without orphaning ESC/high surrogates."""
    septets = ref_septets(text)
    if septets is not None:
        units, single, multi = septets, 160, 153

        def dangling(u: int) -> bool:
            return u == ESC
    else:
        units, single, multi = ref_units(text), 70, 67

        def dangling(u: int) -> bool:
            return 0xD800 <= u <= 0xDBFF

    if not units:
        return 0
    if len(units) <= single:
        return 1
    parts = 0
    while units:
        take = multi
        if len(units) > multi and dangling(units[multi - 1]):
            take -= 1
        units = units[take:]
        parts += 1
    return parts


def test_alphabet_matches_spec_table() -> None:
    assert len(REF_BASIC) == 128
    assert frozenset(REF_BASIC) - {"\x00"} == GSM_BASIC
    assert frozenset(REF_EXT) == GSM_EXTENSION
    assert len(GSM_BASIC) == 127


gsm_chars = st.sampled_from(sorted(GSM_BASIC | GSM_EXTENSION))
ext_heavy = st.one_of(gsm_chars, st.sampled_from(sorted(GSM_EXTENSION)))
any_chars = st.one_of(
    gsm_chars,
    st.sampled_from(["é", "ç", "’", "ж", "中", "😀", "🏽", "\U0001f44d", "€", "ß"]),
    st.characters(codec="utf-8"),
)
texts = st.one_of(
    st.text(ext_heavy, max_size=700),
    st.text(any_chars, max_size=400),
    st.text(st.sampled_from(["a", "😀", "€", "ж"]), max_size=400),
)


@settings(max_examples=400)
@given(texts)
def test_segments_concatenate_to_text(text: str) -> None:
    assert "".join(split_segments(text)) == text


@settings(max_examples=400)
@given(texts)
def test_segment_count_matches_reference(text: str) -> None:
    part = analyse(text)
    assert part.segments == ref_segments(text)
    assert len(split_segments(text)) == part.segments
    assert part.encoding == ("GSM-7" if ref_septets(text) is not None else "UCS-2")


@settings(max_examples=400)
@given(texts)
def test_segments_never_split_pairs_and_fit(text: str) -> None:
    segments = split_segments(text)
    multi = len(segments) > 1
    gsm = ref_septets(text) is not None
    for segment in segments:
        # A Python str holds whole code points, so a surrogate pair cannot be
        # cut inside one; check the encoded size of every segment instead.
        if gsm:
            septets = ref_septets(segment)
            assert septets is not None
            assert len(septets) <= (153 if multi else 160)
            assert septets[-1:] != [ESC]
        else:
            units = ref_units(segment)
            assert len(units) <= (67 if multi else 70)
            assert not (units and 0xD800 <= units[-1] <= 0xDBFF)


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("a" * 153 * 6, "GSM-7", 6),
        ("a" * (153 * 6 + 1), "GSM-7", 7),
        ("€" * 80, "GSM-7", 1),  # 160 septets
        ("€" * 80 + "a", "GSM-7", 2),
        ("a" * 159 + "€", "GSM-7", 2),  # 161 septets
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),  # € at position 153 moves to part 2
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # ...which then overflows part 2
        ("a" * 151 + "€" + "a" * 153, "GSM-7", 2),  # € exactly fills part 1
        ("ж" * 70, "UCS-2", 1),
        ("ж" * 71, "UCS-2", 2),
        ("ж" * 134, "UCS-2", 2),
        ("ж" * 135, "UCS-2", 3),
        ("😀" * 35, "UCS-2", 1),
        ("😀" * 36, "UCS-2", 2),
        ("ж" * 66 + "😀" + "ж" * 66, "UCS-2", 3),  # emoji straddles the 67 boundary
        ("ж" * 65 + "😀" + "ж" * 67, "UCS-2", 2),  # emoji exactly ends part 1
        ("a" * 69 + "é" + "ж", "UCS-2", 2),
        ("a" * 160 + "ж", "UCS-2", 3),  # one Cyrillic letter: 161 UCS-2 units
    ],
)
def test_boundaries(text: str, encoding: str, segments: int) -> None:
    part = analyse(text)
    assert (part.encoding, part.segments) == (encoding, segments)
    assert part.segments == ref_segments(text)


def test_euro_at_153_goes_to_next_segment() -> None:
    text = "a" * 152 + "€" + "b" * 10
    first, second = split_segments(text)
    assert first == "a" * 152
    assert second.startswith("€")


def test_emoji_at_67_goes_to_next_segment() -> None:
    text = "ж" * 66 + "😀" + "ж" * 10
    first, second = split_segments(text)
    assert first == "ж" * 66
    assert second.startswith("😀")

"""Transliteration into GSM-7: only when faithful and only when it helps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsms.text import TextOptions, analyse, text_to_sms
from mailsms.text.gsm import GSM_BASIC, GSM_EXTENSION, is_gsm
from mailsms.text.translit import TABLE, transliterate

gsm_text = st.text(st.sampled_from(sorted(GSM_BASIC | GSM_EXTENSION)), max_size=400)
mixed_text = st.text(
    st.one_of(
        st.sampled_from(sorted(GSM_BASIC | GSM_EXTENSION)),
        st.sampled_from(sorted(TABLE)),
        st.sampled_from(["ê", "Š", "ő", "ç", "ж", "中", "😀", "α", "Ω", "ñ"]),
        st.characters(codec="utf-8"),
    ),
    max_size=300,
)


@settings(max_examples=300)
@given(gsm_text)
def test_gsm_text_is_never_changed(text: str) -> None:
    assert transliterate(text) == (text, ())


@settings(max_examples=400)
@given(mixed_text)
def test_never_more_segments(text: str) -> None:
    result, replaced = transliterate(text)
    assert analyse(result).segments <= analyse(text).segments
    if replaced:
        assert is_gsm(result)
    else:
        assert result == text


@settings(max_examples=200)
@given(mixed_text, st.sampled_from(["ж", "中", "😀", "α", "ع"]))
def test_untouched_when_a_non_transliterable_char_is_present(text: str, hard: str) -> None:
    text = text + hard
    assert transliterate(text) == (text, ())


@pytest.mark.parametrize(
    ("text", "expected", "replaced"),
    [
        ("It’s “fine” — really…", 'It\'s "fine" - really...', ("’", "“", "”", "—", "…")),
        ("10\u00a0000\u202f€", "10 000 €", ("\u00a0", "\u202f")),
        ("• one\n• two", "- one\n- two", ("•",)),
        ("Crème brûlée", "Crème brulée", ("û",)),
        ("Škoda Octavia", "Skoda Octavia", ("Š",)),
        ("Łódź", "Lodz", ("Ł", "ó", "ź")),
        ("ΑΘΗΝΑ", "AΘHNA", ("Α", "Η", "Ν")),
        ("`code`", "'code'", ("`",)),
    ],
)
def test_examples(text: str, expected: str, replaced: tuple[str, ...]) -> None:
    assert transliterate(text) == (expected, replaced)


@pytest.mark.parametrize(
    "text",
    ["Привет, “мир”", "αβγ – greek", "你好…", "Great job 👍 — thanks", "°C only"],
)
def test_real_non_latin_text_left_alone(text: str) -> None:
    assert transliterate(text) == (text, ())


def test_ellipses_that_would_cost_more_are_kept() -> None:
    text = "…" * 70  # 1 UCS-2 segment; as "..." it would be 210 septets = 2 segments
    assert transliterate(text) == (text, ())


def test_transliteration_option_off() -> None:
    conversion = text_to_sms("It’s done", TextOptions(transliterate=False))
    assert conversion.messages[0].text == "It’s done"
    assert conversion.messages[0].encoding == "UCS-2"
    assert conversion.ucs2_chars == ("’",)
    assert conversion.transliterated == ()


def test_transliteration_reported() -> None:
    conversion = text_to_sms("It’s done — ok", TextOptions())
    assert conversion.messages[0].text == "It's done - ok"
    assert conversion.messages[0].encoding == "GSM-7"
    assert conversion.transliterated == ("’", "—")
    assert conversion.ucs2_chars == ()

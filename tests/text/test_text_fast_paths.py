"""The fast paths agree with straightforward references.

* segment counting, splitting and truncation (``gsm`` works on positions of
  two-unit characters and bisects) against an encoder-based reference that
  tries every prefix, and against the per-character ``Packer``;
* the pre-check in front of mail-parser-reply's header expression never
  skips a text the expression would match;
* the shortcuts of the per-message path (ASCII checks, the closed-form
  prefix for texts of one-unit characters, the line pre-filters of the
  quote stripper, the skipped normalisation passes) against the general
  code they stand in front of.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st
from mailparser_reply import EmailMessage as ReplyMessage
from mailparser_reply.constants import GENERIC_MAIL_SEPARATOR, MAIL_LANGUAGES

from mailsms.text import gsm, normalize, quotes
from mailsms.text.convert import _ELLIPSIS, _TRIM_END, _word_cut, split_messages, truncate
from mailsms.text.gsm import GSM_BASIC, GSM_EXTENSION, Encoding
from tests.text.test_text_gsm import ESC, ref_septets, ref_units

CAPACITY = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def ref_encode(text: str, encoding: Encoding) -> list[int] | None:
    return ref_septets(text) if encoding == "GSM-7" else ref_units(text)


def ref_count(units: list[int], encoding: Encoding) -> int:
    """Segments of an encoded text: parts never end in ESC or a high surrogate."""
    single, multi = CAPACITY[encoding]
    if not units:
        return 0
    if len(units) <= single:
        return 1
    parts = 0
    while units:
        take = multi
        if len(units) > multi:
            last = units[multi - 1]
            if (last == ESC) if encoding == "GSM-7" else (0xD800 <= last <= 0xDBFF):
                take -= 1
        units = units[take:]
        parts += 1
    return parts


def ref_longest_fitting_prefix(text: str, encoding: Encoding, limit: int, suffix: str) -> int:
    """Try prefixes one by one, encoding each (plus the suffix) from scratch."""
    tail = ref_encode(suffix, encoding)
    assert tail is not None
    best = -1
    for end in range(len(text) + 1):
        head = ref_encode(text[:end], encoding)
        if head is None or ref_count(head + tail, encoding) > limit:
            break
        best = end
    return best


def ref_truncate(text: str, limit: int) -> str:
    """convert.truncate spelled out on top of the reference prefix search."""
    best_len, best_text = -1, ""
    for encoding in ("GSM-7", "UCS-2"):
        suffix = _ELLIPSIS[encoding]
        end = ref_longest_fitting_prefix(text, encoding, limit, suffix)
        if end <= 0:
            continue
        end = _word_cut(text, end)
        prefix = text[:end].rstrip(_TRIM_END)
        if prefix and end > best_len:
            best_len, best_text = end, prefix + suffix
    return best_text


def packer_segments(text: str, encoding: Encoding) -> int:
    packer = gsm.Packer(encoding)
    packer.add_all(text)
    return packer.segments


gsm_chars = st.sampled_from(sorted(GSM_BASIC | GSM_EXTENSION))
words = st.one_of(
    st.sampled_from(["a", "ab", "word", "€", "{x}", "ж", "жж", "😀", "é", "👍🏽", "中文"]),
    st.text(gsm_chars, min_size=1, max_size=8),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=3),
)
separators = st.sampled_from([" ", " ", "\n", ", ", " - "])
prose = st.lists(st.tuples(words, separators), max_size=120).map(
    lambda pairs: "".join(w + s for w, s in pairs)
)
texts = st.one_of(
    prose,
    st.text(st.sampled_from(["a", " ", "€", "[", "😀", "ж", "\n"]), max_size=500),
    st.text(gsm_chars, max_size=700),
)
limits = st.integers(min_value=1, max_value=4)
encodings = st.sampled_from(["GSM-7", "UCS-2"])


@settings(max_examples=300, deadline=None)
@given(texts, encodings, limits, st.sampled_from(["", "...", "…", "€", "😀", "a€"]))
def test_longest_fitting_prefix_matches_reference(
    text: str, encoding: Encoding, limit: int, suffix: str
) -> None:
    if encoding == "GSM-7" and not gsm.is_gsm(suffix):
        suffix = "..."
    assert gsm.longest_fitting_prefix(text, encoding, limit, suffix) == (
        ref_longest_fitting_prefix(text, encoding, limit, suffix)
    )


@settings(max_examples=300, deadline=None)
@given(texts, limits)
def test_truncate_matches_reference(text: str, limit: int) -> None:
    result = truncate(text, limit)
    assert result == ref_truncate(text, limit)
    if result:
        assert gsm.count_segments(result) <= limit


@settings(max_examples=200, deadline=None)
@given(texts, limits)
def test_split_messages_fit_and_keep_the_words(text: str, limit: int) -> None:
    chunks = split_messages(text, limit)
    for chunk in chunks:
        encoding = gsm.encoding_of(chunk)
        units = ref_encode(chunk, encoding)
        assert units is not None
        assert ref_count(units, encoding) <= limit
    assert "".join(chunks).split() == text.split() or len(chunks) > 1


@settings(max_examples=300, deadline=None)
@given(texts, encodings)
def test_counting_matches_packer_and_reference(text: str, encoding: Encoding) -> None:
    assert gsm.count_segments(text, encoding) == packer_segments(text, encoding)
    assert gsm.text_units(text, encoding) == sum(gsm.char_cost(ch, encoding) for ch in text)
    natural = gsm.encoding_of(text)
    units = ref_encode(text, natural)
    assert units is not None
    assert gsm.count_segments(text) == ref_count(units, natural)
    assert gsm.non_gsm_chars(text) == tuple(
        dict.fromkeys(ch for ch in text if not gsm.is_gsm_char(ch))
    )


def test_longest_fitting_prefix_edges() -> None:
    assert gsm.longest_fitting_prefix("", "GSM-7", 1, "...") == 0
    assert gsm.longest_fitting_prefix("abc", "GSM-7", 0, "") == 0  # only the empty text
    assert gsm.longest_fitting_prefix("abc", "GSM-7", 0, "...") == -1
    assert gsm.longest_fitting_prefix("a" * 200, "GSM-7", 1, "...") == 157
    assert gsm.longest_fitting_prefix("a" * 200 + "ж", "GSM-7", 6, "...") == 200
    assert gsm.longest_fitting_prefix("ab жd", "GSM-7", 6) == 3
    # The € does not fit at septet 153: part 2 starts with it (2 + 151 septets).
    assert gsm.longest_fitting_prefix("a" * 152 + "€" + "a" * 500, "GSM-7", 2, "") == 152 + 152
    assert gsm.longest_fitting_prefix("ж" * 66 + "😀" * 40, "UCS-2", 2, "…") == 66 + 33


# --- mail-parser-reply pre-check ---------------------------------------------

_UNESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)")


def _literal_source(pattern: str) -> str:
    """Pattern source with \\uXXXX and escaped punctuation turned into the characters."""
    return _UNESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else m[2], pattern).lower()


def test_library_anchors() -> None:
    """Every expression the pre-check stands in for needs one of its anchors.

    Guards a mail-parser-reply upgrade: a new language or a reworded
    attribution must be reflected in quotes._LIBRARY_ANCHORS.
    """
    languages = {*quotes._LIBRARY_LANGUAGES, "en"}
    for language in languages:
        wrote = _literal_source(MAIL_LANGUAGES[language]["wrote_header"])
        assert any(anchor in wrote for anchor in quotes._LIBRARY_ANCHORS), language
        # Outlook header blocks need two "keyword:" lines, keywords stay short.
        from_header = MAIL_LANGUAGES[language]["from_header"]
        assert "){2,}" in from_header, language
        for keywords in re.findall(r"\[\* \]\*\(\?:([^)]*)\):", from_header):
            for keyword in keywords.split("|"):
                assert len(_literal_source(keyword)) <= quotes._LIBRARY_KEY_MAX, keyword
    assert "original message" in _literal_source(GENERIC_MAIL_SEPARATOR)
    fresh = ReplyMessage(text="", languages=list(quotes._LIBRARY_LANGUAGES)).HEADER_REGEX
    assert quotes._library_header_regex().pattern == fresh.pattern


_LINE_PIECES = st.sampled_from([
    "From:", "Von:", "De :", "De:", "Da:", "A:", "An:", "To:", "Sent:", "Date:", "Subject:",
    "Cc:", "Betreff:", "Objet :", "Envoyé :", "À :", "Para:", "Asunto:", "Fecha:", "Od:",
    "Komu:", "Fra:", "Til:", "Från:", "Till:", "보낸 사람:", "받는 사람:", "发件人:", "主题:",
    "Organización:", "Organization:", "  :", "*From:*", "**Sent:**", "> ", ">", "*", " ",
    "_" * 32, "-" * 32, "-----", "Original Message", "-----Original Message-----",
    "On Mon, 1 Jan 2024, Bob", "wrote:", "On Mon, 1 Jan 2024 at 10:00, Bob <b@x.com> wrote:",
    "Am 1. Jan. schrieb Bob:", "Le 1 janv. a écrit :", "El lun, escribió:",
    "Il giorno ha scritto:", "Op 1 jan schreef:", "Dne 1. napsal(a):", "Den 1. jan skrev Bob:",
    "2024年1月1日(月) 10:00 Bob <b@x>:", "2024년 1월 1일 님이 작성하였습니다:",
    "2024年1月1日 写道：", "bob@example.com", "10:30", "x", "Hello", "WROTE:", "ſchrieb",
])  # fmt: skip
_LINES = st.lists(
    st.lists(st.one_of(_LINE_PIECES, st.text(max_size=6)), max_size=5).map(
        lambda pieces: " ".join(pieces).strip()
    ),
    max_size=8,
)


@settings(max_examples=500, deadline=None)
@given(_LINES)
def test_library_precheck_never_skips_a_match(lines: list[str]) -> None:
    # _library_cut hands over stripped lines joined by newlines.
    text = "\n".join(line.strip() for line in lines)
    parser = ReplyMessage(text=text, languages=list(quotes._LIBRARY_LANGUAGES))
    if quotes._library_header_regex().search(parser.text):
        assert quotes._may_have_library_header(text)


def test_library_precheck_skips_plain_prose() -> None:
    text = "Meeting moved to 10:30 tomorrow.\nBring the slides: all of them.\nThanks"
    assert not quotes._may_have_library_header(text)
    assert quotes._may_have_library_header("From: a\nTo: b")
    assert quotes._may_have_library_header("On Monday Bob wrote:")


_FOLDS = {"i": ["I", "İ", "ı"], "s": ["S", "ſ"], "k": ["K", "\u212a"], "é": ["É"], "ó": ["Ó"]}


@st.composite
def _cased_anchor_texts(draw: st.DrawFn) -> str:
    """An anchor with its letters in any case or re-equivalent form, in some text."""
    anchor = draw(st.sampled_from(quotes._LIBRARY_ANCHORS))
    letters = [
        draw(st.sampled_from([ch, ch.upper(), *_FOLDS.get(ch, [])])) if ch.isalpha() else ch
        for ch in anchor
    ]
    return draw(st.text(max_size=5)) + "".join(letters) + draw(st.text(max_size=5))


@settings(max_examples=500, deadline=None)
@given(st.one_of(_cased_anchor_texts(), st.text()))
def test_library_anchor_folding_matches_ignorecase(text: str) -> None:
    """The lowered-text lookup finds whatever an IGNORECASE regex would."""
    assert all(anchor == anchor.lower() for anchor in quotes._LIBRARY_ANCHORS)
    reference = re.compile("|".join(map(re.escape, quotes._LIBRARY_ANCHORS)), re.IGNORECASE)
    if reference.search(text):
        assert quotes._may_have_library_header(text)


# --- shortcuts of the per-message path ----------------------------------------

# Mostly GSM-7 ASCII with a stray ASCII character (which may be the only
# character outside the alphabet, or the only wide one).
ascii_texts = st.builds(
    lambda text, stray, at: text[:at] + stray + text[at:],
    st.text(st.sampled_from([chr(c) for c in range(0x80) if chr(c) in GSM_BASIC]), max_size=300),
    st.characters(max_codepoint=0x7F),
    st.integers(min_value=0, max_value=300),
)
any_texts = st.one_of(texts, ascii_texts, st.text(max_size=200))


def test_ascii_shortcuts_agree_on_every_ascii_character() -> None:
    """The ASCII checks depend on each character alone: try them all."""
    for code in range(0x80):
        text = f"ab{chr(code)}c"
        assert gsm.is_gsm(text) == (gsm._NON_GSM.search(text) is None), code
        for encoding in ("GSM-7", "UCS-2"):
            wide = [m.start() for m in gsm._WIDE[encoding].finditer(text)]
            assert gsm._Layout.of(text, encoding).wide == wide, (code, encoding)


@settings(max_examples=500, deadline=None)
@given(any_texts)
def test_is_gsm_shortcut_matches_the_alphabet(text: str) -> None:
    expected = all(gsm.is_gsm_char(ch) for ch in text)
    assert gsm.is_gsm(text) == expected == (gsm._NON_GSM.search(text) is None)
    assert gsm.non_gsm_chars(text) == tuple(dict.fromkeys(gsm._NON_GSM.findall(text)))


@settings(max_examples=500, deadline=None)
@given(any_texts, encodings, st.integers(min_value=0, max_value=400))
def test_layout_shortcut_finds_every_wide_character(
    text: str, encoding: Encoding, size: int
) -> None:
    size = min(size, len(text))
    for layout, end in ((gsm._Layout.of(text, encoding), len(text)),
                        (gsm._Layout.of(text, encoding, size), size)):  # fmt: skip
        assert layout.size == end
        assert layout.wide == [m.start() for m in gsm._WIDE[encoding].finditer(text, 0, end)]


one_unit_texts = st.one_of(
    st.text(st.sampled_from(sorted(GSM_BASIC)), max_size=1300),
    st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]), max_size=400),
)


@settings(max_examples=500, deadline=None)
@given(
    one_unit_texts,
    encodings,
    st.integers(min_value=0, max_value=8),
    st.sampled_from(["", "...", "…", ".", "a" * 70, "a" * 160, "a" * 400]),
)
def test_fitting_prefix_shortcut_matches_the_bisection(
    text: str, encoding: Encoding, limit: int, suffix: str
) -> None:
    """Texts and suffixes of one-unit characters take the closed form."""
    if encoding == "GSM-7" and not gsm.is_gsm(suffix):
        suffix = "..."
    single, multi = gsm.capacities(encoding)
    size = min(len(text), max(single, limit * multi))
    if encoding == "GSM-7":
        stop = gsm._NON_GSM.search(text, 0, size)
        size = stop.start() if stop else size
    layout = gsm._Layout.of(text, encoding, size)
    costs = [gsm.char_cost(ch, encoding) for ch in suffix]
    general = gsm._last_fitting_end(layout, encoding, limit, costs)
    assert gsm.longest_fitting_prefix(text, encoding, limit, suffix) == general


def normalize_reference(text: str) -> str:
    """normalize_text without its shortcuts for ASCII and for no blank runs."""
    text = normalize._LONE_SURROGATE.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = normalize._INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = normalize._BLANK_RUN.sub("\n\n", text)
    return text.strip("\n").strip()


_NORMALIZE_PIECES = st.sampled_from(
    ["\n", "\r", "\r\n", " ", "\t", "a", "\u200b", "\u00ad", "\ufeff", "e\u0301", "\ud800", "é"]
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(any_texts, st.lists(_NORMALIZE_PIECES, max_size=40).map("".join)))
def test_normalize_shortcuts_match_the_full_passes(text: str) -> None:
    assert normalize.normalize_text(text) == normalize_reference(text)


_MARKERS = (quotes._FORWARD, quotes._ORIGINAL, quotes._RULE, quotes._FROM_LINE,
            quotes._ATTRIBUTION_OPENER)  # fmt: skip
_SIGNATURES = (quotes._SIG_DELIMITER, quotes._MOBILE, quotes._RULE)
_QUOTE_LINES = st.one_of(
    _LINE_PIECES,
    st.lists(st.one_of(_LINE_PIECES, st.text(max_size=4)), max_size=4).map(" ".join),
    st.sampled_from([
        "-- ", "--", "Sent from my iPhone", "Von meinem iPhone gesendet", "Get Outlook for iOS",
        "_" * 12, "Best regards,", "Mit freundlichen Grüßen", "MIT FREUNDLICHEN GRUESSEN!",
        "Begin forwarded message:", "---------- Forwarded message ---------", "no dia 1",
        "Às 10:00, Bob escreveu:", "İl giorno ha scritto:", "Bob wrote:", "Bob wrote:\n",
    ]),
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(_QUOTE_LINES)
def test_quote_line_prefilters_match_their_expressions(line: str) -> None:
    assert bool(quotes._MARKER_LINE.match(line)) == any(p.match(line) for p in _MARKERS)
    assert bool(quotes._SIGNATURE_LINE.match(line)) == any(p.match(line) for p in _SIGNATURES)
    if quotes._GENERIC_ATTRIBUTION.match(line):
        assert line.endswith((":", ":\n"))
    if quotes._VALEDICTION.match(line):
        assert len(line) <= quotes._VALEDICTION_MAX_CHARS


def test_valediction_length_bound_is_the_longest_match() -> None:
    widest = re._parser.parse(quotes._VALEDICTION.pattern, quotes._VALEDICTION.flags).getwidth()
    assert widest[1] == quotes._VALEDICTION_MAX_CHARS
    assert quotes._VALEDICTION.match("Mit freundlichen Gruessen,")


@settings(max_examples=500, deadline=None)
@given(_LINES)
def test_library_key_lines_found_line_by_line(lines: list[str]) -> None:
    """The per-line "keyword:" check counts what a multiline scan finds."""
    text = "\n".join(lines)
    scan = re.compile(quotes._LIBRARY_KEY_LINE.pattern, re.MULTILINE)
    folded = text.translate(quotes._LIBRARY_FOLD).lower()
    anchored = any(anchor in folded for anchor in quotes._LIBRARY_ANCHORS)
    expected = anchored or len(list(scan.finditer(text))) >= 2
    assert quotes._may_have_library_header(text) == expected

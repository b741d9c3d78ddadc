"""Removal of quoted replies, forwarded originals and signatures.

Works on the plain text of a body (``html.py`` renders HTML quotes as ``>``
lines and marks Outlook originals and signature blocks with sentinels).
Detected, in English, German, French, Spanish, Italian, Portuguese and
Dutch:

* reply attributions: Gmail/Thunderbird ``On <date>, <name> wrote:`` (also
  wrapped over up to three lines), Apple Mail/iOS
  ``On <date>, at <time>, <name> wrote:``, ``Am ... schrieb ...:``,
  ``Le ... a écrit :``, ``El ... escribió:``, ``Il ... ha scritto:``,
  ``Em ... escreveu:``, ``Op ... schreef ...:``;
* Outlook header blocks (``From: / Sent: / To: / Subject:`` and their
  translations), ``-----Original Message-----``, the underscore rule;
* ``>``-quoted lines (inline and bottom-posted answers are kept);
* the ``-- `` signature delimiter (RFC 3676 section 4.3), mobile sign-offs
  (``Sent from my iPhone``, ``Von meinem iPhone gesendet``, ...) and a
  closing valediction block (``Best regards,`` + name lines).

mail-parser-reply's header expressions are used as a second opinion when
none of the above matched, which adds its other languages (Czech, Danish,
Swedish, Japanese, Korean, Chinese).  We do not rely on it alone: judged on
our fixtures it misses Spanish Gmail attributions, Portuguese entirely,
French Outlook headers (``De :``), wrapped attributions of
``Am ... schrieb``, and its signature rules cut messages that begin a line
with "Thanks," or contain a "- item" list.

Forwarded mail: what is sent is the forwarder's own text above the forward
marker; the forwarded original is dropped (reported as ``forward``).  When
the forwarder wrote nothing (a bare forward, e.g. an alert relayed to the
gateway), the forwarded message's own body is sent instead, without its
header block (reported as ``forward-header``), itself stripped of quotes
and signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from mailparser_reply import EmailMessage as _ReplyMessage

from mailsms.text.html import QUOTE_SENTINEL, SIGNATURE_SENTINEL

_I: Final = re.IGNORECASE

# Reply attributions that open with the localised "On"; safe to cut on
# even without a following ">" block.
_ATTRIBUTION: Final = re.compile(
    r"^(?:"
    r"on\b.{1,300}\bwrote"  # en
    r"|am\b.{1,300}\bschrieb\b.{0,300}"  # de
    r"|le\b.{1,300}\ba\s+écrit"  # fr
    r"|el\b.{1,300}\bescribió"  # es
    r"|il\b.{1,300}\bha\s+scritto"  # it
    r"|(?:em|no\s+dia|a|às)\b.{1,300}\bescreveu"  # pt
    r"|op\b.{1,300}\b(?:schreef\b.{0,300}|het\s+volgende\s+geschreven)"  # nl
    r")\s*:$",
    _I,
)
_ATTRIBUTION_OPENER: Final = re.compile(r"^(?:on|am|le|el|il|em|no\s+dia|a|às|op)\b", _I)
# "<name> wrote:" without an opener: only an attribution when quotes follow.
_GENERIC_ATTRIBUTION: Final = re.compile(
    r"^.{1,300}\b(?:wrote|schrieb(?:\s+am\b.{1,100})?|a\s+écrit|escribió|ha\s+scritto"
    r"|escreveu|schreef)\s*:$",
    _I,
)

_FROM_KEYS: Final = r"from|von|de|da|van"
_OTHER_KEYS: Final = (
    r"sent|date|to|subject|cc|bcc|reply-to|gesendet|datum|an|betreff|envoyé|envoyé le|"
    r"à|objet|enviado|enviada|fecha|para|asunto|inviato|data|a|oggetto|assunto|"
    r"verzonden|aan|onderwerp"
)
_HEADER_TMPL: Final = r"^[*_]{{0,2}}(?:{keys})[*_]{{0,2}}[ \u00a0]?:[*_]{{0,2}}(?:\s|$)"
_FROM_LINE: Final = re.compile(_HEADER_TMPL.format(keys=_FROM_KEYS), _I)
_OTHER_LINE: Final = re.compile(_HEADER_TMPL.format(keys=_OTHER_KEYS), _I)

_ORIGINAL: Final = re.compile(
    r"^-{2,}\s*(?:original message|ursprüngliche nachricht|originalnachricht|"
    r"message d['’]origine|mensaje original|messaggio originale|mensagem original|"
    r"oorspronkelijk bericht|origineel bericht)\s*-{2,}$",
    _I,
)
_FORWARD: Final = re.compile(
    r"^(?:-{2,}\s*(?:forwarded message|weitergeleitete nachricht|message transféré|"
    r"mensaje reenviado|messaggio inoltrato|mensagem encaminhada|mensagem reencaminhada|"
    r"doorgestuurd bericht|original-nachricht)\s*-{2,}"
    r"|(?:begin forwarded message|anfang der weitergeleiteten (?:nachricht|e-mail)|"
    r"début du message (?:réexpédié|transféré)|inicio del mensaje reenviado|"
    r"inizio messaggio inoltrato|início da mensagem (?:reencaminhada|encaminhada)|"
    r"begin doorgestuurd bericht)\s*:)$",
    _I,
)
_RULE: Final = re.compile(r"^_{10,}$")
_SIG_DELIMITER: Final = re.compile(r"^--\s?$")
_MOBILE: Final = re.compile(
    r"^(?:sent from my\b.{1,100}|sent from (?:outlook|mail|yahoo mail|gmail)\b.{0,100}"
    r"|get outlook for\b.{1,100}|sent with proton mail\b.{0,100}"
    r"|outlook für .{1,60} (?:herunterladen|beziehen)|télécharger outlook pour\b.{1,100}"
    r"|obtener outlook para\b.{1,100}|ottieni outlook per\b.{1,100}"
    r"|(?:obter|baixe) o outlook para\b.{1,100}|outlook voor .{1,60} downloaden"
    r"|von meinem\b.{1,100}\bgesendet|gesendet (?:von|mit) .{1,100}"
    r"|envoyé (?:de|depuis) mon\b.{1,100}|enviado desde mi\b.{1,100}"
    r"|enviado (?:do|de|a partir do) meu\b.{1,100}|inviato da\b.{1,100}"
    r"|(?:verzonden|verstuurd) (?:vanaf|met|van) mijn\b.{1,100})$",
    _I,
)
_VALEDICTION: Final = re.compile(
    r"^(?:best regards|kind regards|warm regards|regards|best wishes|best|cheers|thanks|"
    r"thank you|many thanks|thanks again|sincerely|yours sincerely|yours truly|all the best|"
    r"take care|mit freundlichen gr(?:ü|ue)(?:ß|ss)en|freundliche gr(?:ü|ue)(?:ß|ss)e|"
    r"(?:viele|beste|liebe|herzliche|schöne) gr(?:ü|ue)(?:ß|ss)e|gr(?:ü|ue)(?:ß|ss)e|"
    r"gruß|gruss|lg|mfg|vg|danke|cordialement|bien cordialement|bien à vous|salutations|"
    r"meilleures salutations|bonne journée|merci|amicalement|saludos|un saludo|atentamente|"
    r"cordialmente|gracias|muchas gracias|un abrazo|saludos cordiales|cordiali saluti|"
    r"saluti|distinti saluti|grazie|un saluto|buona giornata|atenciosamente|cumprimentos|"
    r"melhores cumprimentos|abraços|abraço|obrigado|obrigada|saudações|"
    r"met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|hartelijke groeten|groeten|"
    r"groet|bedankt|mvg)[,.!]?$",
    _I,
)


# Each line is checked against several anchored expressions; one pass of
# their union (the same expressions, so it matches exactly when one of
# them does) lets the many lines that are none of these through in one
# regex call instead of five.
def _union(*patterns: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), _I)


_MARKER_LINE: Final = _union(_FORWARD, _ORIGINAL, _RULE, _FROM_LINE, _ATTRIBUTION_OPENER)
_SIGNATURE_LINE: Final = _union(_SIG_DELIMITER, _MOBILE, _RULE)

# Longest text _VALEDICTION can match ("mit freundlichen gruessen,"): longer
# lines are not tried against its hundred alternatives.
_VALEDICTION_MAX_CHARS: Final = 26
_SIGNATURE_BLOCK_LINES: Final = 6
_SIGNATURE_LINE_MAX: Final = 80
_MAX_FORWARD_DEPTH: Final = 3
# mail-parser-reply languages consulted as a second opinion (Polish is left
# out: its header rule fires on a single "Do:" line).
_LIBRARY_LANGUAGES: Final = ("en", "de", "fr", "es", "it", "nl", "cs", "da", "sv", "ja", "ko", "zh")
_LIBRARY_MAX_CHARS: Final = 20_000
_LIBRARY_MAX_LINE: Final = 300
# Cheap necessary conditions for the library's header expression, which
# tries some 25 alternatives at every position of the body.  Its reply
# attributions each contain one of these literals (test_library_anchors
# checks them against the installed library), the "-----Original
# Message-----" separator contains "original message", and its Outlook
# header blocks ("from_header") need two lines that start, after quote
# marks, emphasis and spaces, with a short keyword and a colon.  Its text
# normalisation only strips lines and drops underscore/hyphen rules, hence
# the [_-] in the line prefix.  The anchors are looked up in the lowered
# text (a regex alternation under IGNORECASE is six times slower): str.lower
# agrees with the library's IGNORECASE matching on the anchors' letters
# except for the characters re also folds to "i" or "s", mapped first.
_LIBRARY_ANCHORS: Final = (
    "wrote:", "schrieb", "a écrit", "escribió:", "ha scritto:", "schreef:",
    "napsal(a):", "skrev", "年", "님이 작성하였습니다:", "写道：", "original message",
)  # fmt: skip
_LIBRARY_FOLD: Final = str.maketrans({"İ": "i", "ı": "i", "ſ": "s"})
_LIBRARY_KEY_MAX: Final = 16  # longest header keyword: "Organización" (12)
_LIBRARY_KEY_LINE: Final = re.compile(rf"^[>*_\- ]*[^:\n]{{0,{_LIBRARY_KEY_MAX}}}:", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Stripped:
    text: str
    removed: tuple[str, ...]  # subset of quote, signature, forward, forward-header


@dataclass(frozen=True, slots=True)
class _Cut:
    index: int  # first line of the removed original
    kind: str  # "quote" or "forward"
    marker: int  # line of the forward marker (start of forwarded headers)


def _is_quoted(line: str) -> bool:
    return line.startswith(">")


def _next_content(lines: list[str], start: int) -> int:
    """Index of the next non-blank line at or after start (len if none)."""
    index = start
    while index < len(lines) and not lines[index].strip():
        index += 1
    return index


def _header_block_at(lines: list[str], index: int) -> bool:
    """An Outlook-style ``From:`` line followed closely by another header line."""
    if not _FROM_LINE.match(lines[index]):
        return False
    return any(_OTHER_LINE.match(line) for line in lines[index + 1 : index + 6])


def _attribution_at(lines: list[str], index: int) -> int:
    """Last line of a reply attribution starting at index, or -1."""
    if not _ATTRIBUTION_OPENER.match(lines[index]):
        return -1
    for span in range(1, 4):
        chunk = lines[index : index + span]
        if len(chunk) < span or any(not line for line in chunk[1:]):
            break
        if _ATTRIBUTION.match(" ".join(chunk)):
            return index + span - 1
    return -1


def _is_inline(lines: list[str], after: int) -> bool:
    """True when own (unquoted) text follows a quoted block after ``after``."""
    seen_quote = False
    for line in lines[after + 1 :]:
        if _is_quoted(line):
            seen_quote = True
        elif line and seen_quote and line not in (QUOTE_SENTINEL, SIGNATURE_SENTINEL):
            return True
    return False


def _find_cut(lines: list[str], forward_hint: bool, drop: set[int]) -> _Cut | None:
    """Where the quoted or forwarded original starts; inline attributions go to drop."""
    original_kind = "forward" if forward_hint else "quote"
    index = 0
    while index < len(lines):
        line = lines[index]
        if line == QUOTE_SENTINEL:
            following = _next_content(lines, index + 1)
            if following < len(lines) and _FORWARD.match(lines[following]):
                return _Cut(index, "forward", following)
            return _Cut(index, original_kind, index)
        if not _MARKER_LINE.match(line):
            index += 1
            continue
        if _FORWARD.match(line):
            return _Cut(index, "forward", index)
        if _ORIGINAL.match(line):
            return _Cut(index, original_kind, index)
        if _RULE.match(line):
            following = _next_content(lines, index + 1)
            if following < len(lines) and _header_block_at(lines, following):
                return _Cut(index, original_kind, following - 1)
        if _header_block_at(lines, index):
            return _Cut(index, original_kind, index - 1)
        end = _attribution_at(lines, index)
        if end >= 0:
            if not _is_inline(lines, end):
                return _Cut(index, "quote", end)
            drop.update(range(index, end + 1))
            index = end
        index += 1
    return _library_cut(lines, drop)


def _may_have_library_header(text: str) -> bool:
    """False only when the library's header expression cannot match the text."""
    # The fold only maps non-ASCII characters.
    folded = (text if text.isascii() else text.translate(_LIBRARY_FOLD)).lower()
    if any(anchor in folded for anchor in _LIBRARY_ANCHORS):
        return True
    # A "keyword:" match never spans lines, so matching line by line finds
    # the same lines as scanning the text, and lines without a colon need
    # no regex call (a multiline scan tries every position of the text).
    key_lines = (line for line in text.split("\n") if ":" in line and _LIBRARY_KEY_LINE.match(line))
    return next(key_lines, None) is not None and next(key_lines, None) is not None


@lru_cache(maxsize=1)
def _library_header_regex() -> re.Pattern[str]:
    """mail-parser-reply's compiled header expression for our languages (built once)."""
    parser = _ReplyMessage(text="", languages=list(_LIBRARY_LANGUAGES))
    pattern: re.Pattern[str] = parser.HEADER_REGEX
    return pattern


def _library_cut(lines: list[str], drop: set[int]) -> _Cut | None:
    """Second opinion from mail-parser-reply's localised header expressions."""
    # Its expressions backtrack quadratically on long lines; no header line
    # is that long, so blank those out (keeping line numbers).
    text = "\n".join([line if len(line) <= _LIBRARY_MAX_LINE else "" for line in lines])
    text = text[:_LIBRARY_MAX_CHARS]
    if not text.strip() or not _may_have_library_header(text):
        return None
    parser = _ReplyMessage(text=text, languages=list(_LIBRARY_LANGUAGES))
    for match in _library_header_regex().finditer(parser.text):
        first = next((p.strip() for p in match.group(0).split("\n") if p.strip()), "")
        for index, line in enumerate(lines):
            # Quoted lines and inline attributions are handled already.
            if first and line == first and index not in drop and not _is_quoted(line):
                return _Cut(index, "quote", index)
    return None


def _cut_signature(lines: list[str]) -> tuple[list[str], bool, bool]:
    """(lines above the signature, a signature was cut, quotes went with it)."""
    for index, line in enumerate(lines):
        if line == SIGNATURE_SENTINEL or _SIGNATURE_LINE.match(line):
            quotes_below = any(_is_quoted(tail) for tail in lines[index + 1 :])
            return lines[:index], True, quotes_below
    return lines, False, False


def _remove_quoted(lines: list[str]) -> tuple[list[str], bool]:
    kept: list[str] = []
    removed = False
    for index, line in enumerate(lines):
        if _is_quoted(line):
            removed = True
            continue
        # The expression ends in ":$"; testing that first spares its
        # backtracking over every other line.
        if line.endswith((":", ":\n")) and _GENERIC_ATTRIBUTION.match(line):
            following = _next_content(lines, index + 1)
            if following < len(lines) and _is_quoted(lines[following]):
                removed = True
                continue
        kept.append(line)
    return kept, removed


def _cut_valediction(lines: list[str]) -> tuple[list[str], bool]:
    """Drop a closing "Best regards," + a few short name/title lines."""
    content = [i for i, line in enumerate(lines) if line.strip()]
    if len(content) < 2:
        return lines, False
    for position in range(max(1, len(content) - _SIGNATURE_BLOCK_LINES - 1), len(content)):
        index = content[position]
        candidate = lines[index].strip()
        if len(candidate) > _VALEDICTION_MAX_CHARS or not _VALEDICTION.match(candidate):
            continue
        tail = [lines[i] for i in content[position + 1 :]]
        if all(len(line) <= _SIGNATURE_LINE_MAX for line in tail):
            return lines[:index], True
    return lines, False


def _skip_forward_headers(lines: list[str], start: int) -> list[str]:
    index = _next_content(lines, start)
    seen_header = False
    while index < len(lines):
        line = lines[index]
        if _FROM_LINE.match(line) or _OTHER_LINE.match(line):
            seen_header = True
            index += 1
        elif not line.strip() or not seen_header:
            break
        else:
            index += 1  # a wrapped header value (long To: list)
    return lines[index:]


def _strip_lines(
    lines: list[str], forward_hint: bool, depth: int, removed: dict[str, None]
) -> list[str]:
    drop: set[int] = set()
    cut = _find_cut(lines, forward_hint, drop)
    if drop:
        removed["quote"] = None
    end = cut.index if cut is not None else len(lines)
    region = [line for i, line in enumerate(lines[:end]) if i not in drop]

    region, had_signature, quotes_below = _cut_signature(region)
    region, had_quotes = _remove_quoted(region)
    had_quotes = had_quotes or quotes_below
    region, had_valediction = _cut_valediction(region)
    region = [line for line in region if line not in (QUOTE_SENTINEL, SIGNATURE_SENTINEL)]

    if any(line.strip() for line in region):
        if cut is not None:
            removed[cut.kind] = None
    elif cut is not None and cut.kind == "forward" and depth < _MAX_FORWARD_DEPTH:
        removed["forward-header"] = None
        body = _skip_forward_headers(lines, cut.marker + 1)
        return _strip_lines(body, False, depth + 1, removed)
    elif cut is not None:
        removed[cut.kind] = None
    if had_quotes:
        removed["quote"] = None
    if had_signature or had_valediction:
        removed["signature"] = None
    return region


def strip_reply(text: str, *, forward_hint: bool = False) -> Stripped:
    """Keep the sender's own text: drop quotes, forwarded originals, signatures.

    ``forward_hint`` (the subject says "Fwd:") makes an Outlook header block
    count as a forward rather than a reply quote.
    """
    lines = [line.strip() for line in text.split("\n")]
    removed: dict[str, None] = {}
    kept = _strip_lines(lines, forward_hint, 0, removed)
    return Stripped("\n".join(kept).strip(), tuple(removed))

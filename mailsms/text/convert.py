"""The pipeline: email or text -> subject policy -> transliteration -> length policy.

Segment arithmetic is in ``gsm.py`` (3GPP TS 23.038 / TS 23.040); this
module decides what text is sent and how a too-long text is truncated,
split or refused.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from email.message import EmailMessage, Message
from types import MappingProxyType
from typing import Final

from mailsms.text.gsm import (
    Encoding,
    count_segments,
    encoding_of,
    is_gsm,
    longest_fitting_prefix,
    non_gsm_chars,
)
from mailsms.text.mime import clean_subject, extract_body, header_text, is_forward_subject
from mailsms.text.model import (
    Conversion,
    EmptyMessage,
    MessageTooLong,
    SmsPart,
    TextOptions,
)
from mailsms.text.normalize import normalize_text
from mailsms.text.quotes import strip_reply
from mailsms.text.translit import transliterate

_ELLIPSIS: Final[Mapping[Encoding, str]] = MappingProxyType({"GSM-7": "...", "UCS-2": "…"})
_JOINERS: Final = frozenset("\u200d\ufe0e\ufe0f")
_TRIM_END: Final = " \n,;:-"


def analyse(text: str) -> SmsPart:
    """Encoding and segment count of a text as is (no normalisation)."""
    encoding = encoding_of(text)
    return SmsPart(text, encoding, count_segments(text, encoding))


def _safe_cut(text: str, end: int) -> int:
    """Move a hard cut back so it does not orphan a combining mark or joiner."""
    while 0 < end < len(text) and (
        unicodedata.combining(text[end]) or text[end] in _JOINERS or text[end - 1] in _JOINERS
    ):
        end -= 1
    return end


def _word_cut(text: str, end: int) -> int:
    """Prefer the last whitespace before end, unless that loses over half the text."""
    if end >= len(text) or text[end].isspace() or (end > 0 and text[end - 1].isspace()):
        return end
    space = max(text.rfind(" ", 0, end), text.rfind("\n", 0, end))
    if space > end // 2:
        return space
    return _safe_cut(text, end)


def _fit(text: str, max_segments: int, with_ellipsis: bool) -> tuple[int, str]:
    """Longest word-bounded prefix that fits, plus the ellipsis for its encoding."""
    best_len, best_text = -1, ""
    # All-GSM text: GSM-7 holds more characters per segment than UCS-2,
    # and the ellipsis has a GSM-7 form, so UCS-2 can never fit more.
    encodings: tuple[Encoding, ...] = ("GSM-7",) if is_gsm(text) else ("GSM-7", "UCS-2")
    for encoding in encodings:
        suffix = _ELLIPSIS[encoding] if with_ellipsis else ""
        end = longest_fitting_prefix(text, encoding, max_segments, suffix)
        if end <= 0:
            continue
        end = _word_cut(text, end)
        prefix = text[:end].rstrip(_TRIM_END) if with_ellipsis else text[:end].rstrip()
        # Strictly longer wins, so GSM-7 (tried first) wins ties.
        if prefix and end > best_len:
            best_len, best_text = end, prefix + suffix
    return best_len, best_text


def truncate(text: str, max_segments: int) -> str:
    """Cut at a word boundary and add an ellipsis so the result fits."""
    _, result = _fit(text, max_segments, with_ellipsis=True)
    return result


def split_messages(text: str, max_segments: int) -> list[str]:
    """Cut the text at word boundaries into SMS of at most max_segments each."""
    chunks: list[str] = []
    rest = text
    while rest:
        if count_segments(rest) <= max_segments:
            chunks.append(rest)
            break
        end, chunk = _fit(rest, max_segments, with_ellipsis=False)
        if end <= 0:  # cannot happen: one segment always holds a character
            end = 1
            chunk = rest[:1]
        chunks.append(chunk)
        rest = rest[end:].lstrip()
    return chunks


def _compose(body: str, subject: str, options: TextOptions) -> str:
    subject = " ".join(subject.split())
    if options.subject_policy == "prepend" and subject:
        if not body:
            return subject
        separator = " " if subject[-1] in ".:!?" else ": "
        return f"{subject}{separator}{body}"
    if options.subject_policy == "fallback" and not body:
        return subject
    return body


def _finish(
    body: str,
    subject: str,
    options: TextOptions,
    *,
    stripped: tuple[str, ...] = (),
    attachments: tuple[str, ...] = (),
    body_truncated: bool = False,
) -> Conversion:
    text = normalize_text(_compose(body, subject, options))
    if not text:
        if stripped:
            reason = "message has no text to send after removing quotes and signature"
        elif attachments:
            reason = "message has no text to send, only attachments: " + ", ".join(attachments)
        else:
            reason = "message has no text to send"
        raise EmptyMessage(reason)

    replaced: tuple[str, ...] = ()
    if options.transliterate:
        text, replaced = transliterate(text)

    truncated = body_truncated
    segments = count_segments(text)
    if segments <= options.max_segments:
        texts = [text]
    elif options.length_policy == "refuse":
        raise MessageTooLong(segments, options.max_segments)
    elif options.length_policy == "truncate":
        texts = [truncate(text, options.max_segments)]
        truncated = True
    else:
        texts = split_messages(text, options.max_segments)

    parts = tuple(analyse(t) for t in texts)
    ucs2 = tuple(dict.fromkeys(ch for t in texts for ch in non_gsm_chars(t)))
    return Conversion(parts, stripped, attachments, ucs2, replaced, truncated)


def email_to_sms(msg: EmailMessage | Message, options: TextOptions) -> Conversion:
    """Turn a parsed email (email.policy.default) into the SMS to send.

    Raises EmptyMessage when nothing is left after stripping and
    MessageTooLong under the "refuse" length policy.
    """
    raw_subject = header_text(msg, "subject")
    body = extract_body(msg)
    result = strip_reply(normalize_text(body.text), forward_hint=is_forward_subject(raw_subject))
    return _finish(
        result.text,
        clean_subject(raw_subject),
        options,
        stripped=result.removed,
        attachments=body.attachments,
        body_truncated=body.truncated,
    )


def text_to_sms(text: str, options: TextOptions, subject: str | None = None) -> Conversion:
    """Plain text (API/CLI) into SMS with the same policies; no quote stripping."""
    return _finish(normalize_text(text), subject or "", options)

"""HTML body to readable plain text.

Conversion is delegated to html2text (entities, block structure, lists),
configured for plain output, then its Markdown conventions are undone:
links become ``text (url)`` or the bare URL when the text is the URL,
list items stay one per line, headings and rules lose their markup.

Before conversion, the markers that mail clients put around quoted replies
and signatures are turned into sentinel lines that ``quotes.py``
understands: Outlook's ``divRplyFwdMsg`` (everything after it is the
original message), and Gmail/Thunderbird/Outlook signature blocks.  Quoted
``<blockquote>`` elements (Gmail ``gmail_quote``, Apple/Thunderbird
``type="cite"``) need no sentinel: html2text renders them as ``>`` lines,
which the plain-text quote logic removes while keeping inline answers.
"""

from __future__ import annotations

import re
from typing import Final

import html2text

from mailsms.text.normalize import collapse_spaces

# Private-use characters: cannot occur in real mail text after we strip them.
QUOTE_SENTINEL: Final = "\ue000"
SIGNATURE_SENTINEL: Final = "\ue001"
SENTINELS: Final = frozenset({QUOTE_SENTINEL, SIGNATURE_SENTINEL})
_MAX_HTML_CHARS: Final = 100_000

_FLAGS: Final = re.IGNORECASE | re.DOTALL
_QUOTE_START: Final = re.compile(
    r"(?:<hr\b[^>]*>\s*)?<div\b[^>]*\bid\s*=\s*[\"']?(?:x_)?divRplyFwdMsg\b", _FLAGS
)
_SIGNATURE_START: Final = re.compile(
    r"<(?:div|span|pre|table)\b[^>]*\b(?:"
    r"class\s*=\s*[\"'][^\"']*\b(?:gmail_signature|moz-signature)\b"
    r"|id\s*=\s*[\"']?(?:x_)?Signature\b)",
    _FLAGS,
)
_HIDDEN: Final = re.compile(r"<(script|style|head|title|template)\b.*?</\1\s*>", _FLAGS)
_COMMENT: Final = re.compile(r"<!--.*?-->", re.DOTALL)
_HR: Final = re.compile(r"<hr\b[^>]*>", re.IGNORECASE)
_CELL_END: Final = re.compile(r"</t[dh]\s*>", re.IGNORECASE)
_BLOCK_END: Final = re.compile(r"</(?:h[1-6]|ul|ol|table|blockquote)\s*>", re.IGNORECASE)
_PARAGRAPH_END: Final = re.compile(r"</p\s*>", re.IGNORECASE)

_MD_LINK: Final = re.compile(r"!?\[([^\]\n]*)\]\(<?([^)\s>]+)>?(?:\s+\"[^\"\n]*\")?\)")
_AUTOLINK: Final = re.compile(r"<((?:https?|ftp|mailto):[^>\s]+)>")
_HEADING: Final = re.compile(r"^#{1,6}\s+")
_RULE: Final = re.compile(r"^(?:\* ?){3,}$|^(?:- ?){3,}$")
_ESCAPE: Final = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>])")


def _converter() -> html2text.HTML2Text:
    conv = html2text.HTML2Text()
    conv.body_width = 0  # no hard wrapping: line breaks cost characters
    # Gmail and Apple write one <div> per line: a block is a line break, and
    # paragraph spacing is added back explicitly in html_to_text.
    conv.single_line_break = True
    conv.ignore_images = True
    conv.ignore_emphasis = True
    conv.ignore_tables = True
    conv.unicode_snob = True  # keep non-ASCII as is; translit decides later
    conv.ul_item_mark = "-"
    conv.use_automatic_links = True
    conv.inline_links = True
    conv.protect_links = False
    conv.wrap_links = False
    conv.escape_snob = False
    conv.mark_code = False
    return conv


def _link(match: re.Match[str]) -> str:
    label, url = match.group(1).strip(), match.group(2)
    bare = url.removeprefix("mailto:")
    if not label or label in (url, bare) or label.rstrip("/") == url.rstrip("/"):
        return bare
    return f"{label} ({bare})"


def mark_html(html: str) -> str:
    """Insert sentinel paragraphs where quoted originals and signatures start."""
    html = html.replace(QUOTE_SENTINEL, "").replace(SIGNATURE_SENTINEL, "")
    html = _COMMENT.sub("", html)
    html = _SIGNATURE_START.sub(lambda m: f"<p>{SIGNATURE_SENTINEL}</p>{m.group(0)}", html)
    return _QUOTE_START.sub(lambda m: f"<p>{QUOTE_SENTINEL}</p>{m.group(0)}", html, count=1)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body, with quote/signature sentinels."""
    # Only the top of a body can end up in an SMS, and html2text slows down
    # badly on huge hostile markup: convert a bounded prefix.
    html = mark_html(html[:_MAX_HTML_CHARS])
    html = _HIDDEN.sub("", html)
    html = _HR.sub("<br>", html)
    html = _CELL_END.sub(lambda m: " " + m.group(0), html)
    html = _BLOCK_END.sub(lambda m: m.group(0) + "<br>", html)
    # Outlook writes every line as <p class=MsoNormal> without margins (blank
    # lines are explicit empty paragraphs); elsewhere <p> is a paragraph.
    if "msonormal" not in html.lower():
        html = _PARAGRAPH_END.sub(lambda m: m.group(0) + "<br>", html)
    try:
        text = _converter().handle(html)
    except Exception:  # html2text on hostile markup: degrade, never crash
        text = re.sub(r"<[^>]*>", " ", html)
    lines: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if _RULE.match(line):
            line = ""
        line = _HEADING.sub("", line)
        line = _MD_LINK.sub(_link, line)
        line = _AUTOLINK.sub(lambda m: m.group(1).removeprefix("mailto:"), line)
        line = _ESCAPE.sub(r"\1", line)
        lines.append(collapse_spaces(line))
    return "\n".join(lines)

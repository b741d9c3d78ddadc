"""Dry-run report of email_to_sms on raw RFC 5322 bytes, for the API and CLI.

The report is JSON-able (str, int, bool, lists, dicts only) and shows the
texts exactly as they would be sent, so an operator can see what an email
costs before pointing a mailbox at the gateway.
"""

from __future__ import annotations

from mailsms.text.convert import email_to_sms
from mailsms.text.mime import header_text
from mailsms.text.model import MessageTooLong, TextError, TextOptions
from mailsms.text.parsing import parse_message


def preview(raw: bytes, options: TextOptions) -> dict[str, object]:
    """Report of what email_to_sms would send for these raw message bytes."""
    msg = parse_message(raw)  # as the SMTP handler parses it
    report: dict[str, object] = {"subject": header_text(msg, "subject")}
    try:
        conversion = email_to_sms(msg, options)
    except TextError as exc:
        report["error"] = exc.reason
        report["error_type"] = type(exc).__name__
        if isinstance(exc, MessageTooLong):
            report["segments"] = exc.segments
            report["limit"] = exc.limit
        return report
    messages = [
        {"text": p.text, "encoding": p.encoding, "segments": p.segments, "characters": len(p.text)}
        for p in conversion.messages
    ]
    report.update(
        {
            "messages": messages,
            "texts": [p.text for p in conversion.messages],
            "encoding": "UCS-2"
            if any(p.encoding == "UCS-2" for p in conversion.messages)
            else "GSM-7",
            "segments": sum(p.segments for p in conversion.messages),
            "ucs2_chars": list(conversion.ucs2_chars),
            "transliterated": list(conversion.transliterated),
            "stripped": list(conversion.stripped),
            "attachments": list(conversion.attachments),
            "truncated": conversion.truncated,
        }
    )
    return report


def _chars(chars: object) -> str:
    if not isinstance(chars, list) or not chars:
        return "none"
    return " ".join(f"{c} (U+{ord(c):04X})" if len(c) == 1 else c for c in map(str, chars))


def _listing(items: object) -> str:
    return ", ".join(map(str, items)) if isinstance(items, list) and items else "none"


def format_preview(report: dict[str, object]) -> str:
    """Human-readable rendering of a preview() report."""
    lines: list[str] = []
    if report.get("subject"):
        lines.append(f"Subject: {report['subject']}")
    if "error" in report:
        lines.append(f"Not sent: {report['error']}")
        return "\n".join(lines)
    messages = report.get("messages")
    entries = messages if isinstance(messages, list) else []
    total = len(entries)
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            continue
        segments = entry.get("segments")
        noun = "segment" if segments == 1 else "segments"
        lines.append(
            f"SMS {number}/{total}: {entry.get('encoding')}, {segments} {noun}, "
            f"{entry.get('characters')} characters"
        )
        lines.append("-" * 40)
        lines.append(str(entry.get("text")))
        lines.append("-" * 40)
    lines.append(f"Total segments: {report.get('segments')}")
    lines.append(f"Truncated: {'yes' if report.get('truncated') else 'no'}")
    lines.append(f"Removed: {_listing(report.get('stripped'))}")
    lines.append(f"Attachments (not sent): {_listing(report.get('attachments'))}")
    lines.append(f"Transliterated: {_chars(report.get('transliterated'))}")
    lines.append(f"Characters forcing UCS-2: {_chars(report.get('ucs2_chars'))}")
    return "\n".join(lines)

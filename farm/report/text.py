"""Device-sourced text made safe to print: no control characters, no markup that takes effect."""

from __future__ import annotations

import html
import re
from typing import Any

# C0/C1 controls, DEL, zero-width and bidirectional overrides (they can disguise text).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def safe_text(value: Any) -> str:
    """One printable line: tabs and newlines become spaces, other controls visible escapes."""
    if value is None:
        return ""
    text = str(value)

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char in "\t\n\r":
            return " "
        code = ord(char)
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _UNSAFE.sub(escape, text)


def md_text(value: Any) -> str:
    """Text for a Markdown table cell: no table breaks, no emphasis, no HTML."""
    text = _MD_SPECIAL.sub(r"\\\1", safe_text(value))
    return html.escape(text, quote=False)


def csv_text(value: Any) -> Any:
    """A CSV field that a spreadsheet will not run as a formula."""
    if isinstance(value, str):
        value = safe_text(value)
        if value[:1] in ("=", "+", "-", "@") and not _is_number(value):
            return "'" + value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

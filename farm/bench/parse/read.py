"""Reading: text out of files and streams, and each line cleaned of what is not the tool's.

A line's prefixes (logcat brief/time/threadtime, ``INFO:``/``ERROR:``…, LiteRT's
``[file:line]`` tag) are taken off and kept as its severity; lines of other logcat tags are
dropped; tool lines glued to the end of another line (a shell prompt, an unflushed line) are
split apart. Lines are cut at MAX_LINE characters, so memory stays bounded on any input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import IO, NamedTuple

from farm.bench.parse.failures import reports_tool_crash

MAX_LINE = 64 * 1024  # longer lines are cut: bounded memory on garbage input
CHUNK = 1 << 20  # characters read at a time


class Line(NamedTuple):
    """One line of the tool's output, its prefixes taken off."""

    raw: str  # the text after the prefixes, as printed (tabs and indentation kept)
    msg: str  # raw without surrounding whitespace; "" for a blank line
    sev: str | None  # the tool's own severity word (INFO, ERROR, …), if printed
    lvl: str | None  # the logcat priority letter (I, E, …), if a logcat line
    foreign: bool = False  # another logcat tag's line, kept because it reports the tool's crash


_PREFIX = re.compile(
    r"""[ \t]*
    (?:
        (?:(?:\d{4}-)?\d\d-\d\d[ ]+\d\d:\d\d:\d\d\.\d+[ ]+)?     # logcat time
        (?:
            (?P<lvl1>[VDIWEFS])/(?P<tag1>[^(\n]*)\([ ]*\d+\):[ ]?    # brief: I/tflite  ( 123):
          | \d+[ ]+\d+[ ]+(?P<lvl2>[VDIWEFS])[ ](?P<tag2>[^:\n]*):[ ]?  # threadtime
        )
    )?
    (?:(?P<sev>INFO|WARN|WARNING|ERROR|FATAL|VERBOSE|DEBUG):[ ]?)?
    (?:\[[^\]\s]+:\d+\][ ]?)?                                   # LiteRT [file.cc:123]
    """,
    re.X,
)
_PREFIX_START = frozenset(" \t0123456789VDIWEFS[")
_GLUED = re.compile(r"(?<=\S)(?=STARTING!|(?:INFO|WARN|WARNING|ERROR|FATAL|VERBOSE): )")
_OUR_TAGS = re.compile(r"tflite|litert|benchmark|tensorflow", re.I)
_tuple_new = tuple.__new__


def sniff_encoding(head: bytes) -> str:
    """UTF-8 unless a BOM or NUL-interleaved text says UTF-16 (e.g. a PowerShell redirect)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if len(head) == 4 and head[1] == head[3] == 0 and head[0] and head[2]:
        return "utf-16-le"
    return "utf-8"


def split_stream(fh: IO[str], chunk_size: int = CHUNK) -> Iterator[str]:
    """Lines of a text stream split on \\n, \\r\\n or \\r, each cut to MAX_LINE characters."""
    pending = ""
    skipping = False
    while True:
        chunk = fh.read(chunk_size)
        if not chunk:
            break
        if "\r" in chunk:
            if chunk.endswith("\r"):  # a \r\n pair may straddle two chunks
                more = fh.read(1)
                chunk += more
            chunk = chunk.replace("\r\n", "\n").replace("\r", "\n")
        parts = chunk.split("\n")
        parts[0] = pending + parts[0]
        pending = parts.pop()
        if skipping and len(parts):
            parts.pop(0)
            skipping = False
        yield from parts
        if len(pending) > MAX_LINE:
            if not skipping:
                yield pending[:MAX_LINE]
            pending = ""
            skipping = True
    if pending and not skipping:
        yield pending


def clean(text: str) -> Line | None:
    """`text` without its prefixes; None for another logcat tag's line that does not matter."""
    # a prefix starts with a blank, a digit, a priority or severity letter or "[": most lines
    # are told apart without the regex
    m = _PREFIX.match(text) if text[:1] in _PREFIX_START else None
    end = m.end() if m is not None else 0
    if m is not None and end:
        raw = text[end:]
        lvl1, tag1, lvl2, tag2, sev = m.groups()  # in the pattern's order
        lvl = lvl1 or lvl2
        tag = tag1 or tag2
    else:
        raw = text
        sev = lvl = tag = None
    msg = raw.strip()
    if msg and tag and not _OUR_TAGS.search(tag):
        # another app's logcat line: only a crash of the tool itself matters
        return Line(raw, msg, sev, lvl, True) if reports_tool_crash(msg) else None
    # built as a plain tuple is, without the Python-level NamedTuple.__new__: once per line
    return _tuple_new(Line, (raw, msg, sev, lvl, False))


def clean_lines(lines: Iterable[str]) -> Iterator[Line]:
    """The tool's lines in `lines` (line ends optional), cleaned and split where glued."""
    for text in lines:
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE]
        line = clean(text.rstrip("\r\n"))
        if line is None:
            continue
        msg = line.msg
        if line.foreign or not (
            "INFO: " in msg
            or "ERROR: " in msg
            or "WARN" in msg
            or "STARTING!" in msg
            or "VERBOSE: " in msg
            or "FATAL: " in msg
        ):
            yield line
            continue
        parts = _GLUED.split(msg)  # tool lines glued to the end of another line
        if len(parts) == 1:
            yield line
        else:
            yield from clean_lines(parts)

"""Parse captured `benchmark_model` output into structured results, one per invocation found.

Understands every output family the TFLite / LiteRT benchmark tool has printed:

``tf2``
    ``Inference timings in us: Init: …, First inference: …, Warmup (avg): …, Inference (avg): …``
    (TF 2.x, current TFLite/LiteRT ``benchmark_model``).
``tf1``
    ``Average inference timings in us: Warmup: …, Init: …, Inference: …`` (TF ~1.14–2.1).
``tf1_contrib``
    ``Average inference timings in us: Warmup: …, Init: …, no stats: …`` (TF ≤ 1.13).
``litert_compiled_model``
    the LiteRT CompiledModel tool's ``BENCHMARK RESULTS`` block (values in ms, converted to µs).

Lines may carry ``INFO:``/``WARN:``/``ERROR:`` prefixes, logcat brief/time/threadtime prefixes
(lines of other logcat tags are skipped), LiteRT ``[file:line]`` tags, indentation or tabs,
``\\r\\n`` ends, and tool lines glued to the end of other lines. Unknown lines are ignored. A new
invocation starts at ``STARTING!``, at a ``benchmark_model`` command line, at a parameter echo
after the run began, after ``Benchmarking failed.``, or when a line of an earlier phase (a count
line, a summary) follows a finished summary.

``parse_text``/``parse_lines``/``parse_file`` return lists; ``iter_lines``/``iter_file`` yield
each invocation as soon as the next begins, so memory stays flat for logs of any size. Files are
read in chunks (UTF-8, or UTF-16 when a BOM or the byte pattern says so) with lines cut at
``MAX_LINE`` characters.

Failure kinds (``BenchmarkResult.failure_kind`` when ``status == "failed"``):

``delegate_failed``
    a delegate could not be applied (``Failed to apply … delegate.``, ``Disallowed CPU fallback``,
    or errors while delegates were being set up).
``model_load_failed``
    the model could not be opened or read.
``allocation_failed``
    ``Failed to allocate tensors!``.
``invoke_failed``
    an inference failed (warm-up or timed runs).
``invalid_input``
    inputs, shapes, signatures or flags did not fit the model or the tool.
``aborted``
    the tool stopped on a ``FATAL:`` check.
``crashed``
    no summary and no tool error: the process died or the log was cut. Given the exit status
    (``exit_status=`` of the parse functions, or ``classify_exit``), 128 + N is a crash by
    signal N whatever the log says, named in ``signal`` (``crashed (SIGSEGV)``).
``tool_error``
    the tool reported failure for a reason not recognised above.

The tool's own error lines are kept in ``errors`` (at most 50 per invocation); informational
lines (the GPU delegate's list of ops it leaves to the CPU) go to ``warnings``. Node counts come
from the runtime's ``Replacing N out of M node(s)`` lines when printed (summed over subgraphs),
else from a delegate's own summary line: each fact is counted once.

The package is a pipeline of stages, each a module with its own contract:

``read``
    files and streams to lines; prefixes taken off, other apps' logcat lines dropped, glued
    tool lines split apart (``Line``).
``events``
    one cleaned line to a typed event, read on its own (``classify``).
``assemble``
    events folded into invocations: where one ends and the next begins, and each finished into
    a ``BenchmarkResult``.
``failures``
    the one table of failure messages (``FAILURE_MESSAGES``) and the rules that turn evidence
    and an exit status into a ``failure_kind``.

with ``model`` (the result types), ``values`` (numbers as printed), ``profile`` (op-profiling
tables), ``delegation`` (node counts per delegate) and ``phases`` beside them.
"""

from __future__ import annotations

import io
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from farm.bench.parse.assemble import MAX_MESSAGES, assemble
from farm.bench.parse.failures import FAILURE_MESSAGES, classify_exit
from farm.bench.parse.model import (
    FAILURE_KINDS,
    FORMATS,
    BenchmarkResult,
    DelegateInfo,
    Delegation,
    Memory,
    OpProfile,
    OpRow,
    OpTypeRow,
    RunStats,
)
from farm.bench.parse.read import CHUNK, MAX_LINE, clean_lines, sniff_encoding, split_stream
from farm.bench.parse.values import Number
from farm.errors import InputError

__all__ = [
    "FAILURE_KINDS",
    "FAILURE_MESSAGES",
    "FORMATS",
    "MAX_LINE",
    "MAX_MESSAGES",
    "BenchmarkResult",
    "DelegateInfo",
    "Delegation",
    "Memory",
    "Number",
    "OpProfile",
    "OpRow",
    "OpTypeRow",
    "RunStats",
    "iter_file",
    "iter_lines",
    "classify_exit",
    "parse_file",
    "parse_lines",
    "parse_text",
]

_CHUNK = CHUNK  # characters iter_file reads at a time


def parse_text(text: str, *, exit_status: int | None = None) -> list[BenchmarkResult]:
    """Parse a whole captured output held in memory.

    `exit_status` is the process's exit status when known; it is folded into the last
    invocation (see classify_exit).
    """
    return parse_lines(text.splitlines(), exit_status=exit_status)


def parse_file(path: Path, *, exit_status: int | None = None) -> list[BenchmarkResult]:
    """Parse a log file, reading it in bounded memory; InputError if it cannot be read."""
    return _with_exit(list(iter_file(path)), exit_status)


def parse_lines(lines: Iterable[str], *, exit_status: int | None = None) -> list[BenchmarkResult]:
    """Parse output given line by line (line ends optional); never raises on odd input."""
    return _with_exit(list(iter_lines(lines)), exit_status)


def iter_lines(lines: Iterable[str]) -> Iterator[BenchmarkResult]:
    """Like parse_lines, but yield each invocation as soon as the next one begins."""
    return assemble(clean_lines(lines))


def iter_file(path: Path) -> Iterator[BenchmarkResult]:
    """Like parse_file, but yield invocations one by one: memory stays flat for any log."""
    path = Path(path)
    try:
        # A device (/dev/zero, a tty) never ends; a pipe (`<(adb logcat -d)`) is read once.
        mode = path.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISDIR(mode)):
            raise InputError(f"{path}: not a regular file or a pipe, not a log file")
        raw = open(path, "rb")  # closed with fh by _iter_open_file
        fh = io.TextIOWrapper(
            raw, encoding=sniff_encoding(raw.peek(4)[:4]), errors="replace", newline=""
        )
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory, not a log file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return _iter_open_file(path, fh, _CHUNK)


def _iter_open_file(path: Path, fh: IO[str], chunk_size: int) -> Iterator[BenchmarkResult]:
    with fh:
        try:
            yield from iter_lines(split_stream(fh, chunk_size))
        except OSError as exc:  # e.g. EIO while reading
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _with_exit(results: list[BenchmarkResult], exit_status: int | None) -> list[BenchmarkResult]:
    if exit_status is None or (not results and exit_status == 0):
        return results
    if not results:  # nothing recognisable printed, yet the process failed
        results.append(BenchmarkResult(status="failed", failure_kind="tool_error"))
    classify_exit(results[-1], exit_status)
    return results

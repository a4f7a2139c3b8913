"""Classifying failures: which lines report one, what kind it is, which signal ended the tool.

One table, FAILURE_MESSAGES, says which tool messages mean what: it decides both whether a
line on its own makes the run fail and the run's ``failure_kind``.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import NamedTuple

from farm.bench.parse import phases
from farm.bench.parse.model import BenchmarkResult


class FailureMessage(NamedTuple):
    """A message of the tool's that tells why a run failed."""

    kind: str  # the failure_kind it implies
    pattern: str  # a regular expression searched in an error line
    fails_run: bool  # the line alone means the run failed, whatever its prefix (case as printed)


# By precedence: a run's kind is the first whose message any of its error lines carries (the
# kind is matched ignoring case; some builds reword the tool's messages).
FAILURE_MESSAGES: tuple[FailureMessage, ...] = (
    FailureMessage("model_load_failed", r"Failed to (?:load|mmap|read) model", True),
    FailureMessage("model_load_failed", r"Could not open '", False),
    FailureMessage("model_load_failed", r"Please specify the name of your", True),
    FailureMessage("model_load_failed", r"not a valid (?:TF ?Lite|flatbuffer)", False),
    FailureMessage("model_load_failed", r"Model provided has model identifier", False),
    FailureMessage("delegate_failed", r"Failed to apply \S+ delegate", True),
    FailureMessage("delegate_failed", r"Disallowed CPU fallback", True),
    FailureMessage("allocation_failed", r"Failed to allocate tensors", True),
    FailureMessage("invalid_input", r"Input tensor #", False),
    FailureMessage("invalid_input", r"input_layer", False),
    FailureMessage("invalid_input", r"Inputs mismatch", False),
    FailureMessage("invalid_input", r"Signature key", False),
    FailureMessage("invalid_input", r"Signature not specified", True),
    FailureMessage("invalid_input", r"Failed to parse flag", True),
    FailureMessage("invalid_input", r"^usage: ", False),
    FailureMessage("invalid_input", r"must match", False),
    FailureMessage("invoke_failed", r"Failed to invoke", True),
)

_FAILS_RUN = re.compile("|".join(m.pattern for m in FAILURE_MESSAGES if m.fails_run))
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile("|".join(m.pattern for m in FAILURE_MESSAGES if m.kind == kind), re.I))
    for kind in dict.fromkeys(m.kind for m in FAILURE_MESSAGES)
)


def _literal_head(pattern: str) -> str:
    """Text every match of `pattern` contains: its literal start ("" if it has none)."""
    depth, i = 0, 0
    while i < len(pattern):  # a top-level alternative would match without the start
        ch = pattern[i]
        if ch == "\\":
            i += 1
        elif ch == "[":
            i = pattern.index("]", i + 2)
        elif ch in "()":
            depth += 1 if ch == "(" else -1
        elif ch == "|" and depth == 0:
            return ""
        i += 1
    m = _SPECIAL.search(pattern)
    if m is None:
        return pattern
    head = pattern[: m.start()]
    return head[:-1] if m.group() in "?*{" else head  # a quantifier makes its character optional


def _hints(patterns: list[str]) -> tuple[str, ...]:
    """Texts one of which every match of one of `patterns` contains; () if they cannot say."""
    heads = {_literal_head(p) for p in patterns}
    if "" in heads:
        return ()
    return tuple(sorted(h for h in heads if not any(o != h and o in h for o in heads)))


# Substring tests before the regular expressions, which cost far more on the many lines that
# hold none of the words.
_SPECIAL = re.compile(r"[\\^$.|?*+()\[\]{}]")
_FAILS_RUN_HINTS = _hints([m.pattern for m in FAILURE_MESSAGES if m.fails_run])

# What a shell or the runtime prints when a process dies of a signal, and the signal's name.
CRASH_WORDS = {
    "Segmentation fault": "SIGSEGV",
    "Aborted": "SIGABRT",
    "Bus error": "SIGBUS",
    "Killed": "SIGKILL",
}
_WORDS = "|".join(CRASH_WORDS)
_CRASH = re.compile(rf"Fatal signal \d+|(?:^|: |\d )(?:{_WORDS})(?: \(core dumped\))?")
_CRASH_SIGNAL = re.compile(rf"Fatal signal (\d{{1,2}})|({_WORDS})")
_CRASH_HINTS = ("Fatal signal", *CRASH_WORDS)


def fails_run(msg: str) -> bool:
    """Whether a line is a tool message that on its own means the run failed."""
    for hint in _FAILS_RUN_HINTS:
        if hint in msg:
            break
    else:
        if _FAILS_RUN_HINTS:
            return False
    return _FAILS_RUN.search(msg) is not None


def is_crash(msg: str) -> bool:
    """Whether a line reports that a process died of a signal (a shell's or the runtime's)."""
    for hint in _CRASH_HINTS:
        if hint in msg:
            return _CRASH.search(msg) is not None
    return False


def reports_tool_crash(msg: str) -> bool:
    """Whether another logcat tag's line reports that the benchmark tool died of a signal."""
    return "Fatal signal" in msg and "benchmark" in msg


def crash_signal(errors: list[str]) -> str | None:
    """The signal a crash line names: logcat's 'Fatal signal 11', a shell's 'Segmentation fault'."""
    for line in errors:
        m = _CRASH_SIGNAL.search(line)
        if m is not None:
            return signal_name(int(m.group(1))) if m.group(1) else CRASH_WORDS[m.group(2)]
    return None


def signal_name(number: int) -> str:
    """SIGSEGV for 11 (Linux numbering, as on Android); 'signal N' when unknown."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(slots=True)
class Evidence:
    """What an invocation's lines said about failing."""

    failure_message: bool = False  # a line for which fails_run() holds
    fatal: bool = False  # a FATAL: line (or logcat priority F): the tool stopped on a check
    crashed: bool = False  # a crash report
    gave_up: bool = False  # the tool's own "Benchmarking failed."
    error_phase: int | None = None  # the phase the first error line came in

    @property
    def failed(self) -> bool:
        """Whether these lines alone mean the run failed."""
        return self.failure_message or self.fatal or self.crashed or self.gave_up


def failure_kind(
    errors: list[str], evidence: Evidence, *, completed: bool, phase: int, has_delegates: bool
) -> str:
    """The failure_kind of a failed invocation.

    `completed`: the tool printed its results; `phase`: the latest phase it reached;
    `has_delegates`: the log names a delegate.
    """
    for kind, pattern in _KINDS:
        if any(pattern.search(e) for e in errors):
            return kind
    if evidence.fatal:
        return "aborted"
    if evidence.crashed:
        return "crashed"
    if completed:
        return "invoke_failed"  # the timed runs failed after the summary was printed
    real_errors = [e for e in errors if not e.startswith("Benchmarking failed")]
    if not real_errors and not evidence.gave_up:
        return "crashed"
    reached = evidence.error_phase if evidence.error_phase is not None else phase
    if reached >= phases.RUN:
        return "invoke_failed"
    if reached >= phases.INIT and has_delegates:
        return "delegate_failed"
    return "tool_error"


def classify_exit(result: BenchmarkResult, exit_status: int | None) -> BenchmarkResult:
    """Fold the process's exit status into `result` (changed in place and returned).

    128 + N (N ≤ 64): killed by signal N, so ``crashed`` whatever the log says; ``signal``
    names it.
    1..127 after a log that looks fine or merely stops: the tool failed without saying why.
    0 or None: the log alone decides (some builds exit 0 even on failure).
    """
    if exit_status is None:
        return result
    result.exit_status = exit_status
    if 128 < exit_status <= 128 + 64:
        result.status, result.failure_kind = "failed", "crashed"
        result.signal = signal_name(exit_status - 128)
    elif exit_status > 0:
        if result.status == "ok":
            # a summary and then a non-zero exit: the timed runs failed (format doc §3)
            result.status, result.failure_kind = "failed", "invoke_failed"
        elif result.failure_kind == "crashed" and result.signal is None:
            result.failure_kind = "tool_error"  # it exited on its own, it did not crash
    return result

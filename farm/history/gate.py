"""The nightly gate: a baseline (a run folder or the history), the comparison, the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from farm.config import parse_labels
from farm.errors import ConfigError
from farm.history.store import History, shown_url
from farm.results.compare import (
    DEFAULT_THRESHOLD,
    Comparison,
    ConfigComparison,
    Finding,
    compare_runs,
)
from farm.results.journal import load_run
from farm.results.model import Run, RunOutcome

HISTORY_BASELINE = "history"


def baseline_labels(spec: str) -> Mapping[str, str] | None:
    """The label filter of `history[:NAME=VALUE,...]`; None when `spec` names a folder."""
    name, sep, rest = spec.partition(":")
    if name != HISTORY_BASELINE or (Path(spec).exists() and not sep):
        return None
    return parse_labels([part for part in rest.split(",") if part]) if sep else {}


def load_baseline(spec: str, history_url: str | None, *, exclude: str = "") -> Run:
    """The baseline run `spec` names: a run folder, or the newest run of the history that
    carries the labels of `history:NAME=VALUE`."""
    labels = baseline_labels(spec)
    if labels is None:
        path = Path(spec)
        if path.is_file():
            path = path.parent
        return load_run(path)
    with History(history_url) as history:
        run = history.latest(labels, exclude=exclude)
        if run is None:
            which = ", ".join(f"{k}={v}" for k, v in labels.items()) or "any labels"
            raise ConfigError(
                f"--baseline {spec}: no run with {which} in the history at {shown_url(history.url)}"
            )
        return run


def gate_hits(
    comparison: Comparison, fail_on: tuple[str, ...]
) -> list[tuple[ConfigComparison, Finding]]:
    """The findings `--fail-on` names: the gate fails when there is any."""
    return comparison.findings(fail_on)


@dataclass(frozen=True)
class Nightly:
    """What `farm run` does after the matrix: record the run in the history (`record`, at
    `history_url` or the default), compare it with `baseline`, and fail the gate on the
    findings `fail_on` names."""

    record: bool = False
    history_url: str | None = None
    baseline: str | None = None
    fail_on: tuple[str, ...] = ()
    threshold: float = DEFAULT_THRESHOLD

    def baseline_run(self) -> Run | None:
        """The baseline run, loaded before the matrix runs (a bad one stops nothing late)."""
        if self.baseline is None:
            return None
        return load_baseline(self.baseline, self.history_url)

    def finish(self, run: Run, outcome: RunOutcome, baseline: Run | None) -> RunOutcome:
        """Record and compare the finished run; the outcome with the comparison and gate."""
        if outcome.interrupted:
            outcome.warnings.append("interrupted: the run is neither recorded nor compared")
            return outcome
        if self.record:
            with History(self.history_url) as history:
                history.add_run(run)
        if baseline is None:
            return outcome
        comparison = compare_runs(baseline, run, threshold=self.threshold)
        hits = gate_hits(comparison, self.fail_on)
        return replace(outcome, comparison=comparison, fail_on=self.fail_on, gate_failed=bool(hits))

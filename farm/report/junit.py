"""junit.xml: one testsuite per device, one testcase per configuration, for CI systems."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from farm.errors import ConfigError
from farm.report.console import latency_text
from farm.report.text import safe_text
from farm.results.model import disqualified

# What --fail-on may name: a regression against a baseline, a cell that did not end ok, a
# cell whose delegate fell back to the CPU, a cell whose outputs were not accurate.
FAIL_KINDS = ("regression", "failed", "fallback", "inaccurate")
DEFAULT_FAIL_ON = ("failed",)
_NOT_OK = ("failed", "timeout", "device_lost", "error")

# (serial, model, delegate, threads) of a configuration → why it regressed
Regressions = Mapping[tuple[str, str, str, int], str]


def parse_fail_on(text: str | Iterable[str]) -> tuple[str, ...]:
    """The kinds of `--fail-on regression,failed,...`; an unknown kind is a ConfigError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = tuple(dict.fromkeys(k.strip() for k in items if k.strip()))
    unknown = [k for k in kinds if k not in FAIL_KINDS]
    if unknown:
        raise ConfigError(
            f"--fail-on: unknown kind {unknown[0]!r} (known: {', '.join(FAIL_KINDS)})"
        )
    return kinds


def render_junit(
    summary: pd.DataFrame,
    *,
    fail_on: Iterable[str] = DEFAULT_FAIL_ON,
    run_id: str = "",
    timestamp: str = "",
    hostname: str = "",
    ranking: pd.DataFrame | None = None,
    regressions: Regressions | None = None,
) -> str:
    """The JUnit XML of a run's summary rows.

    A configuration fails for each kind of `fail_on` it shows; `unsupported` is skipped with
    its reason; the testcase time is the mean latency in seconds.
    """
    fail_on = set(fail_on)
    regressions = regressions or {}
    scores = _scores(ranking)
    root = ET.Element("testsuites", name=f"farm {run_id}".strip())
    totals = {"tests": 0, "failures": 0, "time": 0.0}
    for serial, rows in summary.groupby("serial", sort=False):
        first = rows.iloc[0]
        name = f"{safe_text(first['device']) or 'device'} ({safe_text(serial)})"
        suite = ET.SubElement(root, "testsuite", name=name)
        props = ET.SubElement(suite, "properties")
        facts = {
            "serial": serial,
            "model": first["device"],
            "soc": first["soc"],
            "profile": first["profile"],
            "simulated": str(bool(first["simulated"])).lower(),
            **scores.get(str(serial), {}),
        }
        for key, value in facts.items():
            if value not in (None, ""):
                ET.SubElement(props, "property", name=key, value=safe_text(value))
        failures = skipped = 0
        time_s = 0.0
        for row in rows.itertuples():
            case = ET.SubElement(
                suite,
                "testcase",
                classname=safe_text(row.model),
                name=f"{safe_text(row.delegate)} {row.threads}t",
            )
            seconds = _seconds(row.latency_ms)
            if seconds is not None:
                case.set("time", _time(seconds))
                time_s += seconds
            if row.status == "unsupported":
                ET.SubElement(case, "skipped", message=safe_text(row.reason) or "unsupported")
                skipped += 1
            for kind, message in _problems(row, regressions):
                if kind in fail_on:
                    ET.SubElement(case, "failure", type=kind, message=safe_text(message))
                    failures += 1
                    break
            ET.SubElement(case, "system-out").text = _details(row)
        suite.set("tests", str(len(rows)))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", str(skipped))
        suite.set("time", _time(time_s))
        if timestamp:
            suite.set("timestamp", timestamp)
        if hostname:
            suite.set("hostname", safe_text(hostname))
        totals["tests"] += len(rows)
        totals["failures"] += failures
        totals["time"] += time_s
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("time", _time(float(totals["time"])))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _problems(row: Any, regressions: Regressions) -> list[tuple[str, str]]:
    """(kind, message) of everything wrong with a configuration, most serious first."""
    out = []
    key = (str(row.serial), str(row.model), str(row.delegate), int(row.threads))
    if key in regressions:
        out.append(("regression", regressions[key]))
    if row.status in _NOT_OK:
        out.append(("failed", f"{row.status}: {row.reason}" if row.reason else row.status))
    marks = [m for m in str(row.marks).split(",") if m and disqualified([m])]
    for mark in marks:
        out.append((mark, f"{mark}: the number does not stand for this configuration"))
    return out


def _details(row: Any) -> str:
    parts = [f"status: {row.status}"]
    if row.status == "ok":
        parts.append(f"latency ms: {latency_text(row.latency_ms, row.std_ms)}")
    for name in ("coverage", "flags", "marks", "reason"):
        value = getattr(row, name)
        if value:
            parts.append(f"{name}: {safe_text(value)}")
    return "\n".join(parts)


def _scores(ranking: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    if ranking is None or ranking.empty:
        return {}
    return {
        str(r.serial): {
            "rank": "" if pd.isna(r.rank) else str(r.rank),
            "score": "" if pd.isna(r.score) else f"{r.score:.1f}",
        }
        for r in ranking.itertuples()
    }


def _seconds(latency_ms: Any) -> float | None:
    if isinstance(latency_ms, (int, float)) and math.isfinite(latency_ms):
        return float(latency_ms) / 1000.0
    return None


def _time(seconds: float) -> str:
    return f"{seconds:.6f}"

"""A comparison against a baseline as the reports show it: report.html's comparison section
(regressions first) and the JUnit failures of the configurations that got slower."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from farm.report.html import ComparisonSection
from farm.report.junit import Regressions

if TYPE_CHECKING:
    from farm.results.compare import Comparison

# What the comparison table shows, in order, and under which heading.
_COLUMNS = {
    "device_model": "device",
    "model": "model",
    "delegate": "delegate",
    "threads": "threads",
    "base_ms": "base ms",
    "new_ms": "new ms",
    "change": "verdict",
    "percent_text": "change",
    "ci_text": "95% CI",
    "p_value": "p",
    "findings": "findings",
    "regression": "regression",
}
# Finding kinds that put a configuration at the top of the section.
_BAD = ("regression", "failed", "fallback", "inaccurate")


def comparison_section(comparison: Comparison) -> ComparisonSection:
    """The HTML section of a comparison: one row per configuration, regressions first."""
    frame = comparison.frame()
    if frame.empty:
        return ComparisonSection(title=_title(comparison), frame=frame)
    frame["base_ms"] = frame["base_median_us"].map(_ms)
    frame["new_ms"] = frame["new_median_us"].map(_ms)
    frame["percent_text"] = frame["percent"].map(_percent)
    frame["ci_text"] = [
        _ci(lo, hi) for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)
    ]
    frame["p_value"] = frame["p_value"].map(lambda p: _round(p, 4))
    frame["regression"] = frame["kinds"].map(
        lambda kinds: any(k in _BAD for k in str(kinds).split(","))
    )
    shown = frame[list(_COLUMNS)].rename(columns=_COLUMNS)
    return ComparisonSection(title=_title(comparison), frame=shown, regression_column="regression")


def regressions_of(comparison: Comparison) -> Regressions:
    """Configurations of the new run that got slower, keyed as junit.xml keys its test cases
    (serial, model name, delegate, threads), with the finding's words."""
    out: dict[tuple[str, str, str, int], str] = {}
    for config in comparison.configs:
        if config.new is None:
            continue
        slower = [f.text for f in config.findings if f.kind == "regression"]
        if slower:
            key = (config.new.serial, config.new.model, config.key.delegate, config.key.threads)
            out[key] = f"against {comparison.base.run_id}: " + "; ".join(slower)
    return out


def _title(comparison: Comparison) -> str:
    base = comparison.base
    labels = ", ".join(f"{k}={v}" for k, v in base.labels.items())
    return f"Against the baseline {base.run_id}" + (f" ({labels})" if labels else "")


def _ms(us: Any) -> float | None:
    return _round(us / 1000.0, 3) if _finite(us) else None


def _percent(value: Any) -> str:
    return f"{value:+.1f}%" if _finite(value) else ""


def _ci(low: Any, high: Any) -> str:
    if not (_finite(low) and _finite(high)):
        return ""
    return f"{(low - 1) * 100:+.1f}% … {(high - 1) * 100:+.1f}%"


def _round(value: Any, digits: int) -> float | None:
    return round(float(value), digits) if _finite(value) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def with_trends(section: ComparisonSection | None, trends: list[str]) -> ComparisonSection | None:
    """The comparison section with trend charts added (a section of its own without one)."""
    if not trends:
        return section
    if section is None:
        import pandas as pd

        return ComparisonSection(title="History", frame=pd.DataFrame(), trends=tuple(trends))
    return ComparisonSection(section.title, section.frame, section.regression_column, tuple(trends))


def history_trends(url: str | None, cells: Any, *, limit: int = 12) -> list[str]:
    """Trend charts from the history at `url` (None: the default) for the configurations of
    these cells: the ones with a step first, at most `limit`."""
    from farm.history.changepoints import detect_steps
    from farm.history.store import History, config_key
    from farm.report.plots import trend_chart

    keys = {config_key(c) for c in cells}
    charts: list[tuple[bool, str, str]] = []
    with History(url) as history:
        for config in history.configurations():
            if config.key not in keys:
                continue
            points = [p for p in history.trend(config) if p.median_us]
            if len(points) < 2:
                continue
            medians = [float(p.median_us or 0) for p in points]
            steps = detect_steps(medians)
            runs = [_point_name(p.run_id, p.labels) for p in points]
            svg = trend_chart(
                config.label,
                runs,
                [m / 1000.0 for m in medians],
                [(s.index, s.percent) for s in steps],
                f"trend-{len(charts)}",
            )
            charts.append((bool(steps), config.label, svg))
    charts.sort(key=lambda c: (not c[0], c[1]))
    return [svg for _, _, svg in charts[:limit]]


def _point_name(run_id: str, labels: Any) -> str:
    commit = labels.get("commit") if hasattr(labels, "get") else None
    return str(commit) if commit else run_id

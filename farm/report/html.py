"""report.html: one self-contained page (inline SVG plots, inline style and script, no
network), built from the same frames as the other outputs."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import pandas as pd

from farm.report import plots
from farm.report.console import device_labels, latency_text, runs_text, speedup_text
from farm.report.frame import cells_frame, problems_frame, summary_frame
from farm.report.ranking import rank_text, ranking_frame
from farm.report.text import safe_text
from farm.results.model import CellResult, RunHeader


@dataclass(frozen=True)
class ComparisonSection:
    """A comparison against a baseline or a history, shown first when given.

    `frame` has one row per configuration; rows whose `regression_column` is true are listed
    first. `trends` are ready `<svg>` elements (trend lines with their steps marked).
    """

    title: str
    frame: pd.DataFrame
    regression_column: str | None = "regression"
    trends: Sequence[str] = field(default_factory=tuple)


def render_html(
    cells: Iterable[CellResult],
    *,
    header: RunHeader | None = None,
    reference: str | None = None,
    comparison: ComparisonSection | None = None,
) -> str:
    """The whole report page; device-sourced text is escaped."""
    cells = list(cells)
    df = cells_frame(cells)
    summary = summary_frame(df)
    title = f"farm report {header.run_id}" if header else "farm report"
    body = [f"<h1>{_e(title)}</h1>", _header(header, cells, summary)]
    if comparison is not None:
        body.append(_comparison(comparison))
    if df.empty:
        body.append("<p>No results.</p>")
        return _page(title, body)
    labels = device_labels(summary)
    ranking = ranking_frame(summary, reference)
    body.append(_ranking(ranking, labels))
    models = sorted(set(summary["model"]), key=lambda m: str(m).lower())
    body.append(
        "<nav><b>Models:</b> "
        + " · ".join(f'<a href="#model-{i}">{_e(m)}</a>' for i, m in enumerate(models))
        + "</nav>"
    )
    for i, model in enumerate(models):
        body.append(_model_section(i, model, summary[summary["model"] == model], labels))
    problems = problems_frame(df)
    if not problems.empty:
        body.append("<h2>Cells without a number</h2>")
        body.append(
            _table(
                ["device", "delegate", "models", "threads", "status", "cells", "reason"],
                [
                    [
                        labels.get(str(r.serial), r.device or r.serial),
                        r.delegate,
                        r.models,
                        r.threads,
                        r.status,
                        (r.cells, r.cells),
                        r.reason,
                    ]
                    for r in problems.itertuples()
                ],
            )
        )
    return _page(title, body)


# ---------------------------------------------------------------------------------- sections


def _header(header: RunHeader | None, cells: list[CellResult], summary: pd.DataFrame) -> str:
    out = []
    facts: list[tuple[str, Any]] = []
    if header is not None:
        config = header.config or {}
        labels = config.get("labels")
        facts += [
            ("run", header.run_id),
            ("started", header.started_at),
            ("farm", header.tool_versions.get("farm")),
            ("host", header.host.get("hostname")),
            ("results schema", header.schema_version),
        ]
        if isinstance(labels, dict):
            facts += [(f"label {k}", v) for k, v in labels.items()]
    counts = Counter(c.status.value for c in cells)
    facts.append(("cells", ", ".join(f"{s} {n}" for s, n in counts.most_common()) or "none"))
    out.append(
        '<dl class="facts">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts if v not in (None, ""))
        + "</dl>"
    )
    if not summary.empty and bool(summary["simulated"].any()):
        out.append(
            '<p class="simulated">Results marked <span class="tag sim">simulated</span> come '
            "from virtual phones, not real hardware.</p>"
        )
    devices = list(header.plan.devices) if header is not None else []
    simulated = (
        set(summary.loc[summary["simulated"].astype(bool), "serial"]) if len(summary) else set()
    )
    if devices:
        keys = [
            "serial",
            "manufacturer",
            "model",
            "soc",
            "sdk",
            "release",
            "abis",
            "profile",
            "emulator",
            "state",
            "server",
            "fingerprint",
        ]
        present = [k for k in keys if any(d.get(k) not in (None, "", []) for d in devices)]
        rows = []
        for d in devices:
            row = [
                ", ".join(map(str, v)) if isinstance(v, list) else v
                for v in (d.get(k) for k in present)
            ]
            if d.get("serial") in simulated:
                row[0] = (f"{safe_text(d.get('serial'))} (simulated)", d.get("serial"))
            rows.append(row)
        out += ["<h2>Devices</h2>", _table(present, rows)]
    return "\n".join(out)


def _ranking(ranking: pd.DataFrame, labels: dict[str, str]) -> str:
    if ranking.empty:
        return ""
    out = [
        "<h2>Device ranking</h2>",
        "<p>Score: 100 × the geometric mean, over the models a device shares with the reference "
        "device, of the reference's best latency over the device's; each model's best "
        "configuration that is ok and unmarked (never a fallback, hot, throttled or inaccurate "
        "cell). Higher is faster.</p>",
        plots.ranking_chart(ranking, labels),
        _table(
            ["rank", "device", "score", "models", "best configuration per model", "note"],
            [
                [
                    (rank_text(r.rank), r.rank if not pd.isna(r.rank) else 1e9),
                    labels.get(str(r.serial), r.serial),
                    (_num(r.score, "{:.1f}"), r.score),
                    r.models,
                    r.configs,
                    r.note,
                ]
                for r in ranking.itertuples()
            ],
        ),
    ]
    return "\n".join(out)


def _model_section(index: int, model: str, rows: pd.DataFrame, labels: dict[str, str]) -> str:
    tag = f"m{index}"
    out = [f'<section id="model-{index}"><h2>Model {_e(model)}</h2>']
    plots_html = [
        ("Latency by device and delegate variant", plots.latency_chart(rows, labels, f"{tag}-lat")),
        ("Speed-up against CPU with 1 thread", plots.speedup_heatmap(rows, labels, f"{tag}-spd")),
        ("Thread scaling", plots.thread_chart(rows, labels, f"{tag}-thr")),
    ]
    for caption, svg in plots_html:
        if svg:
            out.append(f"<figure><figcaption>{_e(caption)}</figcaption>{svg}</figure>")
    out.append(
        _table(
            [
                "device",
                "delegate",
                "threads",
                "latency ms",
                "runs",
                "vs CPU 1t",
                "delegation",
                "status",
                "marks",
                "flags",
                "reason",
            ],
            [
                [
                    labels.get(str(r.serial), r.serial),
                    r.delegate,
                    (r.threads, r.threads),
                    (latency_text(r.latency_ms, r.std_ms), r.latency_ms),
                    (runs_text(r.runs), r.runs),
                    (speedup_text(r.speedup) if r.comparable else "-", r.speedup),
                    r.coverage,
                    r.status,
                    _marks(r.marks),
                    r.flags,
                    r.reason,
                ]
                for r in rows.itertuples()
            ],
        )
    )
    out.append("</section>")
    return "\n".join(out)


def _comparison(section: ComparisonSection) -> str:
    frame = section.frame
    column = section.regression_column
    if column and column in frame.columns:
        frame = frame.sort_values(
            column, ascending=False, kind="stable", key=lambda c: c.fillna(False).astype(bool)
        )
    out = [f"<h2>{_e(section.title)}</h2>"]
    out += [f"<figure>{svg}</figure>" for svg in section.trends if svg]
    out.append(_table(list(map(str, frame.columns)), frame.itertuples(index=False)))
    return "\n".join(out)


# ---------------------------------------------------------------------------------- helpers


def _marks(text: str) -> Any:
    marks = [m for m in str(text).split(",") if m]
    if not marks:
        return ""
    tags = "".join(f'<span class="tag mark">{_e(m)}</span>' for m in marks)
    return _Raw(tags, ",".join(marks))


class _Raw:
    """Markup made here (never from a device), with the text to sort it by."""

    def __init__(self, html: str, sort: str) -> None:
        self.html = html
        self.sort = sort


def _e(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return escape(safe_text(value))


def _num(value: Any, fmt: str) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return fmt.format(value)
    return "-"


def _cell(value: Any) -> str:
    """A <td>: a value, a (text, sort key) pair or a _Raw."""
    if isinstance(value, _Raw):
        return f'<td data-v="{escape(value.sort)}">{value.html}</td>'
    if isinstance(value, tuple):
        text, key = value
        number = key if isinstance(key, (int, float)) and not pd.isna(key) else None
        attr = f' data-v="{number}"' if number is not None else ' data-v=""'
        return f'<td class="num"{attr}>{_e(text)}</td>'
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "<td></td>"
    return f"<td>{_e(value)}</td>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f'<th title="sort">{_e(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return (
        f'<div class="wide"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:1em 2em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}dt{font-weight:600}
dd{margin:0}table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{padding:.2em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{cursor:pointer;background:#f6f6f6;position:sticky;top:0;user-select:none}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}td.num{text-align:right;
white-space:nowrap}figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}
svg.plot{max-width:100%;height:auto}.tag{border-radius:3px;padding:0 .4em;margin-right:.3em;
font-size:12px}.tag.mark{background:#fde2c8}.tag.sim{background:#dde8f8}
p.simulated{background:#eef3fb;padding:.5em}nav a{margin:0 .2em}div.wide{overflow-x:auto}
"""

# Click a column header to sort by it (numbers by their value), again to reverse.
_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    function key(row) {
      var td = row.children[col];
      var v = td.hasAttribute("data-v") ? td.getAttribute("data-v") : td.textContent;
      var n = parseFloat(v);
      return isNaN(n) ? [1, v.toLowerCase()] : [0, n];
    }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x[0] !== y[0]) return x[0] - y[0];
      var c = x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + f"\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )

"""The console report: one rich table per device, best configurations, cells that did not run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from farm.report.text import safe_text


def print_report(
    cells: Iterable[Mapping[str, Any]],
    *,
    console: Console | None = None,
    title: str | None = None,
) -> None:
    """Print the report of these cell lines (device text is never read as markup)."""
    from farm.report.frame import best_per_device, cells_frame, problems_frame, summary_frame

    console = console or Console()
    df = cells_frame(cells)
    if df.empty:
        console.print("No results.", markup=False, highlight=False)
        return
    summary = summary_frame(df)
    if title:
        console.print(Text(safe_text(title), style="bold"))
    if bool(summary["simulated"].any()):
        console.print(
            Text("Results marked (simulated) come from virtual phones, not real hardware.")
        )
    for serial, rows in summary.groupby("serial", sort=False):
        console.print(_device_table(str(serial), rows, console.width))
    best = best_per_device(summary)
    if not best.empty:
        console.print(_best_table(best))
    problems = problems_frame(df)
    if not problems.empty:
        console.print(_problems_table(problems))


def device_title(row: Any) -> str:
    """'Pixel 7 · Google GS201 · serial · profile pixel_7 (simulated)' for one device."""
    parts = [row["device"] or "unknown model", row["soc"], str(row["serial"])]
    if row["profile"]:
        parts.append(f"profile {row['profile']}")
    text = " · ".join(safe_text(p) for p in parts if p)
    return text + (" (simulated)" if row["simulated"] else "")


def latency_text(latency_ms: float, std_ms: float) -> str:
    """'12.34 ± 0.56' (ms), '-' when there is no number."""
    if latency_ms != latency_ms:  # NaN
        return "-"
    if std_ms != std_ms:
        return f"{latency_ms:.2f}"
    return f"{latency_ms:.2f} ± {std_ms:.2f}"


def runs_text(value: Any) -> str:
    """The number of timed runs, '-' when unknown."""
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "-"


def speedup_text(value: float) -> str:
    """'3.1×', '-' when unknown."""
    return "-" if value != value else f"{value:.2f}×"


def _device_table(serial: str, rows: Any, width: int) -> Table:
    table = Table(title=Text(device_title(rows.iloc[0])), title_justify="left", expand=False)
    for name, justify in (
        ("model", "left"),
        ("delegate", "left"),
        ("threads", "right"),
        ("latency ms", "right"),
        ("runs", "right"),
        ("delegation", "left"),
        ("vs CPU 1t", "right"),
        ("status", "left"),
    ):
        # The status column (with its stability notes) wraps first, so names stay whole.
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            overflow="fold",
            max_width=max(16, (width - 60) // 4) if name == "status" else None,
        )
    models = list(rows["model"])
    for i, row in enumerate(rows.itertuples()):
        status = row.status if not row.flags else f"{row.status} ({row.flags})"
        last_of_model = i + 1 == len(models) or models[i + 1] != row.model
        first_of_model = i == 0 or models[i - 1] != row.model
        table.add_row(
            Text(safe_text(row.model) if first_of_model else ""),
            Text(safe_text(row.delegate)),
            Text(str(row.threads)),
            Text(latency_text(row.latency_ms, row.std_ms)),
            Text(runs_text(row.runs)),
            Text(safe_text(row.coverage) or "-"),
            Text(speedup_text(row.speedup)),
            Text(safe_text(status), style="green" if row.status == "ok" else "red"),
            end_section=last_of_model,
        )
    return table


def _best_table(best: Any) -> Table:
    table = Table(title="Best configuration per device", title_justify="left")
    for name in ("device", "model", "delegate", "threads", "latency ms", "vs CPU 1t"):
        table.add_column(name, overflow="fold")
    for _, row in best.iterrows():
        table.add_row(
            Text(device_title(row)),
            Text(safe_text(row["model"])),
            Text(safe_text(row["delegate"])),
            Text(str(row["threads"])),
            Text(latency_text(row["latency_ms"], row["std_ms"])),
            Text(speedup_text(row["speedup"])),
        )
    return table


def _problems_table(problems: Any) -> Table:
    table = Table(title="Cells without a number", title_justify="left")
    for name in ("device", "delegate", "models", "threads", "status", "cells", "reason"):
        table.add_column(name, overflow="fold")
    for _, row in problems.iterrows():
        device = safe_text(row["device"] or row["serial"]) + (
            " (simulated)" if row["simulated"] else ""
        )
        table.add_row(
            Text(device),
            Text(safe_text(row["delegate"])),
            Text(safe_text(row["models"])),
            Text(str(row["threads"])),
            Text(safe_text(row["status"])),
            Text(str(row["cells"])),
            Text(safe_text(row["reason"])),
        )
    return table

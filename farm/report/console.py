"""The console report: one rich table per device, best configurations, cells that did not run."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from farm.report.frame import (
    UNSTABLE_STD_RATIO,
    accuracy_frame,
    best_per_device,
    cells_frame,
    problems_frame,
    short_coverage,
    short_flags,
    summary_frame,
)
from farm.report.ranking import rank_text, ranking_frame
from farm.report.text import safe_text
from farm.results.model import CellResult

# rich draws 80 columns when stdout is not a terminal: far too narrow for a report in a CI log.
PIPE_WIDTH = 120


def report_console(file: IO[str] | None = None) -> Console:
    """A console for reports: the terminal's width, or PIPE_WIDTH when piped and COLUMNS unset.

    Colour follows rich: none when piped, none with NO_COLOR set.
    """
    console = Console(file=file, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").strip().isdigit():
        console.width = PIPE_WIDTH
    return console


def print_report(
    cells: Iterable[CellResult],
    *,
    console: Console | None = None,
    title: str | None = None,
    reference: str | None = None,
) -> None:
    """Print the report of these cell lines (device text is never read as markup)."""
    console = console or report_console()
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
    labels = device_labels(summary)
    for _, rows in summary.groupby("serial", sort=False):
        console.print()
        console.print(Text(device_heading(rows.iloc[0]), style="bold"))
        table = _device_table(rows, with_model=True)
        if _natural_width(console, table) <= console.width:
            console.print(table)
            continue
        # too narrow for a model column: one table per model, named in its title
        for i, (_, model_rows) in enumerate(rows.groupby("model", sort=False)):
            if i:
                console.print()
            console.print(_device_table(model_rows, with_model=False))
    console.print(Text(LEGEND, style="dim"))
    best = best_per_device(summary)
    if not best.empty:
        console.print()
        console.print(_best_table(best, labels))
    checked = accuracy_frame(df)
    if not checked.empty:
        console.print()
        console.print(_accuracy_table(checked, labels))
    problems = problems_frame(df)
    if not problems.empty:
        console.print()
        console.print(_problems_table(problems, labels))
    ranking = ranking_frame(summary, reference)
    if not ranking.empty and not ranking["score"].isna().all():
        console.print()
        console.print(_ranking_table(ranking, labels))


def _status_style(row: Any) -> str:
    if row["status"] != "ok":
        return "red"
    return "yellow" if row.get("marks") else "green"


LEGEND = (
    "latency: mean ± std of the timed runs, ms · vs CPU: speed-up over CPU with 1 thread · "
    f"noisy: std ≥ {UNSTABLE_STD_RATIO:.0%} of the mean · "
    "fallback: the delegate did not run, the number is the CPU's (never best, no vs CPU) · "
    "hot: a repeat started above the cool-down limit · throttled: a repeat ran with a CPU "
    "cluster capped or the thermal status rising · "
    "inaccurate: outputs over the tolerance against the CPU's (never best)"
)


def device_heading(row: Any) -> str:
    """'Pixel 7 · Google GS201 · serial · pixel_7 (simulated)': one device, compact."""
    parts = [row["device"] or "unknown model", row["soc"], str(row["serial"]), row["profile"]]
    text = " · ".join(safe_text(p) for p in parts if p)
    return text + (" (simulated)" if row["simulated"] else "")


def device_labels(frame: Any) -> dict[str, str]:
    """Serial → a short name for tables: the model, with the serial when two devices share it."""
    names: dict[str, str] = {}
    for serial, model in zip(frame["serial"], frame["device"], strict=True):
        names.setdefault(str(serial), safe_text(model))
    taken = [n for n in names.values() if n]
    return {
        serial: name if name and taken.count(name) == 1 else f"{name} {serial}".strip()
        for serial, name in names.items()
    }


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


def _label_width(labels: Mapping[str, str]) -> int:
    """Room for device labels to stay whole (up to 24 columns)."""
    return min(max((len(label) for label in labels.values()), default=0), 24)


def _natural_width(console: Console, table: Table) -> int:
    """The width `table` takes when nothing has to wrap."""
    return Measurement.get(console, console.options.update_width(1 << 16), table).maximum


def _table(*columns: tuple[str, str], title: str | None = None) -> Table:
    """A light table (rules under the header only) that spends its width on the text."""
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
        expand=False,
    )
    for name, justify in columns:
        numeric = justify == "right"
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=numeric,
            overflow="fold",
        )
    return table


def _device_table(rows: Any, *, with_model: bool) -> Table:
    """The device's rows; without a model column, a table of one model titled with its name."""

    columns = [
        ("delegate", "left"),
        ("thr", "right"),
        ("latency ms", "right"),
        ("runs", "right"),
        ("delegation", "left"),
        ("vs CPU", "right"),
        ("status", "left"),
    ]
    if with_model:
        table = _table(("model", "left"), *columns)
    else:
        table = _table(*columns, title=safe_text(rows["model"].iloc[0]))
    models = list(rows["model"])
    for i, (_, row) in enumerate(rows.iterrows()):
        flags = short_flags(row)
        status = row["status"] + (", " + ", ".join(flags) if flags else "")
        last_of_model = i + 1 == len(models) or models[i + 1] != row["model"]
        first_of_model = i == 0 or models[i - 1] != row["model"]
        cells = [
            Text(safe_text(row["delegate"])),
            Text(str(row["threads"])),
            Text(latency_text(row["latency_ms"], row["std_ms"])),
            Text(runs_text(row["runs"])),
            Text(short_coverage(safe_text(row["coverage"])) or "-"),
            Text(speedup_text(row["speedup"])),
            Text(safe_text(status), style=_status_style(row)),
        ]
        if with_model:
            cells.insert(0, Text(safe_text(row["model"]) if first_of_model else ""))
        table.add_row(*cells, end_section=last_of_model and with_model)
    return table


def _best_table(best: Any, labels: Mapping[str, str]) -> Table:
    table = _table(
        ("device", "left"),
        ("model", "left"),
        ("delegate", "left"),
        ("thr", "right"),
        ("latency ms", "right"),
        ("vs CPU", "right"),
        title="Best configuration per device",
    )
    table.columns[0].min_width = _label_width(labels)
    for _, row in best.iterrows():
        table.add_row(
            Text(labels.get(str(row["serial"]), safe_text(row["serial"]))),
            Text(safe_text(row["model"])),
            Text(safe_text(row["delegate"])),
            Text(str(row["threads"])),
            Text(latency_text(row["latency_ms"], row["std_ms"])),
            Text(speedup_text(row["speedup"])),
        )
    return table


def number_text(value: Any, digits: int = 3) -> str:
    """A metric with `digits` significant digits; "-" when there is none."""
    return "-" if value is None or value != value else f"{float(value):.{digits}g}"


def _accuracy_table(checked: Any, labels: Mapping[str, str]) -> Table:
    table = _table(
        ("device", "left"),
        ("model", "left"),
        ("delegate", "left"),
        ("against", "left"),
        ("max abs", "right"),
        ("max rel", "right"),
        ("cosine", "right"),
        ("top-1", "right"),
        ("accuracy", "left"),
        title="Accuracy (outputs on fixed inputs against the reference)",
    )
    for r in checked.itertuples():
        table.add_row(
            Text(labels.get(str(r.serial), safe_text(r.serial))),
            Text(safe_text(r.model)),
            Text(safe_text(r.delegate)),
            Text(safe_text(r.accuracy_reference)),
            Text(number_text(r.max_abs_error)),
            Text(number_text(r.max_rel_error)),
            Text(number_text(r.cosine, digits=6)),
            Text(number_text(r.top1_agreement)),
            Text(safe_text(r.accuracy), style="red" if r.accuracy == "inaccurate" else ""),
        )
    return table


def _problems_table(problems: Any, labels: Mapping[str, str]) -> Table:
    table = _table(
        ("device", "left"),
        ("delegate", "left"),
        ("models", "left"),
        ("thr", "left"),
        ("status", "left"),
        ("cells", "right"),
        ("reason", "left"),
        title="Cells without a number, and fallbacks",
    )
    for _, row in problems.iterrows():
        table.add_row(
            Text(labels.get(str(row["serial"]), safe_text(row["device"] or row["serial"]))),
            Text(safe_text(row["delegate"])),
            Text(safe_text(row["models"])),
            Text(str(row["threads"])),
            Text(safe_text(row["status"])),
            Text(str(row["cells"])),
            Text(safe_text(row["reason"])),
        )
    return table


def _ranking_table(ranking: Any, labels: Mapping[str, str]) -> Table:
    table = _table(
        ("rank", "right"),
        ("device", "left"),
        ("score", "right"),
        ("models", "right"),
        ("best configuration per model", "left"),
        ("note", "left"),
        title="Device ranking (reference = 100, higher is faster)",
    )
    for row in ranking.itertuples():
        table.add_row(
            Text(rank_text(row.rank)),
            Text(labels.get(str(row.serial), safe_text(row.serial))),
            Text("-" if row.score != row.score else f"{row.score:.1f}"),
            Text(str(row.models)),
            Text(safe_text(row.configs)),
            Text(safe_text(row.note)),
        )
    return table

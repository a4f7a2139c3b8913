"""`farm parse LOG...`: read captured benchmark_model output and show what it says."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from farm.errors import InputError
from farm.report.text import safe_text

if TYPE_CHECKING:
    from farm.bench.parse import BenchmarkResult


def register(app: typer.Typer) -> None:
    """Add the `parse` command to the farm app."""
    app.command("parse")(parse_command)


def parse_command(
    logs: Annotated[
        list[Path],
        typer.Argument(
            help="benchmark_model output files (logs, logcat captures, pastes); - reads stdin.",
            show_default=False,
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array, one object per invocation.")
    ] = False,
) -> None:
    """Parse benchmark_model logs: one row per invocation found, failures included."""
    from farm.bench.parse import parse_file, parse_lines

    parsed: list[tuple[Path, list[BenchmarkResult]]] = []
    unreadable = 0
    for path in logs:
        try:
            if str(path) == "-":
                parsed.append((path, parse_lines(sys.stdin)))
            else:
                parsed.append((path, parse_file(path)))
        except InputError as exc:
            unreadable += 1
            typer.echo(f"farm: error: {safe_text(exc)}", err=True)

    if as_json:
        rows = [{"file": str(path), **r.to_dict()} for path, results in parsed for r in results]
        typer.echo(json.dumps(rows, indent=2, allow_nan=False))
    else:
        _print_table(parsed)
    if unreadable:
        raise typer.Exit(2)


def _fmt(value: float | int | None, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    v = value / scale
    digits = 0 if abs(v) >= 1000 else 1 if abs(v) >= 100 else 2 if abs(v) >= 1 else 3
    return f"{v:.{digits}f}"


def _print_table(parsed: list[tuple[Path, list[BenchmarkResult]]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    for path, results in parsed:
        if not results:
            console.print(Text(safe_text(f"{path}: no benchmark output found")))
            continue
        table = Table(
            title=Text("<stdin>" if str(path) == "-" else safe_text(path)),
            box=box.SIMPLE_HEAD,
            title_justify="left",
            pad_edge=False,
            padding=(0, 1),
            collapse_padding=True,
        )
        table.caption = "times in ms, memory in MB"
        for name in (
            "#",
            "status",
            "thr",
            "delegates",
            "init",
            "first",
            "avg",
            "std",
            "runs",
            "mem",
        ):
            left = name in ("status", "delegates")
            table.add_column(
                name,
                justify="left" if left else "right",
                no_wrap=not left,
                min_width=(15 if name == "status" else 9) if left else None,
            )
        notes: list[Text] = []
        for i, r in enumerate(results, 1):
            d = r.to_dict()
            deleg = d["delegation"]
            names = ",".join(deleg["delegates"]) or "CPU"
            if deleg["coverage"]:
                names += f" {deleg['coverage']}"
            status = r.status if r.failure_kind is None else r.failure_kind
            if r.signal:
                status += f" ({r.signal})"
            table.add_row(
                str(i),
                Text(status, style="green" if r.status == "ok" else "red"),
                "-" if r.threads is None else str(r.threads),
                Text(safe_text(names)),
                _fmt(r.init_us, 1e3),
                _fmt(r.first_inference_us, 1e3),
                _fmt(r.inference_avg_us, 1e3),
                _fmt(d["inference_std_us"], 1e3),
                "-" if d["inference_count"] is None else str(d["inference_count"]),
                _fmt(r.memory.overall_mb),
            )
            if r.errors:
                notes.append(Text(f"  #{i}: {safe_text(r.errors[0])}", style="red"))
        console.print(table)
        for note in notes:
            console.print(note)

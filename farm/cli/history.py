"""`farm history add|list|show|trend|regressions`: the run history (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from farm.errors import ConfigError
from farm.report.text import safe_text

if TYPE_CHECKING:
    from farm.history import Filters, History

history_app = typer.Typer(
    help="The run history: record runs, list them, follow a configuration, find steps.",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        "-u",
        envvar="FARM_HISTORY",
        help="History database: sqlite:///file, postgresql://user@host/db or a file path "
        "(default: an SQLite file in the user data folder).",
    ),
]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="Serial or device model (exact).")
]
ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="Model name or sha256 prefix.")
]
DelegateOption = Annotated[
    str | None, typer.Option("--delegate", "-d", help="Delegate variant label, e.g. gpu.")
]
ThreadsOption = Annotated[int | None, typer.Option("--threads", "-t", help="Thread count.")]
LabelOption = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="NAME=VALUE a run must carry.")
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Runs started since: 14d, 12h or a date.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def register(app: typer.Typer) -> None:
    """Add `farm history` to the app."""
    app.add_typer(history_app, name="history")


def _open(url: str | None) -> History:
    from farm.history import History

    return History(url)


def _filters(
    device: str | None = None,
    model: str | None = None,
    delegate: str | None = None,
    threads: int | None = None,
    label: list[str] | None = None,
    since: str | None = None,
) -> Filters:
    from farm.config import parse_labels
    from farm.history import Filters
    from farm.history.store import since_iso

    return Filters(
        device=device,
        model=model,
        delegate=delegate,
        threads=threads,
        labels=parse_labels(label or []),
        since=since_iso(since) if since else None,
    )


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _labels_text(labels: Any) -> str:
    return safe_text(" ".join(f"{k}={v}" for k, v in dict(labels).items()))


@history_app.command("add")
def add_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders to import.")],
    url: UrlOption = None,
) -> None:
    """Import run folders into the history (a run already there is replaced)."""
    from farm.results.journal import load_run

    runs = [load_run(d.parent if d.is_file() else d) for d in run_dirs]  # all readable first
    with _open(url) as history:
        for run in runs:
            what = history.add_run(run)
            typer.echo(f"{what} {safe_text(run.header.run_id)} ({len(run.cells)} cells)")


@history_app.command("list")
def list_command(
    url: UrlOption = None,
    device: DeviceOption = None,
    model: ModelOption = None,
    delegate: DelegateOption = None,
    label: LabelOption = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Recorded runs, newest first."""
    with _open(url) as history:
        rows = history.runs(_filters(device, model, delegate, None, label, since), limit=limit)
    if as_json:
        _echo_json([r.to_json() for r in rows])
        return
    for r in rows:
        typer.echo(
            f"{safe_text(r.run_id)}  {r.started_at}  {safe_text(r.host)}  "
            f"cells {r.cells} (ok {r.ok})  {_labels_text(r.labels)}".rstrip()
        )
    if not rows:
        typer.echo("no runs")


@history_app.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """One recorded run: its header facts and report."""
    with _open(url) as history:
        run = history.load_run(run_id)
    if as_json:
        _echo_json({"header": run.header.to_json(), "cells": [c.to_json() for c in run.cells]})
        return
    from farm.report.console import print_report, report_console

    console = report_console()
    h = run.header
    console.print(
        f"run {safe_text(h.run_id)}  started {h.started_at}  "
        f"on {safe_text(h.host.get('hostname', ''))}  {_labels_text(h.labels)}",
        markup=False,
        highlight=False,
    )
    print_report(run.cells, console=console)


@history_app.command("trend")
def trend_command(
    url: UrlOption = None,
    device: DeviceOption = None,
    model: ModelOption = None,
    delegate: DelegateOption = None,
    threads: ThreadsOption = None,
    label: LabelOption = None,
    since: SinceOption = None,
    as_json: JsonOption = False,
) -> None:
    """The median latency of each matching configuration, run by run, with its steps."""
    from farm.history.changepoints import detect_steps

    filters = _filters(device, model, delegate, threads, label, since)
    out = []
    with _open(url) as history:
        for config in history.configurations(filters):
            points = history.trend(config, filters)
            timed = [p for p in points if p.median_us]
            steps = detect_steps([p.median_us or 0.0 for p in timed])
            out.append((config, points, {timed[s.index].run_id: s for s in steps}))
    if as_json:
        _echo_json(
            [
                {
                    "config": c.to_json(),
                    "points": [p.to_json() for p in pts],
                    "steps": [
                        {
                            "run_id": rid,
                            "percent": s.percent,
                            "before_us": s.before,
                            "after_us": s.after,
                        }
                        for rid, s in steps.items()
                    ],
                }
                for c, pts, steps in out
            ]
        )
        return
    if not out:
        typer.echo("no configuration matches")
    for config, points, steps in out:
        typer.echo(safe_text(config.label))
        for p in points:
            value = f"{p.median_us / 1000:10.3f} ms" if p.median_us else f"{p.status:>13}"
            step = steps.get(p.run_id)
            mark = f"  ← step {step.percent:+.1f} %" if step else ""
            typer.echo(
                f"  {p.started_at}  {safe_text(p.run_id)}  {value}  {_labels_text(p.labels)}{mark}"
            )


@history_app.command("regressions")
def regressions_command(
    url: UrlOption = None,
    since: SinceOption = "14d",
    device: DeviceOption = None,
    model: ModelOption = None,
    delegate: DelegateOption = None,
    label: LabelOption = None,
    threshold: Annotated[
        str, typer.Option("--threshold", help="Smallest step that counts.")
    ] = "5%",
    improvements: Annotated[
        bool, typer.Option("--improvements", help="List steps that made things faster too.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Steps in the configurations' series that happened since `--since`, with their run."""
    from farm.results.compare import parse_threshold

    try:
        limit = parse_threshold(threshold)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with _open(url) as history:
        found = history.regressions(
            _filters(device, model, delegate, None, label, since),
            threshold=limit,
            improvements=improvements,
        )
    if as_json:
        _echo_json([g.to_json() for g in found])
        return
    if not found:
        typer.echo(f"no steps of {limit * 100:g} % or more since {since}")
    for g in found:
        typer.echo(
            f"{g.step.percent:+6.1f} %  {safe_text(g.config.label)}  "
            f"at {safe_text(g.point.run_id)} ({g.point.started_at}) "
            f"{_labels_text(g.point.labels)}  "
            f"{g.step.before / 1000:.3f} → {g.step.after / 1000:.3f} ms".rstrip()
        )

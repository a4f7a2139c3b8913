"""`farm report RUN_DIR`: write a run folder's report files again from its results.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add `farm report` to the app."""
    app.command("report")(report_command)


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (or its results.jsonl).")],
    formats: Annotated[
        str,
        typer.Option("--format", "-f", help="Outputs to write: html,md,csv,json,junit."),
    ] = "html,md,csv,json,junit",
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            help="Reference device of the ranking: a serial or a device model (default: the "
            "first device).",
        ),
    ] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help="What junit.xml reports as a failure: failed,fallback,inaccurate,regression.",
        ),
    ] = "failed",
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="A run folder to compare with: report.html shows the comparison (regressions "
            "first) and junit.xml fails regressed configurations with --fail-on regression.",
        ),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="Show each configuration's trend in the history (steps marked) in report.html.",
        ),
    ] = False,
    history_url: Annotated[
        str | None,
        typer.Option(
            "--history-url",
            help="The history database (default: $FARM_HISTORY, else the user data folder).",
        ),
    ] = None,
) -> None:
    """Regenerate report.html, report.md, results.csv/json and junit.xml of a run folder
    (folders written by older farm versions included)."""
    from farm.report.junit import parse_fail_on
    from farm.report.outputs import parse_formats, regenerate

    kinds = parse_fail_on(fail_on)
    chosen = parse_formats(formats)
    folder = run_dir.parent if run_dir.is_file() else run_dir
    base = None
    if baseline is not None:
        base = baseline.parent if baseline.is_file() else baseline
    paths = regenerate(
        folder,
        formats=chosen,
        reference=reference,
        fail_on=kinds,
        baseline=base,
        history=history or history_url is not None,
        history_url=history_url,
    )
    for path in paths.values():
        typer.echo(str(path))

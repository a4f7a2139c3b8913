"""`farm run`: benchmark models on every selected device and write a run folder and report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from farm.errors import ConfigError
from farm.report.text import safe_text

if TYPE_CHECKING:
    from farm.results.model import RunOutcome


def register(app: typer.Typer) -> None:
    """Add `farm run` to the app."""
    app.command("run")(run_command)


def run_command(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="farm.yaml to use (default: ./farm.yaml if present)."),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model path or glob (repeatable).")
    ] = None,
    delegate: Annotated[
        str | None,
        typer.Option(
            "--delegate",
            "-d",
            help="Delegate variants by label, or kinds (all variants of the kind), e.g. cpu,gpu.",
        ),
    ] = None,
    threads: Annotated[str | None, typer.Option("--threads", "-t", help="e.g. 1,2,4.")] = None,
    repeats: Annotated[int | None, typer.Option("--repeats", help="Repeats per cell.")] = None,
    serial: Annotated[
        list[str] | None, typer.Option("--serial", "-s", help="Device serial (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for run folders.")] = None,
    flag: Annotated[
        list[str] | None,
        typer.Option(
            "--flag",
            help="A benchmark_model flag passed verbatim, NAME=VALUE (repeatable), "
            "e.g. --flag enable_op_profiling=true.",
        ),
    ] = None,
    check_accuracy: Annotated[
        bool,
        typer.Option(
            "--accuracy",
            help="Also compare each delegate's outputs with the CPU's on fixed inputs.",
        ),
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Run only the missing cells of this run folder."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", min=0, help="Seed of the shuffled cell order (default: a new one per run)."
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace", min=0.0, help="Seconds to wait for an unreachable device before giving up."
        ),
    ] = 60.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the outcome as JSON instead of the report.")
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show per-device progress.")
    ] = True,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="NAME=VALUE stored with the run (repeatable)."),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="Record the run in the history ($FARM_HISTORY, else the user data folder).",
        ),
    ] = False,
    history_url: Annotated[
        str | None,
        typer.Option(
            "--history-url",
            help="Record the run in this history database (sqlite:///file, postgresql://..., "
            "or a path); --baseline history reads it too.",
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Compare with this run folder, or history[:NAME=VALUE]."),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Exit 4 when the comparison finds these, e.g. regression,failed,fallback.",
        ),
    ] = None,
    threshold: Annotated[
        str, typer.Option("--threshold", help="Smallest latency change that counts.")
    ] = "5%",
) -> None:
    """Benchmark models × delegates × threads on every selected device."""
    from farm.bench.service import run
    from farm.config import DEFAULT_CONFIG_NAME
    from farm.results.compare import parse_fail_on, parse_threshold

    if fail_on is not None and baseline is None:
        raise ConfigError("--fail-on needs --baseline (a run folder or history[:NAME=VALUE])")
    try:
        kinds = parse_fail_on(fail_on) if fail_on is not None else ()
        limit = parse_threshold(threshold)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    nightly = None
    if history or history_url is not None or baseline is not None:
        from farm.history.gate import Nightly

        nightly = Nightly(
            record=history or history_url is not None,
            history_url=history_url,
            baseline=baseline,
            fail_on=kinds,
            threshold=limit,
        )
    if resume is not None and label:
        raise ConfigError("--resume takes no --label: the run keeps its own labels")

    if resume is not None and (
        config
        or model
        or delegate
        or threads
        or repeats
        or serial
        or flag
        or check_accuracy
        or seed is not None
    ):
        raise ConfigError("--resume takes no other matrix options: it reuses the run's own config")
    if config is None and resume is None and Path(DEFAULT_CONFIG_NAME).is_file():
        config = Path(DEFAULT_CONFIG_NAME)
    overrides: dict[str, Any] = {
        "model": model or None,
        "delegate": delegate,
        "threads": threads,
        "repeats": repeats,
        "serial": serial or None,
        "out": str(out) if out else None,
        "flag": flag or None,
        "seed": seed,
        "accuracy": check_accuracy or None,
        "label": label or None,
    }
    result = run(
        config,
        overrides=overrides,
        resume=resume,
        progress=progress_mode(progress, rich=not as_json),
        grace_s=grace,
        warn=lambda text: typer.echo(f"farm: warning: {safe_text(text)}", err=True),
        nightly=nightly,
    )
    if as_json:
        typer.echo(json.dumps(outcome_dict(result), indent=2))
    else:
        show_result(result)
    raise typer.Exit(result.exit_code)


def progress_mode(wanted: bool, *, rich: bool = True) -> str:
    """rich progress on a terminal (when `rich`); without a terminal (logs, CI) plain lines on
    stderr: one per finished cell, and a heartbeat."""
    if not wanted:
        return "off"
    if sys.stderr.isatty():
        return "rich" if rich else "off"
    return "plain"


def outcome_dict(result: RunOutcome) -> dict[str, Any]:
    """The JSON form of a run's outcome."""
    return {
        "run_dir": str(result.run_dir),
        "exit_code": result.exit_code,
        "interrupted": result.interrupted,
        "counts": {str(status): n for status, n in result.counts.items()},
        "bytes_pushed": result.bytes_pushed,
        "cells": len(result.cells),
        "seed": result.seed,
        "gate_failed": result.gate_failed,
        "fail_on": list(result.fail_on),
        "comparison": result.comparison.to_json() if result.comparison is not None else None,
    }


def show_result(result: RunOutcome) -> None:
    """Print the report and a one-line outcome."""
    from farm.report.console import print_report, report_console

    console = report_console()
    print_report(result.cells, console=console)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items() if v) or "no cells"
    state = " (interrupted)" if result.interrupted else ""
    if result.seed is not None:
        state += f"  seed: {result.seed}"
    console.print(
        f"run folder: {result.run_dir}  cells: {counts}  bytes pushed: {result.bytes_pushed}"
        f"{state}",
        markup=False,
        highlight=False,
    )
    if result.comparison is not None:
        from farm.cli.compare import print_comparison

        print_comparison(result.comparison, console, fail_on=result.fail_on)

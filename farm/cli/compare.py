"""`farm compare BASE NEW`: two run folders compared configuration by configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from farm.errors import GATE_FAILED, ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from farm.results.compare import Comparison


def register(app: typer.Typer) -> None:
    """Add `farm compare` to the app."""
    app.command("compare")(compare_command)


def compare_command(
    base: Annotated[Path, typer.Argument(help="The baseline run folder.")],
    new: Annotated[Path, typer.Argument(help="The run folder to judge.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole comparison as JSON.")
    ] = False,
    threshold: Annotated[
        str, typer.Option("--threshold", help="Smallest latency change that counts, e.g. 5%.")
    ] = "5%",
    match_by: Annotated[
        str,
        typer.Option(
            "--match-by", help="Match devices by serial, or by model + build fingerprint (model)."
        ),
    ] = "serial",
    model_by: Annotated[
        str, typer.Option("--model-by", help="Match models by content (sha256) or by name.")
    ] = "sha256",
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on", help="Exit 4 on these findings, e.g. regression,failed,fallback."
        ),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="List unchanged configurations too.")
    ] = False,
) -> None:
    """Compare two runs: latency verdicts with a test and a CI, status, delegation, marks."""
    from farm.results.compare import compare_runs
    from farm.results.journal import load_run

    kinds = _fail_on(fail_on)
    try:
        result = compare_runs(
            load_run(base),
            load_run(new),
            threshold=_threshold(threshold),
            match_by=match_by,
            model_by=model_by,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    hits = result.findings(kinds) if kinds else []
    if as_json:
        data = result.to_json() | {
            "fail_on": list(kinds),
            "gate_failed": bool(hits),
        }
        typer.echo(json.dumps(data, indent=2))
    else:
        from farm.report.console import report_console

        print_comparison(result, report_console(), show_all=show_all, fail_on=kinds)
    raise typer.Exit(GATE_FAILED if hits else 0)


def _threshold(text: str) -> float:
    from farm.results.compare import parse_threshold

    try:
        return parse_threshold(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _fail_on(text: str | None) -> tuple[str, ...]:
    from farm.results.compare import parse_fail_on

    if text is None:
        return ()
    try:
        return parse_fail_on(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def print_comparison(
    result: Comparison,
    console: Console,
    *,
    show_all: bool = False,
    fail_on: tuple[str, ...] = (),
) -> None:
    """The comparison on a terminal: one row per configuration with a finding, then a summary."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from farm.report.text import safe_text

    def run_name(ref_id: str, labels: dict[str, str]) -> str:
        tags = " ".join(f"{k}={v}" for k, v in labels.items())
        return safe_text(f"{ref_id} ({tags})" if tags else ref_id)

    console.print(
        Text(
            f"base {run_name(result.base.run_id, dict(result.base.labels))}  →  "
            f"new {run_name(result.new.run_id, dict(result.new.labels))}  "
            f"(threshold {result.threshold * 100:g} %, alpha {result.alpha:g})"
        )
    )
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for name, justify in (
        ("configuration", "left"),
        ("base ms", "right"),
        ("new ms", "right"),
        ("change [95% CI]", "right"),
        ("p", "right"),
        ("verdict", "left"),
        ("findings", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    shown = 0
    for c in result.configs:
        quiet = [f for f in c.findings if f.kind not in ("regression", "improvement")]
        if not show_all and not quiet and c.change not in ("slower", "faster"):
            continue
        shown += 1
        lat = c.latency
        change = (
            f"{lat.percent:+.1f} % [{(lat.ci_low - 1) * 100:+.1f}, {(lat.ci_high - 1) * 100:+.1f}]"
            if lat is not None
            else "-"
        )
        verdict = lat.change.value if lat is not None else "-"
        style = {"slower": "red", "faster": "green", "inconclusive": "yellow"}.get(verdict, "")
        gate = any(f.kind in fail_on for f in c.findings)
        table.add_row(
            Text(safe_text(c.label)),
            _ms(c.base.median_us if c.base else None),
            _ms(c.new.median_us if c.new else None),
            change,
            f"{lat.p_value:.2g}" if lat is not None else "-",
            Text(verdict + (" ✗" if gate else ""), style=style),
            Text(safe_text("; ".join(f"{f.kind}: {f.text}" for f in quiet))),
        )
    if shown:
        console.print(table)
    counts = result.counts()
    parts = [f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n]
    geo = result.geomean_ratio
    if geo is not None:
        parts.append(f"geometric mean {(geo - 1) * 100:+.1f} %")
    console.print(Text("configurations: " + (", ".join(parts) or "none")))
    for warning in result.warnings:
        console.print(Text(f"warning: {safe_text(warning)}"))
    if fail_on:
        hits = result.findings(fail_on)
        if hits:
            kinds = sorted({f.kind for _, f in hits})
            console.print(
                Text(
                    f"gate: FAIL ({len(hits)} finding(s): {', '.join(kinds)}; "
                    f"--fail-on {','.join(fail_on)})",
                    style="bold red",
                )
            )
        else:
            console.print(Text(f"gate: pass (--fail-on {','.join(fail_on)})"))


def _ms(us: float | None) -> str:
    return f"{us / 1000:.3f}" if us else "-"

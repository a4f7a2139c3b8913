"""A run folder's report files: report.md, results.csv, ranking.csv, results.json, report.html,
junit.xml (written atomically)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from farm.errors import ConfigError
from farm.report.frame import best_per_device, cells_frame, summary_frame
from farm.report.html import ComparisonSection, render_html
from farm.report.junit import DEFAULT_FAIL_ON, Regressions, render_junit
from farm.report.markdown import render_markdown
from farm.report.ranking import ranking_frame
from farm.report.text import csv_text
from farm.results.journal import load_run
from farm.results.model import SCHEMA_VERSION, CellResult, RunHeader, SchemaError, json_safe

# `--format` names and the files each writes.
FORMATS: dict[str, tuple[str, ...]] = {
    "html": ("report.html",),
    "md": ("report.md",),
    "csv": ("results.csv", "ranking.csv"),
    "json": ("results.json",),
    "junit": ("junit.xml",),
}
STEP_SUMMARY_VAR = "GITHUB_STEP_SUMMARY"


def write_outputs(
    run_dir: Path | str,
    cells: Iterable[CellResult],
    *,
    header: RunHeader | None = None,
    formats: Iterable[str] = tuple(FORMATS),
    reference: str | None = None,
    fail_on: Iterable[str] = DEFAULT_FAIL_ON,
    comparison: ComparisonSection | None = None,
    regressions: Regressions | None = None,
) -> dict[str, Path]:
    """Write the report files of `formats` (default all); returns their paths by file name.

    The header defaults to the first line of the folder's results.jsonl when there is one.
    `reference` picks the ranking's reference device; `fail_on` the kinds junit.xml fails on;
    `comparison` and `regressions` come from a baseline (HTML section, JUnit failures).
    """
    run_dir = Path(run_dir)
    cells = list(cells)
    formats = parse_formats(formats)
    if header is None:
        header = _read_header(run_dir)
    df = cells_frame(cells)
    summary = summary_frame(df)
    best = best_per_device(summary)
    ranking = ranking_frame(summary, reference)

    paths: dict[str, Path] = {}

    def write(name: str, text: str) -> None:
        paths[name] = run_dir / name
        _atomic_write(paths[name], text)

    if "md" in formats:
        write("report.md", render_markdown(cells, header=header, reference=reference))
    if "csv" in formats:
        write("results.csv", _csv(df.drop(columns=["key"])))
        write("ranking.csv", _csv(ranking))
    if "json" in formats:
        document = {
            "schema_version": SCHEMA_VERSION,
            "run_id": header.run_id if header else None,
            "header": header.to_json() if header else None,
            # each cell line, with what a reader must know before trusting its number
            "cells": [c.to_json() | {"marks": list(c.marks)} for c in cells],
            "summary": _records(summary),
            "best": _records(best),
            "ranking": _records(ranking),
        }
        text = json.dumps(json_safe(document), allow_nan=False, ensure_ascii=False, indent=1)
        write("results.json", text + "\n")
    if "html" in formats:
        html = render_html(cells, header=header, reference=reference, comparison=comparison)
        write("report.html", html)
    if "junit" in formats:
        xml = render_junit(
            summary,
            fail_on=fail_on,
            run_id=header.run_id if header else "",
            timestamp=header.started_at if header else "",
            hostname=header.host.get("hostname", "") if header else "",
            ranking=ranking,
            regressions=regressions,
        )
        write("junit.xml", xml)
    return paths


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """The formats of `--format html,md,...`; an unknown one is a ConfigError."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise ConfigError(
            f"--format: unknown format {unknown[0] if unknown else ''!r} "
            f"(known: {', '.join(FORMATS)})"
        )
    return chosen


def regenerate(
    run_dir: Path | str,
    *,
    formats: Iterable[str] = tuple(FORMATS),
    reference: str | None = None,
    fail_on: Iterable[str] = DEFAULT_FAIL_ON,
    baseline: Path | str | None = None,
    threshold: float | None = None,
    history: bool = False,
    history_url: str | None = None,
) -> dict[str, Path]:
    """Write a run folder's report files again from its results.jsonl (any schema version);
    with a `baseline` run folder, report.html shows the comparison and junit.xml its
    regressions; with `history`, report.html shows each configuration's trend in the history
    at `history_url` (None: the default) with its steps marked."""
    run = load_run(run_dir)
    comparison = None
    if baseline is not None:
        from farm.results.compare import DEFAULT_THRESHOLD, compare_runs

        comparison = compare_runs(
            load_run(baseline),
            run,
            threshold=threshold if threshold is not None else DEFAULT_THRESHOLD,
        )
    if comparison is None:
        section, regressions = None, None
    else:
        from farm.report.baseline import comparison_section, regressions_of

        section, regressions = comparison_section(comparison), regressions_of(comparison)
    if history:
        from farm.report.baseline import history_trends, with_trends

        section = with_trends(section, history_trends(history_url, run.cells))
    return write_outputs(
        run.run_dir,
        run.cells,
        header=run.header,
        formats=formats,
        reference=reference,
        fail_on=fail_on,
        comparison=section,
        regressions=regressions,
    )


def append_step_summary(markdown_path: Path) -> Path | None:
    """Append a report.md to the file $GITHUB_STEP_SUMMARY names (CI job summary), if set."""
    target = os.environ.get(STEP_SUMMARY_VAR, "").strip()
    if not target:
        return None
    text = Path(markdown_path).read_text(encoding="utf-8")
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(text.rstrip("\n") + "\n\n")
    return Path(target)


def _csv(frame: pd.DataFrame) -> str:
    out = frame.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].map(csv_text)
    return out.to_csv(index=False)


def _records(frame: Any) -> list[dict[str, Any]]:
    return [
        {k: (None if _missing(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _missing(value: Any) -> bool:
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def _read_header(run_dir: Path) -> RunHeader | None:
    path = run_dir / "results.jsonl"
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        record = json.loads(first)
        if not isinstance(record, dict) or record.get("type") != "header":
            return None
        return RunHeader.from_json(record)
    except (OSError, ValueError, SchemaError):
        return None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; report files are ordinary files
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

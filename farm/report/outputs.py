"""A run folder's report files: report.md, results.csv, results.json (written atomically)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from farm.report.frame import best_per_device, cells_frame, summary_frame
from farm.report.markdown import render_markdown
from farm.report.text import csv_text
from farm.results.model import SCHEMA_VERSION, CellResult, RunHeader, SchemaError, json_safe


def write_outputs(
    run_dir: Path | str,
    cells: Iterable[CellResult],
    *,
    header: RunHeader | None = None,
) -> dict[str, Path]:
    """Write report.md, results.csv (one row per cell) and results.json; returns their paths.

    The header defaults to the first line of the folder's results.jsonl when there is one.
    """
    run_dir = Path(run_dir)
    cells = list(cells)
    if header is None:
        header = _read_header(run_dir)
    df = cells_frame(cells)
    summary = summary_frame(df)
    best = best_per_device(summary)

    paths = {
        "report.md": run_dir / "report.md",
        "results.csv": run_dir / "results.csv",
        "results.json": run_dir / "results.json",
    }
    _atomic_write(paths["report.md"], render_markdown(cells, header=header))
    csv_df = df.drop(columns=["key"]).copy()
    for col in csv_df.columns:
        if not pd.api.types.is_numeric_dtype(csv_df[col]):
            csv_df[col] = csv_df[col].map(csv_text)
    _atomic_write(paths["results.csv"], csv_df.to_csv(index=False))
    document = {
        "schema_version": SCHEMA_VERSION,
        "run_id": header.run_id if header else None,
        "header": header.to_json() if header else None,
        # each cell line, with what a reader must know before trusting its number
        "cells": [c.to_json() | {"marks": list(c.marks)} for c in cells],
        "summary": _records(summary),
        "best": _records(best),
    }
    text = json.dumps(json_safe(document), allow_nan=False, ensure_ascii=False, indent=1)
    _atomic_write(paths["results.json"], text + "\n")
    return paths


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

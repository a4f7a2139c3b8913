"""results.jsonl: the append-only run journal (header, one flushed line per cell, summary)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from farm.errors import InputError, OutputError
from farm.results.model import (
    SCHEMA_VERSION,
    CellResult,
    ResumeMark,
    Run,
    RunHeader,
    RunSummary,
    SchemaError,
    json_safe,
    now_iso,
)

RESULTS_NAME = "results.jsonl"


class Journal:
    """Writes results.jsonl: every line is flushed and fsynced before `append` returns."""

    def __init__(self, path: Path, fh: BinaryIO) -> None:
        self.path = path
        self._fh = fh
        self._lock = threading.Lock()
        self._failed: OutputError | None = None

    @classmethod
    def create(cls, run_dir: Path, header: RunHeader) -> Journal:
        """Start a new run folder with its header line; refuses a folder that has results."""
        run_dir = Path(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fh = open(run_dir / RESULTS_NAME, "xb")
        except FileExistsError:
            raise InputError(
                f"{run_dir / RESULTS_NAME} already exists; continue it with --resume {run_dir}"
            ) from None
        except OSError as exc:
            raise OutputError(
                f"{run_dir}: cannot create the run folder: {exc.strerror or exc}"
            ) from None
        journal = cls(run_dir / RESULTS_NAME, fh)
        journal._write(header.to_json())
        _fsync_dir(run_dir)
        return journal

    @classmethod
    def open_resume(cls, run_dir: Path) -> tuple[Journal, Run]:
        """Reopen a run for appending; returns the journal and the run as it stood.

        A partial last line (the process died while writing it) is cut off first.
        """
        data, good_bytes = _load(Path(run_dir))
        fh = open(data.path, "r+b")
        fh.truncate(good_bytes)
        fh.seek(0, os.SEEK_END)
        if good_bytes and not _ends_with_newline(data.path, good_bytes):
            fh.write(b"\n")
        journal = cls(data.path, fh)
        journal._write(ResumeMark(at=now_iso(), done=len(data.done_keys)).to_json())
        return journal, data

    def append(self, cell: CellResult) -> None:
        """Write one cell line, durably."""
        self._write(cell.to_json())

    def finish(self, summary: RunSummary) -> None:
        """Write the summary line and close the file."""
        self._write(summary.to_json())
        self.close()

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if not self._fh.closed:
                self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, record: dict[str, Any]) -> None:
        # One write call per line, so a crash leaves at most one partial line, always the last.
        # A line that cannot be written whole (disk full) is cut off again and the journal
        # refuses further lines: the file keeps only complete lines.
        data = json.dumps(json_safe(record), allow_nan=False, ensure_ascii=False) + "\n"
        with self._lock:
            if self._fh.closed:
                raise ValueError(f"{self.path}: journal is closed")
            if self._failed is not None:
                raise self._failed
            self._fh.flush()
            fd = self._fh.fileno()
            start = os.lseek(fd, 0, os.SEEK_CUR)
            view = memoryview(data.encode("utf-8"))
            try:
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as exc:
                try:
                    os.ftruncate(fd, start)
                    os.lseek(fd, start, os.SEEK_SET)
                except OSError:
                    pass
                self._failed = OutputError(f"{self.path}: cannot write: {exc.strerror or exc}")
                raise self._failed from None


def load_run(path: Path | str) -> Run:
    """Read a run folder (or its results.jsonl) of any known schema version; tolerates a
    partial last line with a warning."""
    return _load(Path(path))[0]


def _load(path: Path) -> tuple[Run, int]:
    """The run and the byte length of its well-formed lines."""
    file = path / RESULTS_NAME if path.is_dir() else path
    if file.exists() and not file.is_file():  # /dev/zero never ends, a FIFO blocks
        raise InputError(f"{file}: not a regular file, not a farm results file")
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no {RESULTS_NAME} found") from None
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror or exc}") from None
    name = file.name
    lines = raw.split(b"\n")
    if not raw.strip():
        raise InputError(f"{file}: empty, not a farm results file")

    header: RunHeader | None = None
    cells: dict[str, CellResult] = {}
    summary: RunSummary | None = None
    warnings: list[str] = []
    resumes: list[ResumeMark] = []
    superseded = 0
    version = SCHEMA_VERSION  # of the lines being read: the header's, then each resume's
    offset = good_bytes = 0
    last_content = max(i for i, line in enumerate(lines) if line.strip())
    for index, line in enumerate(lines):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        lineno = index + 1
        try:
            record = _strict_json(line)
        except (ValueError, RecursionError):
            if index == last_content:
                warnings.append(
                    f"{name}:{lineno}: partial last line ignored (the run stopped while writing it)"
                )
                good_bytes = start
                break
            warnings.append(f"{name}:{lineno}: not valid JSON; line skipped")
            good_bytes = min(offset, len(raw))
            continue
        good_bytes = min(offset, len(raw))
        if header is None:
            header = _read_header(record, file)
            version = header.schema_version
            continue
        kind = record.get("type")
        try:
            if kind == "cell":
                cell = CellResult.from_json(record, version)
                key = cell.key or f"line{lineno}"
                if key in cells:
                    superseded += 1
                    del cells[key]  # the newer line wins and moves to its run position
                cells[key] = cell
            elif kind == "summary":
                summary = RunSummary.from_json(record)
            elif kind == "resumed":
                mark = ResumeMark.from_json(record, version)
                resumes.append(mark)
                version = mark.schema_version  # of the lines that follow
                summary = None  # an earlier summary no longer describes the run
            else:
                warnings.append(f"{name}:{lineno}: unknown record type {kind!r}; line skipped")
        except SchemaError as exc:
            warnings.append(f"{name}:{lineno}: {exc}; line skipped")
    if header is None:
        raise InputError(f"{file}: not a farm results file (no header line)")
    run = Run(
        path=file,
        header=header,
        cells=tuple(cells.values()),
        summary=summary,
        warnings=tuple(warnings),
        resumes=tuple(resumes),
        superseded=superseded,
    )
    return run, good_bytes


def _read_header(record: dict[str, Any], file: Path) -> RunHeader:
    if record.get("type") != "header":
        raise InputError(f"{file}: not a farm results file (the first line is not a header)")
    try:
        return RunHeader.from_json(record)
    except SchemaError as exc:
        raise InputError(f"{file}: {exc}") from None


def _strict_json(line: bytes) -> dict[str, Any]:
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    record = json.loads(line.decode("utf-8"), parse_constant=no_constants)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) == b"\n"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

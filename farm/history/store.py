"""The run history: runs and their cells in SQLite or PostgreSQL through SQLAlchemy Core.

One code path serves both: SQLite by default (a file in the user data folder), PostgreSQL for
labs whose runs come from several hosts (`postgresql://user@host/db`).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from farm.errors import InputError
from farm.history import schema as s
from farm.history.changepoints import DEFAULT_THRESHOLD, Step, detect_steps
from farm.results.compare import fingerprints_of
from farm.results.model import CellResult, Run, RunHeader, Status, now_iso

ENV = "FARM_HISTORY"


class HistoryError(InputError):
    """The history database cannot be opened or read; the message names its URL."""


def default_url() -> str:
    """`$FARM_HISTORY`, else an SQLite file in the user data folder."""
    env = os.environ.get(ENV)
    if env:
        return env
    folder = Path(platformdirs.user_data_dir("farm", appauthor=False))
    return f"sqlite:///{folder / 'history.sqlite'}"


def normalise_url(url: str) -> str:
    """An SQLAlchemy URL: a plain path is an SQLite file; postgresql uses psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def shown_url(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


@dataclass(frozen=True)
class RunRow:
    """A run as the history lists it."""

    run_id: str
    started_at: str
    host: str
    labels: Mapping[str, str]
    cells: int
    ok: int
    source: str

    def to_json(self) -> dict[str, Any]:
        """The row as JSON."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "host": self.host,
            "labels": dict(self.labels),
            "cells": self.cells,
            "ok": self.ok,
            "source": self.source,
        }


@dataclass(frozen=True)
class Configuration:
    """A configuration of the history: device, model, delegate variant, threads."""

    key: str  # serial|model sha256|delegate|threads
    serial: str
    device_model: str
    model: str
    model_sha256: str
    delegate: str
    threads: int

    @property
    def label(self) -> str:
        """A short name for tables."""
        return (
            f"{self.device_model} {self.serial} · {self.model} · {self.delegate} · {self.threads}t"
        )

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON."""
        return {
            "key": self.key,
            "serial": self.serial,
            "device_model": self.device_model,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "delegate": self.delegate,
            "threads": self.threads,
        }


@dataclass(frozen=True)
class TrendPoint:
    """One run of a configuration's series: the median of its ok repeats' medians."""

    run_id: str
    started_at: str
    labels: Mapping[str, str]
    median_us: float | None
    repeats: int
    status: str  # ok when every repeat is ok, else the first other status

    def to_json(self) -> dict[str, Any]:
        """The point as JSON."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "labels": dict(self.labels),
            "median_us": self.median_us,
            "repeats": self.repeats,
            "status": self.status,
        }


@dataclass(frozen=True)
class Regression:
    """A step in a configuration's series, named by the run where it happened."""

    config: Configuration
    point: TrendPoint
    step: Step

    def to_json(self) -> dict[str, Any]:
        """The step as JSON."""
        return {
            "config": self.config.to_json(),
            "run_id": self.point.run_id,
            "started_at": self.point.started_at,
            "labels": dict(self.point.labels),
            "before_us": self.step.before,
            "after_us": self.step.after,
            "percent": self.step.percent,
        }


@dataclass(frozen=True)
class Filters:
    """Which configurations and runs a query takes (glob-free, exact or prefix matches)."""

    device: str | None = None  # serial or device model
    model: str | None = None  # name or sha256 prefix
    delegate: str | None = None
    threads: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    since: str | None = None  # ISO time: runs started at or after


def config_key(cell: CellResult) -> str:
    """The history's key of a cell's configuration."""
    return f"{cell.serial}|{cell.model_sha256}|{cell.delegate}|{cell.threads}"


def since_iso(text: str) -> str:
    """`14d`, `12h`, `30m` or an ISO date → the ISO time that long ago (or that date)."""
    raw = text.strip()
    units = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}
    if raw[:-1].isdigit() and raw[-1:] in units:
        delta = timedelta(**{units[raw[-1]]: int(raw[:-1])})
        return (datetime.now(timezone.utc) - delta).isoformat(timespec="seconds")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"--since {text!r}: expected e.g. 14d, 12h or 2026-01-31") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


class History:
    """A history database, migrated to the current schema on open."""

    def __init__(self, url: str | None = None) -> None:
        self.url = normalise_url(url or default_url())
        self.shown = shown_url(self.url)
        if self.url.startswith("sqlite:///"):
            path = Path(self.url.removeprefix("sqlite:///"))
            if str(path) not in ("", ":memory:"):
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise HistoryError(f"{path}: cannot create its folder: {exc}") from None
        try:
            connect_args = {"connect_timeout": 10} if self.url.startswith("postgresql") else {}
            self.engine: Engine = create_engine(self.url, connect_args=connect_args)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise HistoryError(f"{self.shown}: not a usable history URL ({exc})") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            with self.engine.begin() as conn:
                s.migrate(conn, self.shown)
        except SQLAlchemyError as exc:
            raise HistoryError(f"{self.shown}: cannot open: {_first_line(exc)}") from None

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection whose database errors become one HistoryError line."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise HistoryError(f"{self.shown}: cannot read: {_first_line(exc)}") from None

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def add_run(self, run: Run) -> str:
        """Record a run (its cells replace those of an earlier import): "added" or "updated"."""
        header = run.header
        prints = fingerprints_of(run)
        try:
            with self.engine.begin() as conn:
                old = conn.execute(
                    select(s.runs.c.id).where(s.runs.c.run_id == header.run_id)
                ).scalar()
                if old is not None:
                    conn.execute(delete(s.cells).where(s.cells.c.run == old))
                    conn.execute(delete(s.run_labels).where(s.run_labels.c.run == old))
                    conn.execute(delete(s.runs).where(s.runs.c.id == old))
                inserted = conn.execute(
                    insert(s.runs).values(
                        run_id=header.run_id,
                        started_at=header.started_at or now_iso(),
                        recorded_at=now_iso(),
                        host=str(header.host.get("hostname", "")),
                        source=str(run.run_dir.resolve()),
                        header=json.dumps(header.to_json()),
                    )
                ).inserted_primary_key
                assert inserted is not None
                pk = inserted[0]
                if header.labels:
                    conn.execute(
                        insert(s.run_labels),
                        [{"run": pk, "name": k, "value": v} for k, v in header.labels.items()],
                    )
                rows = [_cell_row(pk, c, prints.get(c.serial, "")) for c in run.cells]
                if rows:
                    conn.execute(insert(s.cells), rows)
        except SQLAlchemyError as exc:
            raise HistoryError(
                f"{self.shown}: cannot record {header.run_id}: {_first_line(exc)}"
            ) from None
        return "updated" if old is not None else "added"

    # ------------------------------------------------------------------ reading

    def runs(self, filters: Filters | None = None, *, limit: int | None = None) -> list[RunRow]:
        """Runs matching the filters, newest first."""
        f = filters or Filters()
        r, c = s.runs, s.cells
        q = (
            select(
                r.c.id,
                r.c.run_id,
                r.c.started_at,
                r.c.host,
                r.c.source,
                func.count(c.c.id),
                func.sum(case((c.c.status == Status.OK.value, 1), else_=0)),
            )
            .select_from(r.outerjoin(c, c.c.run == r.c.id))
            .where(*self._run_where(f))
            .group_by(r.c.id)
            .order_by(r.c.started_at.desc(), r.c.id.desc())
        )
        if any((f.device, f.model, f.delegate, f.threads)):
            q = q.where(r.c.id.in_(select(c.c.run).where(*self._cell_where(f))))
        if limit:
            q = q.limit(limit)
        with self._reading() as conn:
            rows = conn.execute(q).all()
            labels = self._labels(conn, [row[0] for row in rows])
        return [
            RunRow(row[1], row[2], row[3], labels.get(row[0], {}), row[5], int(row[6] or 0), row[4])
            for row in rows
        ]

    def load_run(self, run_id: str) -> Run:
        """A recorded run as a typed Run (header and cells as they were recorded)."""
        with self._reading() as conn:
            row = conn.execute(
                select(s.runs.c.id, s.runs.c.header, s.runs.c.source).where(
                    s.runs.c.run_id == run_id
                )
            ).first()
            if row is None:
                raise HistoryError(f"{self.shown}: no run {run_id!r} in the history")
            data = conn.execute(
                select(s.cells.c.data).where(s.cells.c.run == row[0]).order_by(s.cells.c.id)
            ).scalars()
            cells = tuple(CellResult.from_json(json.loads(d)) for d in data)
        header = RunHeader.from_json(json.loads(row[1]))
        return Run(path=Path(row[2]) / "results.jsonl", header=header, cells=cells)

    def latest(self, labels: Mapping[str, str] | None = None, *, exclude: str = "") -> Run | None:
        """The newest run carrying these labels (other than `exclude`), None when none does."""
        rows = self.runs(Filters(labels=labels or {}), limit=2)
        for row in rows:
            if row.run_id != exclude:
                return self.load_run(row.run_id)
        return None

    def configurations(self, filters: Filters | None = None) -> list[Configuration]:
        """Configurations with at least one cell matching the filters."""
        f = filters or Filters()
        c = s.cells
        q = (
            select(
                c.c.config_key,
                func.max(c.c.serial),
                func.max(c.c.device_model),
                func.max(c.c.model),
                func.max(c.c.model_sha256),
                func.max(c.c.delegate),
                func.max(c.c.threads),
            )
            .where(*self._cell_where(f))
            .group_by(c.c.config_key)
            .order_by(c.c.config_key)
        )
        if f.labels or f.since:
            q = q.where(c.c.run.in_(select(s.runs.c.id).where(*self._run_where(f))))
        with self._reading() as conn:
            return [Configuration(*row) for row in conn.execute(q).all()]

    def trend(self, config: Configuration, filters: Filters | None = None) -> list[TrendPoint]:
        """The configuration's series, oldest run first."""
        f = filters or Filters()
        r, c = s.runs, s.cells
        q = (
            select(r.c.id, r.c.run_id, r.c.started_at, c.c.status, c.c.median_us)
            .select_from(c.join(r, c.c.run == r.c.id))
            .where(c.c.config_key == config.key, *self._run_where(f))
            .order_by(r.c.started_at, r.c.id)
        )
        with self._reading() as conn:
            rows = conn.execute(q).all()
            labels = self._labels(conn, sorted({row[0] for row in rows}))
        points: list[TrendPoint] = []
        for pk, group in _grouped(rows):
            medians = [row[4] for row in group if row[3] == Status.OK.value and row[4]]
            statuses = [row[3] for row in group if row[3] != Status.OK.value]
            points.append(
                TrendPoint(
                    run_id=group[0][1],
                    started_at=group[0][2],
                    labels=labels.get(pk, {}),
                    median_us=statistics.median(medians) if medians else None,
                    repeats=len(group),
                    status=statuses[0] if statuses else Status.OK.value,
                )
            )
        return points

    def regressions(
        self,
        filters: Filters | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        improvements: bool = False,
    ) -> list[Regression]:
        """Steps in every matching configuration's series (whole history), at runs since
        `filters.since`; slower ones only unless `improvements`."""
        f = filters or Filters()
        whole = Filters(f.device, f.model, f.delegate, f.threads, f.labels)
        found = []
        for config in self.configurations(whole):
            points = [p for p in self.trend(config, whole) if p.median_us]
            steps = detect_steps([p.median_us or 0.0 for p in points], threshold=threshold)
            for step in steps:
                point = points[step.index]
                if f.since and point.started_at < f.since:
                    continue
                if step.ratio > 1 or improvements:
                    found.append(Regression(config, point, step))
        found.sort(key=lambda g: (g.point.started_at, g.config.key), reverse=True)
        return found

    # ------------------------------------------------------------------ helpers

    def _labels(self, conn: Connection, pks: Sequence[int]) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {}
        for chunk in _chunks(list(pks), 500):
            q = select(s.run_labels.c.run, s.run_labels.c.name, s.run_labels.c.value).where(
                s.run_labels.c.run.in_(chunk)
            )
            for pk, name, value in conn.execute(q).all():
                out.setdefault(pk, {})[name] = value
        return out

    @staticmethod
    def _run_where(f: Filters) -> list[Any]:
        where: list[Any] = []
        for name, value in f.labels.items():
            lab = s.run_labels
            where.append(
                s.runs.c.id.in_(
                    select(lab.c.run).where(and_(lab.c.name == name, lab.c.value == value))
                )
            )
        if f.since:
            where.append(s.runs.c.started_at >= f.since)
        return where

    @staticmethod
    def _cell_where(f: Filters) -> list[Any]:
        c = s.cells
        where: list[Any] = []
        if f.device:
            where.append((c.c.serial == f.device) | (c.c.device_model == f.device))
        if f.model:
            where.append((c.c.model == f.model) | c.c.model_sha256.startswith(f.model.lower()))
        if f.delegate:
            where.append(c.c.delegate == f.delegate)
        if f.threads is not None:
            where.append(c.c.threads == f.threads)
        return where


def _cell_row(run_pk: int, cell: CellResult, fingerprint: str) -> dict[str, Any]:
    m = cell.metrics
    return {
        "run": run_pk,
        "config_key": config_key(cell),
        "serial": cell.serial,
        "device_model": cell.device.model,
        "fingerprint": fingerprint,
        "model": cell.model,
        "model_sha256": cell.model_sha256,
        "delegate": cell.delegate,
        "threads": cell.threads,
        "repeat": cell.repeat,
        "status": cell.status.value,
        "median_us": _num(m.inference_median_us or m.inference_avg_us) if m else None,
        "avg_us": _num(m.inference_avg_us) if m else None,
        "std_us": _num(m.inference_std_us) if m else None,
        "count": m.inference_count if m else None,
        "memory_mb": _num(m.memory_mb) if m else None,
        "marks": ",".join(cell.marks),
        "data": json.dumps(cell.to_json()),
    }


def _num(value: float | int | None) -> float | None:
    return float(value) if value is not None else None


def _grouped(rows: Sequence[Any]) -> Iterator[tuple[int, list[Any]]]:
    group: list[Any] = []
    for row in rows:
        if group and row[0] != group[0][0]:
            yield group[0][0], group
            group = []
        group.append(row)
    if group:
        yield group[0][0], group


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()

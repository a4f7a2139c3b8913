"""The history database's tables (SQLAlchemy Core) and its versioned migrations.

Schema version history (add a migration, never edit an applied one):
  1: runs (one row per run: run_id, started_at, host, header JSON, source), run_labels (name,
     value per run), cells (one row per cell: the configuration key and its parts, status, the
     latency numbers a trend needs, marks, and the whole cell line as JSON), schema_version.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
)

from farm.errors import InputError

metadata = MetaData()

schema_version = Table(
    "farm_schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

runs = Table(
    "farm_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(200), nullable=False, unique=True),
    Column("started_at", String(40), nullable=False, index=True),
    Column("recorded_at", String(40), nullable=False),
    Column("host", String(255), nullable=False),
    Column("source", Text, nullable=False),  # the run folder it was read from
    Column("header", Text, nullable=False),  # the header line as JSON
)

run_labels = Table(
    "farm_run_labels",
    metadata,
    Column("run", Integer, ForeignKey("farm_runs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("value", String(500), nullable=False),
    Index("ix_farm_run_labels_name_value", "name", "value"),
    Index("ix_farm_run_labels_run", "run"),
)

cells = Table(
    "farm_cells",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", Integer, ForeignKey("farm_runs.id", ondelete="CASCADE"), nullable=False),
    Column("config_key", String(600), nullable=False),  # serial|model sha256|delegate|threads
    Column("serial", String(200), nullable=False),
    Column("device_model", String(200), nullable=False),
    Column("fingerprint", String(300), nullable=False),
    Column("model", Text, nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("delegate", String(200), nullable=False),
    Column("threads", Integer, nullable=False),
    Column("repeat", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("median_us", Float),
    Column("avg_us", Float),
    Column("std_us", Float),
    Column("count", Integer),
    Column("memory_mb", Float),
    Column("marks", String(200), nullable=False),  # comma-separated
    Column("data", Text, nullable=False),  # the cell line as JSON
    Index("ix_farm_cells_config_run", "config_key", "run"),
    Index("ix_farm_cells_run", "run"),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[runs, run_labels, cells])


# version -> the step that brings the database from version - 1 to it
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1}
LATEST = max(MIGRATIONS)


def current_version(conn: Connection) -> int:
    """The schema version of the database (0: empty)."""
    if not inspect(conn).has_table(schema_version.name):
        return 0
    value = conn.execute(select(schema_version.c.version)).scalar()
    return int(value or 0)


def migrate(conn: Connection, where: str) -> int:
    """Bring the database to the latest schema; the version it was at. A newer one is refused."""
    found = current_version(conn)
    if found > LATEST:
        raise InputError(
            f"{where}: history schema {found} is newer than this farm reads (up to {LATEST}); "
            "upgrade farm"
        )
    if found == 0:
        schema_version.create(conn, checkfirst=True)
        conn.execute(schema_version.insert().values(version=0))
    for version in range(found + 1, LATEST + 1):
        MIGRATIONS[version](conn)
        conn.execute(schema_version.update().values(version=version))
    return found

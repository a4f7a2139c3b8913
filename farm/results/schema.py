"""The results.jsonl schema: header, cell and summary lines, statuses and the exit code.

Schema version history (bump SCHEMA_VERSION and write what changed here; loaders refuse newer):
  1 (farm 0.1): header {type, schema_version, run_id, plan, config, host, tool_versions,
    started_at}; cell {type, key, serial, server, device{model, soc, sdk, abi, profile}, model,
    model_sha256, binary_sha256, delegate, threads, repeat, status, reason, metrics, delegation,
    command, log, started_at, duration_s, simulated, and where the runner knows them exit_status,
    retries, rerun}; summary {type, counts, bytes_pushed,
    finished_at, ...}; resumed {type, at, done} where --resume continued the run (a later
    cell line for the same key replaces the earlier one).
"""

from __future__ import annotations

import math
import platform
import socket
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

SCHEMA_VERSION = 1

# A cell's outcome. The first three are results the tool gave; the rest mean the run is incomplete.
STATUSES = ("ok", "failed", "unsupported", "timeout", "device_lost", "error")
COMPLETE = frozenset({"ok", "failed", "unsupported"})
INCOMPLETE = frozenset(STATUSES) - COMPLETE

_TOOLS = ("farm", "adbutils", "ai-edge-litert", "pandas", "pydantic", "rich", "typer")


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def host_info() -> dict[str, Any]:
    """The machine that ran farm."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def tool_versions() -> dict[str, str | None]:
    """Versions of farm and the libraries that shape its results (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def header(
    *,
    plan: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    started_at: str | None = None,
    host: Mapping[str, Any] | None = None,
    tools: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The first line of results.jsonl: the whole plan and where it ran."""
    return {
        "type": "header",
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "plan": dict(plan),
        "config": dict(config) if config is not None else None,
        "host": dict(host) if host is not None else host_info(),
        "tool_versions": dict(tools) if tools is not None else tool_versions(),
        "started_at": started_at or now_iso(),
        **extra,
    }


def cell_line(
    *,
    cell: Any,
    device: Any,
    status: str,
    reason: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    delegation: Mapping[str, Any] | None = None,
    binary_sha256: str | None = None,
    command: str | None = None,
    log: str | None = None,
    started_at: str | None = None,
    duration_s: float | None = None,
    simulated: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One finished cell. `cell` is a plan Cell; `device` a DeviceInfo (or its summary dict)."""
    if status not in STATUSES:
        raise ValueError(f"unknown cell status {status!r} (known: {', '.join(STATUSES)})")
    summary = device.summary() if hasattr(device, "summary") else dict(device)
    return {
        "type": "cell",
        "key": cell.key,
        "serial": cell.serial,
        "server": cell.server,
        "device": {k: summary.get(k) for k in ("model", "soc", "sdk", "abi", "profile")},
        "model": cell.model,
        "model_sha256": cell.model_sha256,
        "binary_sha256": binary_sha256,
        "delegate": cell.delegate,
        "threads": cell.threads,
        "repeat": cell.repeat,
        "status": status,
        "reason": reason or None,
        "metrics": dict(metrics) if metrics is not None else None,
        "delegation": dict(delegation) if delegation is not None else None,
        "command": command,
        "log": log,
        "started_at": started_at,
        "duration_s": duration_s,
        "simulated": bool(simulated),
        **extra,
    }


def summary(
    *,
    counts: Mapping[str, int],
    bytes_pushed: int = 0,
    finished_at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The last line of results.jsonl: how many cells ended in each status."""
    unknown = set(counts) - set(STATUSES)
    if unknown:
        raise ValueError(f"unknown cell status {sorted(unknown)[0]!r}")
    return {
        "type": "summary",
        "counts": {s: int(counts.get(s, 0)) for s in STATUSES},
        "bytes_pushed": int(bytes_pushed),
        "finished_at": finished_at or now_iso(),
        **extra,
    }


def count_statuses(cells: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Cells per status, every status present (0 when none)."""
    found = Counter(c.get("status") for c in cells)
    return {s: found.get(s, 0) for s in STATUSES}


def exit_code_for(counts: Mapping[str, int]) -> int:
    """0 when every cell got a result from the tool (ok/failed/unsupported), else 1."""
    return 1 if any(counts.get(s, 0) for s in INCOMPLETE) else 0


def json_safe(value: Any) -> Any:
    """The value with NaN/Infinity replaced by None, tuples by lists, Paths by strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return str(value)

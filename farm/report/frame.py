"""The tidy DataFrame every report output is built from, and its summaries."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

from farm.results.model import Accuracy, CellResult, Delegation, Metrics, Verdict, disqualified

# Stability checks beside the numbers: the spread is large, or the sample is small.
UNSTABLE_STD_RATIO = 0.10
MIN_RUNS = 10
MAX_REASON = 300  # characters of a failure reason shown in reports (the log has the rest)

CELL_COLUMNS = [
    "key",
    "serial",
    "server",
    "device",
    "soc",
    "sdk",
    "abi",
    "profile",
    "simulated",
    "model",
    "model_sha256",
    "delegate",
    "delegate_kind",
    "threads",
    "repeat",
    "status",
    "verdict",
    "marks",
    "reason",
    "latency_ms",
    "std_ms",
    "median_ms",
    "p5_ms",
    "p95_ms",
    "runs",
    "init_ms",
    "first_ms",
    "warmup_ms",
    "memory_mb",
    "peak_memory_mb",
    "delegates_used",
    "nodes_delegated",
    "nodes_total",
    "partitions",
    "coverage",
    "top_ops",
    "tool_flags",
    "binary_abi",
    "binary_source",
    "binary_sha256",
    "command",
    "log",
    "started_at",
    "duration_s",
    "hot",
    "throttled",
    "temp_before_c",
    "temp_after_c",
    "cooldown_s",
    "battery_pct",
    "comparable",
    "accuracy",
    "accuracy_reference",
    "max_abs_error",
    "max_rel_error",
    "cosine",
    "top1_agreement",
]
TOP_OPS = 5  # node types shown per cell
GROUP = ["serial", "model", "delegate", "threads"]


def cells_frame(cells: Iterable[CellResult]) -> pd.DataFrame:
    """One row per cell, numbers in ms (from the parser's µs)."""
    rows = [_cell_row(c) for c in cells]
    df = pd.DataFrame(rows, columns=CELL_COLUMNS)
    for col in (
        "latency_ms",
        "std_ms",
        "median_ms",
        "p5_ms",
        "p95_ms",
        "init_ms",
        "first_ms",
        "warmup_ms",
        "memory_mb",
        "peak_memory_mb",
        "max_abs_error",
        "max_rel_error",
        "cosine",
        "top1_agreement",
    ):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("threads", "repeat", "runs", "nodes_delegated", "nodes_total", "partitions", "sdk"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in ("simulated", "hot", "throttled"):
        df[col] = df[col].fillna(False).astype(bool)
    for col in ("temp_before_c", "temp_after_c", "cooldown_s"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["battery_pct"] = pd.to_numeric(df["battery_pct"], errors="coerce").astype("Int64")
    for col in (
        "device",
        "soc",
        "abi",
        "profile",
        "reason",
        "coverage",
        "delegates_used",
        "delegate_kind",
        "verdict",
        "marks",
        "top_ops",
        "tool_flags",
        "binary_abi",
        "binary_source",
        "accuracy",
        "accuracy_reference",
    ):
        df[col] = df[col].fillna("").astype(str)
    return df


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per device × model × delegate × threads: latency over repeats, coverage, speed-up, flags."""
    columns = [
        "serial",
        "server",
        "device",
        "soc",
        "profile",
        "simulated",
        "model",
        "delegate",
        "delegate_kind",
        "threads",
        "status",
        "latency_ms",
        "std_ms",
        "runs",
        "repeats",
        "repeats_ok",
        "coverage",
        "verdict",
        "marks",
        "speedup",
        "flags",
        "reason",
        "top_ops",
        "hot",
        "throttled",
        "comparable",
    ]
    if df.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for _, group in df.groupby(GROUP, sort=False, dropna=False):
        rows.append(_summarise(group))
    out = pd.DataFrame(rows, columns=columns)
    out["runs"] = pd.array(out["runs"].tolist(), dtype="Int64")
    base = out[(out["delegate"] == "cpu") & (out["threads"] == 1) & (out["status"] == "ok")]
    base_latency = {(r.serial, r.model): r.latency_ms for r in base.itertuples()}
    out["speedup"] = [
        _ratio(base_latency.get((r.serial, r.model)), r.latency_ms)
        if r.status == "ok" and not disqualified(r.marks.split(","))
        else math.nan
        for r in out.itertuples()
    ]
    return _ordered(out, df)


def best_per_device(summary: pd.DataFrame) -> pd.DataFrame:
    """For each device and model, the ok configuration with the lowest mean latency; one with
    a disqualifying mark (a fallback, ...) never counts."""
    fair = summary["marks"].map(lambda m: not disqualified(str(m).split(","))).astype(bool)
    ok = summary[(summary["status"] == "ok") & summary["latency_ms"].notna() & fair]
    if ok.empty:
        return summary.iloc[0:0]
    best = ok.loc[ok.groupby(["serial", "model"], sort=False)["latency_ms"].idxmin()]
    return best.reset_index(drop=True)


def problems_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Cells that did not end ok, fallbacks (status "fallback": a number, but not the
    requested delegate's) and inaccurate cells (status "inaccurate": outputs over the
    tolerance), grouped by device, delegate, status and reason.

    `models` and `threads` list what the group covers ("all" when it is every model of the
    device); `cells` counts its cells, repeats included.
    """
    columns = [
        "serial",
        "device",
        "simulated",
        "delegate",
        "models",
        "threads",
        "status",
        "cells",
        "reason",
    ]
    first_bar = df["marks"].map(
        lambda text: next((m for m in str(text).split(",") if disqualified([m])), "")
    )
    bad = df[(df["status"] != "ok") | (first_bar != "")]
    bad = bad.assign(status=bad["status"].where(bad["status"] != "ok", first_bar[bad.index]))
    if bad.empty:
        return pd.DataFrame(columns=columns)
    models_of = {serial: set(group["model"]) for serial, group in df.groupby("serial", sort=False)}
    rows = []
    for (serial, delegate, status, reason), group in bad.groupby(
        ["serial", "delegate", "status", "reason"], sort=False, dropna=False
    ):
        models = sorted(set(group["model"]), key=str)
        everything = len(models_of[serial]) > 1 and set(models) == models_of[serial]
        rows.append(
            {
                "serial": serial,
                "device": group["device"].iloc[0],
                "simulated": bool(group["simulated"].any()),
                "delegate": delegate,
                "models": f"all {len(models)}" if everything else ", ".join(map(str, models)),
                "threads": ", ".join(str(t) for t in sorted(set(group["threads"].dropna()))),
                "status": status,
                "cells": len(group),
                "reason": _shorten(reason or ""),
            }
        )
    out = pd.DataFrame(rows, columns=columns)
    return _ordered(out, df, by=["serial", "delegate", "status"])


def accuracy_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per device × model × delegate: the accuracy check (it runs once per variant)."""
    columns = [
        "serial",
        "model",
        "delegate",
        "accuracy",
        "accuracy_reference",
        "max_abs_error",
        "max_rel_error",
        "cosine",
        "top1_agreement",
    ]
    checked = df[df["accuracy"] != ""] if "accuracy" in df else df.iloc[0:0]
    if checked.empty:
        return pd.DataFrame(columns=columns)
    first = checked.drop_duplicates(["serial", "model", "delegate"])[columns]
    return _ordered(first.reset_index(drop=True), df, by=["serial", "model", "delegate"])


def _shorten(text: str, limit: int = MAX_REASON) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def coverage_text(delegation: Delegation | None, delegate: str = "") -> str:
    """ "GPU 29/31 nodes, 3 partitions" from what the log said about delegation ("" if none)."""
    if delegation is None:
        return ""
    name = "+".join(delegation.delegates)
    if not name and delegate not in ("", "cpu"):
        name = delegate.upper()
    done, total = delegation.nodes_delegated, delegation.nodes_total
    coverage = delegation.coverage
    parts = delegation.partitions
    if parts is None:
        parts = delegation.kernels  # one delegate kernel per partition
    if done and total:
        text = f"{name} {done}/{total} nodes".strip()
    elif done == 0 or coverage == "none":
        return f"{name}: nothing delegated".strip(": ")
    elif coverage and name:
        text = f"{name} {coverage}"
    else:
        text = name
    if text and parts:
        text += f", {parts} partition{'s' if parts != 1 else ''}"
    return text


def short_coverage(text: str) -> str:
    """coverage_text shortened for narrow tables: "GPU 29/31, 3 parts", "NNAPI: none"."""
    text = text.replace(" nodes", "").replace(": nothing delegated", ": none")
    return text.replace(" partitions", " parts").replace(" partition", " part")


def stability_flags(
    latency_ms: float, std_ms: float, runs: int | None, *, short: bool = False
) -> list[str]:
    """Warnings that go beside a number: a spread of 10 % or more, or too few runs.

    `short` gives the narrow-table words ("noisy", "3 runs") that a legend explains.
    """
    flags = []
    if _finite(latency_ms) and _finite(std_ms) and latency_ms > 0:
        ratio = std_ms / latency_ms
        if ratio >= UNSTABLE_STD_RATIO:
            flags.append("noisy" if short else f"unstable: std {ratio:.0%} of mean")
    if runs is not None and runs < MIN_RUNS:
        plural = "s" if runs != 1 else ""
        flags.append(f"{runs} run{plural}" if short else f"only {runs} run{plural}")
    return flags


def short_flags(row: Any) -> list[str]:
    """The stability flags of one summary row, in their short form."""
    if row["status"] != "ok":
        return []
    runs = row["runs"]
    flags = stability_flags(
        row["latency_ms"], row["std_ms"], None if pd.isna(runs) else int(runs), short=True
    )
    if row["repeats_ok"] < row["repeats"]:
        flags.append(f"{row['repeats_ok']}/{row['repeats']} ok")
    marks = [m for m in str(row.get("marks") or "").split(",") if m]
    return [*marks, *flags]


def verdict_text(cell: CellResult) -> str:
    """What the delegation column says when the requested delegate did not run ("" else)."""
    verdict = cell.verdict
    if verdict is None or not verdict.fallback:
        return ""
    if verdict is Verdict.NONE:
        return f"{cell.delegate}: none (ran on CPU)"
    return f"{cell.delegate}: not applied (ran on CPU)"


def top_ops_text(metrics: Metrics, n: int = TOP_OPS) -> str:
    """The op profile's heaviest node types: "CONV_2D 61.2%, TfLiteGpuDelegateV2 30.1%"."""
    rows = [r for r in metrics.op_profile or () if r.percent is not None]
    rows.sort(key=lambda r: float(r.percent or 0), reverse=True)
    return ", ".join(f"{r.node_type} {float(r.percent or 0):.1f}%" for r in rows[:n])


def _cell_row(cell: CellResult) -> dict[str, Any]:
    metrics = cell.metrics or Metrics()
    delegation = cell.delegation
    fell_back = cell.verdict is not None and cell.verdict.fallback
    device = cell.device
    thermal = cell.thermal
    before = thermal.before if thermal is not None else None
    after = thermal.after if thermal is not None else None
    return {
        "key": cell.key,
        "serial": cell.serial,
        "server": cell.server,
        "device": device.model,
        "soc": device.soc,
        "sdk": device.sdk,
        "abi": device.abi,
        "profile": device.profile,
        "simulated": cell.simulated,
        "model": cell.model,
        "model_sha256": cell.model_sha256,
        "delegate": cell.delegate,
        "delegate_kind": cell.delegate_kind,
        "threads": cell.threads,
        "repeat": cell.repeat,
        "status": cell.status.value,
        "verdict": cell.verdict.value if cell.verdict is not None else "",
        "marks": ",".join(cell.marks),
        "reason": cell.reason or "",
        "latency_ms": _ms(metrics.inference_avg_us),
        "std_ms": _ms(metrics.inference_std_us),
        "median_ms": _ms(metrics.inference_median_us),
        "p5_ms": _ms(metrics.inference_p5_us),
        "p95_ms": _ms(metrics.inference_p95_us),
        "runs": metrics.inference_count,
        "init_ms": _ms(metrics.init_us),
        "first_ms": _ms(metrics.first_inference_us),
        "warmup_ms": _ms(metrics.warmup_avg_us),
        "memory_mb": metrics.memory_mb,
        "peak_memory_mb": metrics.memory_peak_mb,
        "delegates_used": "+".join(delegation.delegates) if delegation else "",
        "nodes_delegated": delegation.nodes_delegated if delegation and not fell_back else None,
        "nodes_total": delegation.nodes_total if delegation else None,
        "partitions": delegation.partitions if delegation and not fell_back else None,
        "coverage": verdict_text(cell) or coverage_text(delegation, cell.delegate),
        "top_ops": top_ops_text(metrics),
        "tool_flags": " ".join(f"--{k}={v}" for k, v in cell.tool_flags.items()),
        "binary_abi": cell.binary.abi if cell.binary else "",
        "binary_source": (
            cell.binary.source + (" (translated)" if cell.binary.translated else "")
            if cell.binary
            else ""
        ),
        "binary_sha256": cell.binary_sha256,
        "command": cell.command,
        "log": cell.log,
        "started_at": cell.started_at,
        "duration_s": cell.duration_s,
        "hot": cell.hot,
        "throttled": cell.throttled,
        "temp_before_c": before.hottest_c if before is not None else None,
        "temp_after_c": after.hottest_c if after is not None else None,
        "cooldown_s": thermal.waited_s if thermal is not None else None,
        "battery_pct": before.battery.level if before is not None else None,
        "comparable": cell.comparable,
        **_accuracy_columns(cell.accuracy),
    }


def _accuracy_columns(accuracy: Accuracy | None) -> dict[str, Any]:
    """The accuracy check in a cell row: status, reference and the worst tensor's numbers."""
    if accuracy is None:
        return {"accuracy": "", "accuracy_reference": ""}
    return {
        "accuracy": accuracy.status.value,
        "accuracy_reference": accuracy.reference,
        "max_abs_error": accuracy.max_abs,
        "max_rel_error": accuracy.rel,
        "cosine": accuracy.cosine,
        "top1_agreement": accuracy.top1,
    }


def _summarise(group: pd.DataFrame) -> dict[str, Any]:
    first = group.iloc[0]
    ok = group[(group["status"] == "ok") & group["latency_ms"].notna()]
    row: dict[str, Any] = {
        "serial": first["serial"],
        "server": first["server"],
        "device": first["device"],
        "soc": first["soc"],
        "profile": first["profile"],
        "simulated": bool(group["simulated"].any()),
        "model": first["model"],
        "delegate": first["delegate"],
        "delegate_kind": first["delegate_kind"],
        "threads": first["threads"],
        "repeats": len(group),
        "repeats_ok": len(ok),
        "latency_ms": math.nan,
        "std_ms": math.nan,
        "runs": None,
        "coverage": next((c for c in group["coverage"] if c), ""),
        "verdict": _most_common(group["verdict"]),
        "marks": ",".join(dict.fromkeys(m for ms in ok["marks"] for m in ms.split(",") if m)),
        "speedup": math.nan,
        "top_ops": next((t for t in group["top_ops"] if t), ""),
        "hot": bool(group["hot"].any()),
        "throttled": bool(group["throttled"].any()),
    }
    flags: list[str] = []
    if len(ok):
        mean, std, runs = _pooled(ok)
        row.update(status="ok", latency_ms=mean, std_ms=std, runs=runs)
        flags = stability_flags(mean, std, runs)
        if len(ok) < len(group):
            flags.append(f"{len(ok)}/{len(group)} repeats ok")
        others = group[group["status"] != "ok"]
        row["reason"] = next((r for r in [*others["reason"], *ok["reason"]] if r), "")
    else:
        statuses = list(group["status"])
        row["status"] = max(set(statuses), key=statuses.count)
        row["reason"] = next((r for r in group["reason"] if r), "")
    marks = [m for m in row["marks"].split(",") if m]
    row["flags"] = "; ".join([*marks, *flags])
    row["comparable"] = bool(len(ok)) and not disqualified(marks)
    return row


def _most_common(values: pd.Series) -> str:
    known = [v for v in values if v]
    return max(set(known), key=known.count) if known else ""


def _pooled(ok: pd.DataFrame) -> tuple[float, float, int | None]:
    """Mean and std over every timed run of every repeat (weighted by run counts)."""
    means = ok["latency_ms"].astype(float).tolist()
    stds = ok["std_ms"].astype(float).tolist()
    counts = [int(n) if not pd.isna(n) and n > 0 else None for n in ok["runs"]]
    if all(counts) and all(_finite(s) for s in stds):
        total = sum(counts)
        mean = sum(n * m for n, m in zip(counts, means, strict=True)) / total
        second = (
            sum(n * (s * s + m * m) for n, s, m in zip(counts, stds, means, strict=True)) / total
        )
        return mean, math.sqrt(max(second - mean * mean, 0.0)), total
    mean = sum(means) / len(means)
    if len(means) > 1:
        std = math.sqrt(sum((m - mean) ** 2 for m in means) / (len(means) - 1))
    else:
        std = stds[0] if _finite(stds[0]) else math.nan
    return mean, std, sum(counts) if all(counts) else None


def _ordered(out: pd.DataFrame, cells: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Devices by name, then models by name, delegates in the usual order, threads ascending."""
    devices = cells.drop_duplicates("serial").sort_values(["device", "serial"], key=_lower)
    device_rank = {s: i for i, s in enumerate(devices["serial"])}
    keys = by or ["serial", "model", "delegate", "threads"]
    ranked = out.assign(
        _serial=out["serial"].map(device_rank),
        _delegate=out["delegate"].map(_delegate_rank),
    )
    sort = [{"serial": "_serial", "delegate": "_delegate"}.get(k, k) for k in keys]
    if "model" in keys:
        ranked["_model"] = ranked["model"].astype(str).str.lower()
        sort = ["_model" if k == "model" else k for k in sort]
    ranked = ranked.sort_values(sort, kind="stable")
    return ranked.drop(columns=[c for c in ranked.columns if c.startswith("_")]).reset_index(
        drop=True
    )


def _delegate_rank(label: Any) -> tuple[int, str]:
    kind = re.split(r"[:\-\[]", str(label), maxsplit=1)[0]
    order = ("cpu", "xnnpack", "gpu", "nnapi", "hexagon", "external")
    return (order.index(kind) if kind in order else len(order), str(label))


def _lower(column: pd.Series) -> pd.Series:
    return column.astype(str).str.lower()


def _ms(us: Any) -> float:
    return (
        float(us) / 1000.0
        if isinstance(us, (int, float)) and not isinstance(us, bool)
        else math.nan
    )


def _ratio(base: float | None, value: float) -> float:
    if base is None or not _finite(base) or not _finite(value) or value <= 0:
        return math.nan
    return base / value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)

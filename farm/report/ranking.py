"""Device ranking: a score per device over the model suite, against a reference device.

Like AI Benchmark's phone ranking: for each model, a device's best comparable configuration
(ok, no disqualifying mark: never a fallback or inaccurate cell; hot or throttled ones count,
marked); the score is 100 × the geometric mean, over the models the device shares with the
reference, of the reference's best latency over the device's. 100 is the reference; 200 is
twice as fast.
"""

from __future__ import annotations

import math

import pandas as pd

from farm.errors import ConfigError

RANKING_COLUMNS = [
    "rank",
    "serial",
    "device",
    "simulated",
    "score",
    "models",
    "missing",
    "configs",
    "note",
    "reference",
]


def rank_text(value: object) -> str:
    """A rank as shown: '3', '-' for a device without a score."""
    return "-" if value is None or pd.isna(value) else str(int(value))


def best_comparable(summary: pd.DataFrame) -> pd.DataFrame:
    """Per device and model, the comparable configuration with the lowest mean latency."""
    ok = summary[summary["comparable"].astype(bool) & summary["latency_ms"].notna()]
    if ok.empty:
        return summary.iloc[0:0]
    best = ok.loc[ok.groupby(["serial", "model"], sort=False)["latency_ms"].idxmin()]
    return best.reset_index(drop=True)


def reference_serial(summary: pd.DataFrame, reference: str | None = None) -> str | None:
    """The serial of the reference device: `reference` as a serial or a device model name,
    default the first device (in report order) with a comparable result."""
    best = best_comparable(summary)
    scored = list(dict.fromkeys(best["serial"]))
    if reference is None:
        return scored[0] if scored else None
    serials = list(dict.fromkeys(summary["serial"]))
    names = dict(zip(summary["serial"], summary["device"], strict=True))
    found = [s for s in serials if s == reference] or [
        s for s in serials if str(names.get(s, "")).casefold() == reference.casefold()
    ]
    if not found:
        known = ", ".join(f"{s} ({names.get(s) or '?'})" for s in serials) or "none"
        raise ConfigError(
            f"--reference {reference!r}: no device has that serial or model (devices: {known})"
        )
    with_results = [s for s in found if s in scored]
    if not with_results:
        raise ConfigError(
            f"--reference {reference!r}: {found[0]} has no comparable result to score against"
        )
    return with_results[0]


def ranking_frame(summary: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """One row per device: rank, score (reference = 100), models scored, the best
    configuration per model and a note when the device was scored on fewer models."""
    if summary.empty:
        return pd.DataFrame(columns=RANKING_COLUMNS)
    ref = reference_serial(summary, reference)
    best = best_comparable(summary)
    suite = sorted(set(summary["model"]), key=lambda m: str(m).lower())
    ref_best = {r.model: r.latency_ms for r in best[best["serial"] == ref].itertuples()}
    rows = []
    for serial, rows_of in summary.groupby("serial", sort=False):
        mine = best[best["serial"] == serial]
        latency = {r.model: r.latency_ms for r in mine.itertuples()}
        shared = [m for m in suite if m in latency and m in ref_best]
        ratios = [ref_best[m] / latency[m] for m in shared if latency[m] > 0]
        score = 100.0 * math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else math.nan
        missing = [m for m in suite if m not in latency]
        rows.append(
            {
                "serial": serial,
                "device": rows_of["device"].iloc[0],
                "simulated": bool(rows_of["simulated"].any()),
                "score": score,
                "models": f"{len(shared)}/{len(suite)}",
                "missing": ", ".join(map(str, missing)),
                "configs": "; ".join(
                    f"{r.model}: {r.delegate} {r.threads}t {r.latency_ms:.2f} ms"
                    for r in mine.itertuples()
                ),
                "note": _note(serial == ref, shared, suite, missing, ref_best, latency),
                "reference": serial == ref,
            }
        )
    out = pd.DataFrame(rows)
    out = out.sort_values("score", ascending=False, na_position="last", kind="stable")
    out.insert(0, "rank", range(1, len(out) + 1))
    out.loc[out["score"].isna(), "rank"] = None
    out["rank"] = out["rank"].astype("Int64")
    return out[RANKING_COLUMNS].reset_index(drop=True)


def _note(
    is_ref: bool,
    shared: list[str],
    suite: list[str],
    missing: list[str],
    ref_best: dict[str, float],
    latency: dict[str, float],
) -> str:
    if not latency:
        return "no comparable result"
    if not shared:
        return "no model in common with the reference"
    notes = ["reference"] if is_ref else []
    if len(shared) < len(suite):
        unscored = [m for m in suite if m not in shared]
        why = []
        if missing:
            why.append("no comparable result for " + ", ".join(missing))
        ref_lacks = [m for m in unscored if m not in ref_best and m in latency]
        if ref_lacks:
            why.append("the reference has none for " + ", ".join(ref_lacks))
        notes.append(f"scored on {len(shared)} of {len(suite)} models ({'; '.join(why)})")
    return "; ".join(notes)

"""Compare two runs configuration by configuration: latency verdicts with a test and a CI,
and every other change (status, delegation, marks, memory, binary) as findings.

A configuration is (device, model, delegate variant, threads); its repeats are the samples.

The statistics, and why: a run folder keeps per-repeat summaries (count, mean, std, median,
percentiles), never the single inference times, so rank tests and bootstraps over inferences
are out of reach. With two or more repeats on each side the test is Welch's t on the logarithm
of the repeats' medians: each repeat is one independent run, so run-to-run noise (heat,
background work) is in the variance, and the log makes the effect a ratio. Its confidence
interval comes from the same t distribution (a bootstrap over three repeats has ten distinct
resamples and claims a precision it has not). With a single repeat on a side, the only spread
known is within the run: Welch's t from the cells' count/mean/std (`ttest_ind_from_stats`) with
a delta-method CI on the log ratio; it cannot see run-to-run noise, and the result says so
(`basis: "within-run"`). The effect reported is always the ratio of the median latencies.

A change counts only when it is significant (p < alpha) and at least the threshold; a
confidence interval that lies within the threshold band is `unchanged`; anything else is
`inconclusive`, with the number of repeats that would settle it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from farm.results.model import CellResult, Run, Status, json_safe

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.05
MEMORY_THRESHOLD = 0.10  # a peak memory change this large (and over MEMORY_MIN_MB) is a finding
MEMORY_MIN_MB = 1.0
MATCH_DEVICE = ("serial", "model")
MATCH_MODEL = ("sha256", "name")

# Marks known today; any other mark a cell carries is handled the same way, by its name.
KNOWN_MARKS = ("fallback", "hot", "throttled", "noisy", "inaccurate")
# What `--fail-on` may name: finding kinds, and marks that newly appear.
GATE_KINDS = ("regression", "failed", "missing", "inconclusive", "coverage", "memory")


class Change(str, Enum):
    """The latency verdict of one configuration."""

    FASTER = "faster"
    SLOWER = "slower"
    UNCHANGED = "unchanged"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunRef:
    """Which run a side of the comparison is: its id, labels, start time and where it is."""

    run_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    started_at: str = ""
    source: str = ""

    @classmethod
    def of(cls, run: Run) -> RunRef:
        """The reference of a loaded run."""
        h = run.header
        return cls(h.run_id, dict(h.labels), h.started_at, str(run.run_dir))

    def to_json(self) -> dict[str, Any]:
        """The run reference as JSON."""
        return {
            "run_id": self.run_id,
            "labels": dict(self.labels),
            "started_at": self.started_at,
            "source": self.source,
        }


@dataclass(frozen=True)
class ConfigKey:
    """One configuration: device, model, delegate variant, threads (as matched)."""

    device: str  # serial, or "model fingerprint" with match_by="model"
    model: str  # sha256, or the model's name with model_by="name"
    delegate: str
    threads: int

    def to_json(self) -> dict[str, Any]:
        """The key as JSON."""
        return {
            "device": self.device,
            "model": self.model,
            "delegate": self.delegate,
            "threads": self.threads,
        }


@dataclass(frozen=True)
class Side:
    """One configuration on one side: its cells summarised."""

    serial: str
    device_model: str
    model: str  # the model's name
    model_sha256: str
    cells: int
    statuses: Mapping[str, int]
    medians_us: tuple[float, ...]  # one per ok repeat
    means_us: tuple[float, ...]
    stds_us: tuple[float, ...]
    counts: tuple[int, ...]
    marks: tuple[str, ...]  # every mark any of its cells carries
    verdicts: tuple[str, ...]  # delegate verdicts seen
    coverage: tuple[str, ...]  # delegation coverage seen
    memory_mb: float | None
    binary_sha256: str | None

    @property
    def status(self) -> str:
        """ "ok" when every cell is ok; else the most frequent other status."""
        others = {s: n for s, n in self.statuses.items() if s != Status.OK.value and n}
        if not others:
            return Status.OK.value
        return max(others, key=lambda s: others[s])

    @property
    def median_us(self) -> float | None:
        """The median latency over the ok repeats."""
        return statistics.median(self.medians_us) if self.medians_us else None

    def to_json(self) -> dict[str, Any]:
        """The side as JSON."""
        return {
            "serial": self.serial,
            "device_model": self.device_model,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "cells": self.cells,
            "status": self.status,
            "statuses": dict(self.statuses),
            "median_us": self.median_us,
            "repeat_medians_us": list(self.medians_us),
            "marks": list(self.marks),
            "verdicts": list(self.verdicts),
            "coverage": list(self.coverage),
            "memory_mb": self.memory_mb,
            "binary_sha256": self.binary_sha256,
        }


@dataclass(frozen=True)
class Latency:
    """The latency change of one configuration: ratio new/base of the medians, its CI, the
    test's p-value, the verdict and, when inconclusive, what would settle it."""

    change: Change
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    basis: str  # "repeats" (between-run spread) or "within-run" (one repeat on a side)
    repeats: tuple[int, int]  # ok repeats (base, new)
    advice: str | None = None
    repeats_needed: int | None = None

    @property
    def percent(self) -> float:
        """The change in percent (+12.0: 12 % slower)."""
        return (self.ratio - 1.0) * 100.0

    def to_json(self) -> dict[str, Any]:
        """The latency change as JSON."""
        out: dict[str, Any] = json_safe(
            {
                "change": self.change.value,
                "ratio": self.ratio,
                "percent": self.percent,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "p_value": self.p_value,
                "basis": self.basis,
                "repeats": list(self.repeats),
                "advice": self.advice,
                "repeats_needed": self.repeats_needed,
            }
        )
        return out


@dataclass(frozen=True)
class Finding:
    """Something that changed: `kind` is what `--fail-on` names (regression, failed, a mark's
    name such as fallback or inaccurate, ...)."""

    kind: str
    text: str

    def to_json(self) -> dict[str, str]:
        """The finding as JSON."""
        return {"kind": self.kind, "text": self.text}


@dataclass(frozen=True)
class ConfigComparison:
    """One configuration compared: both sides (one may be absent), latency, findings."""

    key: ConfigKey
    base: Side | None
    new: Side | None
    latency: Latency | None
    findings: tuple[Finding, ...]

    @property
    def change(self) -> Change | None:
        """The latency verdict, None when a side has no ok repeat."""
        return self.latency.change if self.latency is not None else None

    @property
    def label(self) -> str:
        """A short name: device model/serial, model, delegate, threads."""
        side = self.new or self.base
        assert side is not None
        device = f"{side.device_model} {side.serial}".strip()
        return f"{device} · {side.model} · {self.key.delegate} · {self.key.threads}t"

    def to_json(self) -> dict[str, Any]:
        """The configuration's comparison as JSON."""
        return {
            "key": self.key.to_json(),
            "base": self.base.to_json() if self.base is not None else None,
            "new": self.new.to_json() if self.new is not None else None,
            "latency": self.latency.to_json() if self.latency is not None else None,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True)
class Comparison:
    """Two runs compared: every configuration of either, the settings and the warnings."""

    base: RunRef
    new: RunRef
    configs: tuple[ConfigComparison, ...]
    threshold: float = DEFAULT_THRESHOLD
    alpha: float = DEFAULT_ALPHA
    match_by: str = "serial"
    model_by: str = "sha256"
    warnings: tuple[str, ...] = ()

    def findings(
        self, kinds: Iterable[str] | None = None
    ) -> list[tuple[ConfigComparison, Finding]]:
        """Every finding, or only those of `kinds`, with its configuration."""
        wanted = set(kinds) if kinds is not None else None
        return [
            (c, f) for c in self.configs for f in c.findings if wanted is None or f.kind in wanted
        ]

    def counts(self) -> dict[str, int]:
        """Configurations per latency verdict (plus `missing`/`new` for one-sided ones)."""
        out = {c.value: 0 for c in Change} | {"only_base": 0, "only_new": 0}
        for c in self.configs:
            if c.new is None:
                out["only_base"] += 1
            elif c.base is None:
                out["only_new"] += 1
            elif c.change is not None:
                out[c.change.value] += 1
        return out

    @property
    def geomean_ratio(self) -> float | None:
        """The geometric mean of the latency ratios of the configurations on both sides."""
        ratios = [c.latency.ratio for c in self.configs if c.latency is not None]
        if not ratios:
            return None
        return math.exp(sum(math.log(r) for r in ratios) / len(ratios))

    def to_json(self) -> dict[str, Any]:
        """The whole comparison as JSON (`farm compare --json`)."""
        out: dict[str, Any] = json_safe(
            {
                "base": self.base.to_json(),
                "new": self.new.to_json(),
                "threshold": self.threshold,
                "alpha": self.alpha,
                "match_by": self.match_by,
                "model_by": self.model_by,
                "counts": self.counts(),
                "geomean_ratio": self.geomean_ratio,
                "warnings": list(self.warnings),
                "configs": [c.to_json() for c in self.configs],
            }
        )
        return out

    def frame(self) -> pd.DataFrame:
        """One row per configuration: key, both medians, ratio, CI, p, verdict, findings."""
        import pandas as pd

        rows = []
        for c in self.configs:
            side = c.new or c.base
            assert side is not None
            lat = c.latency
            rows.append(
                {
                    "device": c.key.device,
                    "serial": side.serial,
                    "device_model": side.device_model,
                    "model": side.model,
                    "model_sha256": side.model_sha256,
                    "delegate": c.key.delegate,
                    "threads": c.key.threads,
                    "base_status": c.base.status if c.base else None,
                    "new_status": c.new.status if c.new else None,
                    "base_median_us": c.base.median_us if c.base else None,
                    "new_median_us": c.new.median_us if c.new else None,
                    "ratio": lat.ratio if lat else None,
                    "percent": lat.percent if lat else None,
                    "ci_low": lat.ci_low if lat else None,
                    "ci_high": lat.ci_high if lat else None,
                    "p_value": lat.p_value if lat else None,
                    "basis": lat.basis if lat else None,
                    "change": lat.change.value if lat else None,
                    "advice": lat.advice if lat else None,
                    "findings": "; ".join(f"{f.kind}: {f.text}" for f in c.findings),
                    "kinds": ",".join(sorted({f.kind for f in c.findings})),
                }
            )
        frame: pd.DataFrame = pd.DataFrame(rows)
        return frame


# ---------------------------------------------------------------------------- statistics


def latency_change(
    base: Side, new: Side, *, threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA
) -> Latency | None:
    """The latency verdict of one configuration (None when a side has no ok repeat)."""
    if not base.medians_us or not new.medians_us:
        return None
    ratio = statistics.median(new.medians_us) / statistics.median(base.medians_us)
    nb, nn = len(base.medians_us), len(new.medians_us)
    if nb >= 2 and nn >= 2:
        basis = "repeats"
        lb = [math.log(v) for v in base.medians_us]
        ln = [math.log(v) for v in new.medians_us]
        p, low, high = _welch_log(lb, ln, alpha)
    else:
        basis = "within-run"
        p, low, high = _welch_from_stats(base, new, ratio, alpha)
    band = math.log1p(threshold)
    log_ratio = math.log(ratio)
    if p < alpha and abs(log_ratio) >= band:
        change = Change.SLOWER if ratio > 1 else Change.FASTER
    elif low > math.exp(-band) and high < math.exp(band):
        change = Change.UNCHANGED
    elif p < alpha:  # a real change, but under the threshold
        change = Change.UNCHANGED
    else:
        change = Change.INCONCLUSIVE
    advice = needed = None
    if change is Change.INCONCLUSIVE:
        needed = _repeats_needed(low, high, band, max(nb, nn, 1))
        if basis == "within-run":
            advice = (
                f"one repeat on a side shows no run-to-run noise; run both with --repeats "
                f"{max(needed, 3)} or more"
            )
        else:
            advice = f"too noisy to say; about {needed} repeats per side would settle it"
    return Latency(change, ratio, low, high, p, basis, (nb, nn), advice, needed)


def _welch_log(lb: list[float], ln: list[float], alpha: float) -> tuple[float, float, float]:
    """p-value and CI of exp(mean ln - mean lb) by Welch's t-test."""
    from scipy import stats as sps  # heavy (seconds on a loaded host): only when comparing

    diff = statistics.fmean(ln) - statistics.fmean(lb)
    if statistics.pvariance(lb) == 0 and statistics.pvariance(ln) == 0:
        exact = math.exp(diff)
        return (0.0 if diff else 1.0), exact, exact
    result = sps.ttest_ind(ln, lb, equal_var=False)
    ci = result.confidence_interval(1 - alpha)
    return float(result.pvalue), math.exp(float(ci.low)), math.exp(float(ci.high))


def _pooled(side: Side) -> tuple[float, float, int]:
    """Mean, std and count of all ok inferences of a side (within- plus between-repeat)."""
    n = sum(side.counts)
    mean = sum(m * c for m, c in zip(side.means_us, side.counts, strict=True)) / n
    within = sum((c - 1) * s * s for s, c in zip(side.stds_us, side.counts, strict=True))
    between = sum(c * (m - mean) ** 2 for m, c in zip(side.means_us, side.counts, strict=True))
    return mean, math.sqrt((within + between) / max(n - 1, 1)), n


def _welch_from_stats(
    base: Side, new: Side, ratio: float, alpha: float
) -> tuple[float, float, float]:
    """p-value from the cells' count/mean/std; CI of the ratio by the delta method."""
    from scipy import stats as sps  # heavy: only when comparing

    if not base.counts or not new.counts or min(base.counts + new.counts) < 2:
        return 1.0, 0.0, math.inf
    mb, sb, nb = _pooled(base)
    mn, sn, nn = _pooled(new)
    if sb == 0 and sn == 0:
        return (0.0 if mb != mn else 1.0), ratio, ratio
    result = sps.ttest_ind_from_stats(mn, sn, nn, mb, sb, nb, equal_var=False)
    vb, vn = (sb / mb) ** 2 / nb, (sn / mn) ** 2 / nn
    se = math.sqrt(vb + vn)
    df = (vb + vn) ** 2 / (vb**2 / (nb - 1) + vn**2 / (nn - 1)) if vb + vn else nb + nn - 2
    t = float(sps.t.ppf(1 - alpha / 2, df))
    return float(result.pvalue), ratio * math.exp(-t * se), ratio * math.exp(t * se)


def _repeats_needed(low: float, high: float, band: float, n: int) -> int:
    """Repeats per side that would shrink the CI's half-width to half the threshold band."""
    if not (low > 0 and math.isfinite(high)):
        return max(3, 2 * n)
    half = (math.log(high) - math.log(low)) / 2
    return min(max(3, math.ceil(n * (half / (band / 2)) ** 2)), 1000)


# ---------------------------------------------------------------------------- matching


def device_key(cell: CellResult, fingerprints: Mapping[str, str], match_by: str) -> str:
    """The device part of a configuration key."""
    if match_by == "model":
        return f"{cell.device.model} {fingerprints.get(cell.serial, '')}".strip()
    return cell.serial


def fingerprints_of(run: Run) -> dict[str, str]:
    """serial → build fingerprint, from the run header's device inventory."""
    out: dict[str, str] = {}
    for d in run.header.plan.devices:
        if d.get("serial"):
            out[str(d["serial"])] = str(d.get("fingerprint") or "")
    return out


def summarize(cells: Sequence[CellResult]) -> Side:
    """One configuration's cells (one per repeat) as one side of a comparison."""
    first = cells[0]
    statuses: dict[str, int] = {}
    for c in cells:
        statuses[c.status.value] = statuses.get(c.status.value, 0) + 1
    ok = [c for c in cells if c.status is Status.OK and c.metrics is not None]
    medians, means, stds, counts = [], [], [], []
    for c in ok:
        m = c.metrics
        assert m is not None
        med = m.inference_median_us or m.inference_avg_us
        if not med or med <= 0:
            continue
        medians.append(float(med))
        means.append(float(m.inference_avg_us or med))
        stds.append(float(m.inference_std_us or 0.0))
        counts.append(int(m.inference_count or 0))
    memory = [float(c.metrics.memory_mb) for c in ok if c.metrics and c.metrics.memory_mb]
    marks = sorted({mark for c in cells for mark in c.marks})
    return Side(
        serial=first.serial,
        device_model=first.device.model,
        model=first.model,
        model_sha256=first.model_sha256,
        cells=len(cells),
        statuses=statuses,
        medians_us=tuple(medians),
        means_us=tuple(means),
        stds_us=tuple(stds),
        counts=tuple(counts),
        marks=tuple(marks),
        verdicts=tuple(sorted({c.verdict.value for c in cells if c.verdict is not None})),
        coverage=tuple(
            sorted({c.delegation.coverage for c in cells if c.delegation and c.delegation.coverage})
        ),
        memory_mb=statistics.median(memory) if memory else None,
        binary_sha256=first.binary_sha256,
    )


def group_cells(
    run: Run, *, match_by: str = "serial", model_by: str = "sha256"
) -> dict[ConfigKey, list[CellResult]]:
    """The run's cells by configuration key."""
    prints = fingerprints_of(run)
    groups: dict[ConfigKey, list[CellResult]] = {}
    for c in run.cells:
        key = ConfigKey(
            device=device_key(c, prints, match_by),
            model=c.model_sha256 if model_by == "sha256" else c.model,
            delegate=c.delegate,
            threads=c.threads,
        )
        groups.setdefault(key, []).append(c)
    return groups


# ---------------------------------------------------------------------------- findings


def _findings(
    base: Side | None, new: Side | None, latency: Latency | None, threshold: float
) -> list[Finding]:
    if new is None:
        assert base is not None
        return [Finding("missing", f"only in the base run ({base.status})")]
    if base is None:
        out = [Finding("new", f"only in the new run ({new.status})")]
        if new.status != Status.OK.value:
            out.append(Finding("failed", f"{new.status} in the new run (absent from the base)"))
        out += [Finding(m, f"{m} in the new run (absent from the base)") for m in new.marks]
        return out
    out = []
    if base.status == Status.OK.value and new.status != Status.OK.value:
        out.append(Finding("failed", f"status ok → {new.status}"))
    elif base.status != Status.OK.value and new.status == Status.OK.value:
        out.append(Finding("recovered", f"status {base.status} → ok"))
    elif base.status != new.status:
        out.append(Finding("status", f"status {base.status} → {new.status}"))
    for mark in new.marks:
        if mark not in base.marks:
            out.append(Finding(mark, f"new {mark}" + _verdict_text(base, new)))
    for mark in base.marks:
        if mark not in new.marks:
            out.append(Finding("cleared", f"{mark} gone" + _verdict_text(base, new)))
    if base.coverage != new.coverage and (base.coverage or new.coverage):
        out.append(
            Finding(
                "coverage",
                f"delegation {'/'.join(base.coverage) or '?'} → {'/'.join(new.coverage) or '?'}",
            )
        )
    if latency is not None:
        pct = f"{latency.percent:+.1f} % [{(latency.ci_low - 1) * 100:+.1f}, "
        pct += f"{(latency.ci_high - 1) * 100:+.1f}] p={latency.p_value:.2g}"
        if latency.change is Change.SLOWER:
            out.append(Finding("regression", f"slower {pct}"))
        elif latency.change is Change.FASTER:
            out.append(Finding("improvement", f"faster {pct}"))
        elif latency.change is Change.INCONCLUSIVE:
            out.append(Finding("inconclusive", f"{pct}: {latency.advice}"))
    if base.memory_mb and new.memory_mb:
        delta = new.memory_mb - base.memory_mb
        if abs(delta) >= MEMORY_MIN_MB and abs(delta) / base.memory_mb >= MEMORY_THRESHOLD:
            out.append(
                Finding("memory", f"peak memory {base.memory_mb:.1f} → {new.memory_mb:.1f} MB")
            )
    if base.binary_sha256 and new.binary_sha256 and base.binary_sha256 != new.binary_sha256:
        out.append(
            Finding(
                "binary",
                f"benchmark binary changed ({base.binary_sha256[:12]} → {new.binary_sha256[:12]})",
            )
        )
    return out


def _verdict_text(base: Side, new: Side) -> str:
    if base.verdicts == new.verdicts:
        return ""
    return f" (verdict {'/'.join(base.verdicts) or '-'} → {'/'.join(new.verdicts) or '-'})"


# ---------------------------------------------------------------------------- entry point


def compare_runs(
    base: Run,
    new: Run,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    match_by: str = "serial",
    model_by: str = "sha256",
) -> Comparison:
    """Compare every configuration of two runs (one-sided configurations are listed)."""
    if match_by not in MATCH_DEVICE:
        raise ValueError(f"match_by must be one of {', '.join(MATCH_DEVICE)}, not {match_by!r}")
    if model_by not in MATCH_MODEL:
        raise ValueError(f"model_by must be one of {', '.join(MATCH_MODEL)}, not {model_by!r}")
    if not 0 <= threshold < 10:
        raise ValueError(f"threshold {threshold} is out of range (0 to 10, a fraction)")
    gb = group_cells(base, match_by=match_by, model_by=model_by)
    gn = group_cells(new, match_by=match_by, model_by=model_by)
    configs = []
    for key in sorted(gb.keys() | gn.keys(), key=_sort_key):
        sb = summarize(gb[key]) if key in gb else None
        sn = summarize(gn[key]) if key in gn else None
        lat = (
            latency_change(sb, sn, threshold=threshold, alpha=alpha)
            if sb is not None and sn is not None
            else None
        )
        configs.append(ConfigComparison(key, sb, sn, lat, tuple(_findings(sb, sn, lat, threshold))))
    return Comparison(
        base=RunRef.of(base),
        new=RunRef.of(new),
        configs=tuple(configs),
        threshold=threshold,
        alpha=alpha,
        match_by=match_by,
        model_by=model_by,
        warnings=tuple(_mismatches(base, new, model_by)),
    )


def _sort_key(key: ConfigKey) -> tuple[str, str, str, int]:
    return (key.device, key.model, key.delegate, key.threads)


def _mismatches(base: Run, new: Run, model_by: str) -> list[str]:
    """Metadata that makes the comparison less than like for like (pyperf-style)."""
    out = []
    if model_by == "sha256":
        old = {c.model: c.model_sha256 for c in base.cells}
        for c in new.cells:
            if c.model in old and old[c.model] != c.model_sha256:
                out.append(
                    f"model {c.model} changed ({old[c.model][:12]} → {c.model_sha256[:12]}): "
                    "its configurations match nothing; --model-by name compares them anyway"
                )
                old.pop(c.model)
    return out


def gate_findings(
    comparison: Comparison, fail_on: Iterable[str]
) -> list[tuple[ConfigComparison, Finding]]:
    """The findings `--fail-on` names (a kind such as regression, or a mark's name)."""
    return comparison.findings(set(fail_on))


def parse_fail_on(text: str) -> tuple[str, ...]:
    """`"regression,failed"` → its kinds; ValueError naming an unknown one."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    known = GATE_KINDS + KNOWN_MARKS
    for k in kinds:
        if k not in known:
            raise ValueError(f"--fail-on: unknown kind {k!r} (known: {', '.join(known)})")
    if not kinds:
        raise ValueError(f"--fail-on: name at least one kind ({', '.join(known)})")
    return kinds


def parse_threshold(text: str) -> float:
    """`"5%"`, `"5"` (percent) or `"0.05"` → 0.05; ValueError otherwise."""
    raw = text.strip()
    try:
        if raw.endswith("%"):
            value = float(raw[:-1]) / 100
        else:
            value = float(raw)
            value = value / 100 if value >= 1 else value
    except ValueError:
        raise ValueError(f"--threshold {text!r}: expected a percentage such as 5%") from None
    if not 0 <= value < 10 or math.isnan(value):
        raise ValueError(f"--threshold {text!r}: out of range")
    return value

"""The report's plots as inline SVG (matplotlib): static, no script, readable without a network.

Each function takes frames of farm.report.frame and returns one `<svg>` element, or "" when
there is nothing to draw.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from farm.report.text import safe_text

_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)  # RDF about the file: not needed
_ids = count()
ROW_IN = 0.32  # inches per device row: 20 devices stay legible
_PALETTE = "tab10"
_PLAIN = FuncFormatter(lambda v, _: f"{v:g}")
# minor ticks of a log axis: label 2× and 5× only, so a short span still shows numbers
_PLAIN_MINOR = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else "")
_MANY = "tab20"


@contextmanager
def _svg_style(name: str) -> Iterator[None]:
    # text stays text (searchable, crisp); ids are salted per plot so inline SVGs never clash
    with rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": f"farm-{name}",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        yield


def _svg(fig: Figure, name: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    svg = _METADATA.sub("", text[text.find("<svg") :])
    return re.sub(r"<svg ", f'<svg class="plot" data-plot="{name}" role="img" ', svg, count=1)


def _data(name: str, *artists: Any) -> None:
    """Tag what draws the data (id "<plot>-data-<n>" in the SVG) so a reader can find it."""
    for artist in artists:
        artist.set_gid(f"{name}-data-{next(_ids)}")


def _label(device: object, serial: object, names: dict[str, str]) -> str:
    return names.get(str(serial)) or safe_text(device) or safe_text(serial)


def ranking_chart(ranking: pd.DataFrame, labels: dict[str, str]) -> str:
    """Horizontal bars of the device scores (reference = 100)."""
    scored = ranking[ranking["score"].notna()]
    if scored.empty:
        return ""
    names = [_label(r.device, r.serial, labels) for r in scored.itertuples()]
    with _svg_style("ranking"):
        fig = Figure(figsize=(7.5, 0.8 + ROW_IN * len(scored)))
        ax = fig.subplots()
        y = np.arange(len(scored))[::-1]
        colors = ["#4c72b0" if not r.reference else "#dd8452" for r in scored.itertuples()]
        bars = ax.barh(y, scored["score"].to_numpy(float), color=colors, height=0.7)
        _data("ranking", *bars.patches)
        ax.axvline(100, color="#555", linewidth=0.8, linestyle="--")
        ax.set_yticks(y, names)
        for yi, score in zip(y, scored["score"], strict=True):
            ax.text(score, yi, f" {score:.0f}", va="center", fontsize=8)
        ax.set_xlabel("score (reference device = 100; higher is faster)")
        return _svg(fig, "ranking")


def latency_chart(rows: pd.DataFrame, labels: dict[str, str], name: str) -> str:
    """Latency by device × delegate variant (each variant at its best thread count), with
    ± std whiskers; hollow markers are cells whose number is marked (fallback, hot, ...)."""
    ok = rows[(rows["status"] == "ok") & rows["latency_ms"].notna()]
    if ok.empty:
        return ""
    best = ok.loc[ok.groupby(["serial", "delegate"], sort=False)["latency_ms"].idxmin()]
    serials = list(dict.fromkeys(rows["serial"]))
    variants = list(dict.fromkeys(rows["delegate"]))
    with _svg_style(name):
        fig = Figure(figsize=(7.5, 1.2 + ROW_IN * 1.4 * len(serials)))
        ax = fig.subplots()
        cmap = colormaps[_PALETTE if len(variants) <= 10 else _MANY]
        step = 0.7 / max(len(variants), 1)
        for vi, variant in enumerate(variants):
            part = best[best["delegate"] == variant]
            if part.empty:
                continue
            y = np.array([len(serials) - 1 - serials.index(s) for s in part["serial"]], float)
            y += (len(variants) - 1) / 2 * step - vi * step
            x = part["latency_ms"].to_numpy(float)
            err = part["std_ms"].fillna(0).to_numpy(float)
            color = cmap(vi % cmap.N)
            comparable = part["comparable"].astype(bool).to_numpy()
            ax.errorbar(x, y, xerr=err, fmt="none", ecolor=color, elinewidth=1, alpha=0.7)
            dots = ax.scatter(
                x[comparable], y[comparable], color=color, s=22, label=safe_text(variant)
            )
            _data(name, dots)
            if (~comparable).any():
                hollow = ax.scatter(
                    x[~comparable],
                    y[~comparable],
                    facecolors="none",
                    edgecolors=color,
                    s=22,
                    label=f"{safe_text(variant)} (marked)",
                )
                _data(name, hollow)
        names = [_label(rows[rows["serial"] == s]["device"].iloc[0], s, labels) for s in serials]
        ax.set_yticks(np.arange(len(serials))[::-1], names)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_PLAIN)
        ax.xaxis.set_minor_formatter(_PLAIN_MINOR)
        ax.set_xlabel("mean latency, ms (log scale; whiskers ± std)")
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
        return _svg(fig, name)


def thread_chart(rows: pd.DataFrame, labels: dict[str, str], name: str) -> str:
    """Latency against thread count, one line per device, for each variant swept over threads."""
    ok = rows[(rows["status"] == "ok") & rows["latency_ms"].notna()]
    swept = [v for v, part in ok.groupby("delegate", sort=False) if part["threads"].nunique() > 1]
    if not swept:
        return ""
    serials = list(dict.fromkeys(ok["serial"]))
    with _svg_style(name):
        fig = Figure(figsize=(3.6 * len(swept) + 2.2, 3.4))
        axes = fig.subplots(1, len(swept), squeeze=False)[0]
        cmap = colormaps[_PALETTE if len(serials) <= 10 else _MANY]
        for ax, variant in zip(axes, swept, strict=True):
            part = ok[ok["delegate"] == variant]
            for si, serial in enumerate(serials):
                line = part[part["serial"] == serial].sort_values("threads")
                if line.empty:
                    continue
                label = _label(line["device"].iloc[0], serial, labels)
                (drawn,) = ax.plot(
                    line["threads"].astype(int),
                    line["latency_ms"],
                    marker="o",
                    markersize=3,
                    color=cmap(si % cmap.N),
                    label=label,
                )
                _data(name, drawn)
            threads = sorted(int(t) for t in part["threads"].dropna().unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(threads, [str(t) for t in threads])
            ax.minorticks_off()
            ax.set_xlabel("threads")
            ax.set_ylabel("mean latency, ms")
            ax.set_title(safe_text(variant), fontsize=9)
            ax.grid(alpha=0.3)
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=8)
        return _svg(fig, name)


def speedup_heatmap(rows: pd.DataFrame, labels: dict[str, str], name: str) -> str:
    """Speed-up against CPU with 1 thread, device × configuration; marked or failed cells are
    grey and say why."""
    configs = list(dict.fromkeys(zip(rows["delegate"], rows["threads"], strict=True)))
    swept = {d for d, _ in configs if sum(1 for d2, _ in configs if d2 == d) > 1}
    columns = [f"{d} {t}t" if d in swept else str(d) for d, t in configs]
    serials = list(dict.fromkeys(rows["serial"]))
    values = np.full((len(serials), len(configs)), np.nan)
    notes = [["" for _ in configs] for _ in serials]
    for r in rows.itertuples():
        i, j = serials.index(r.serial), configs.index((r.delegate, r.threads))
        if r.status != "ok":
            notes[i][j] = str(r.status).replace("_", " ")
        elif not r.comparable:
            notes[i][j] = str(r.marks).replace(",", ", ") or "marked"
        elif isinstance(r.speedup, float) and math.isfinite(r.speedup):
            values[i, j] = r.speedup
            notes[i][j] = f"{r.speedup:.2f}×"
    if np.isnan(values).all():
        return ""
    logs = np.log2(values)
    span = max(float(np.nanmax(np.abs(logs))), 0.1)
    with _svg_style(name):
        fig = Figure(figsize=(1.2 + 0.85 * len(configs) + 1.8, 1.0 + ROW_IN * 1.2 * len(serials)))
        ax = fig.subplots()
        ax.set_facecolor("#e6e6e6")
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)
        image = ax.imshow(np.ma.masked_invalid(logs), cmap="RdBu", norm=norm, aspect="auto")
        _data(name, image)
        for i in range(len(serials)):
            for j in range(len(configs)):
                strong = not math.isnan(logs[i, j]) and abs(logs[i, j]) > span * 0.6
                ax.text(
                    j,
                    i,
                    notes[i][j],
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if strong else "#222",
                )
        names = [_label(rows[rows["serial"] == s]["device"].iloc[0], s, labels) for s in serials]
        ax.set_yticks(range(len(serials)), names)
        ax.set_xticks(range(len(configs)), [safe_text(c) for c in columns], rotation=30, ha="right")
        ax.spines[:].set_visible(False)
        bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        ticks = [t for t in range(-8, 9) if -span <= t <= span] or [0]
        bar.set_ticks(ticks, labels=[f"{2.0**t:g}×" for t in ticks])
        bar.set_label("speed-up vs CPU 1 thread (blue: faster)")
        return _svg(fig, name)


def trend_chart(
    title: str, runs: list[str], medians_ms: list[float], steps: list[tuple[int, float]], name: str
) -> str:
    """One configuration's median latency over the history's runs, oldest first; each step
    (index of the first run after it, change in %) is a dashed line with its size."""
    with _svg_style(name):
        fig = Figure(figsize=(5.2, 2.2))
        ax = fig.subplots()
        x = list(range(len(medians_ms)))
        (drawn,) = ax.plot(x, medians_ms, marker="o", markersize=3, color="#1f77b4")
        _data(name, drawn)
        for index, percent in steps:
            ax.axvline(index - 0.5, color="#d62728", linestyle="--", linewidth=1)
            ax.annotate(
                f"{percent:+.1f}%",
                (index - 0.5, max(medians_ms)),
                color="#d62728",
                fontsize=8,
                ha="left",
                va="top",
            )
        shown = [i for i in x if len(x) <= 8 or i % max(1, len(x) // 8) == 0 or i == x[-1]]
        ax.set_xticks(shown, [safe_text(runs[i])[-12:] for i in shown], rotation=30, ha="right")
        ax.set_ylabel("median, ms")
        ax.set_title(safe_text(title), fontsize=9)
        ax.grid(alpha=0.3)
        return _svg(fig, name)

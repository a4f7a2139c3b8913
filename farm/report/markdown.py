"""report.md: the same report as the console, as Markdown tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from farm.report.console import (
    device_heading,
    device_labels,
    latency_text,
    number_text,
    runs_text,
    speedup_text,
)
from farm.report.frame import (
    accuracy_frame,
    best_per_device,
    cells_frame,
    problems_frame,
    summary_frame,
)
from farm.report.ranking import rank_text, ranking_frame
from farm.report.text import md_text
from farm.results.model import CellResult, RunHeader


def render_markdown(
    cells: Iterable[CellResult], *, header: RunHeader | None = None, reference: str | None = None
) -> str:
    """The Markdown report of these cell lines; device-sourced text is escaped."""
    df = cells_frame(cells)
    out = ["# farm report", ""]
    if header:
        facts = [
            ("run", header.run_id),
            ("started", header.started_at),
            ("farm", header.tool_versions.get("farm")),
            ("host", header.host.get("hostname")),
            ("order", _order(header)),
        ]
        out += [f"- {name}: {md_text(value)}" for name, value in facts if value] + [""]
    if df.empty:
        return "\n".join([*out, "No results.", ""])
    summary = summary_frame(df)
    if bool(summary["simulated"].any()):
        out += [
            "> Results marked *(simulated)* come from virtual phones, not real hardware.",
            "",
        ]
    out += [
        "Latency is the mean of the timed runs in ms (± standard deviation over all runs of all "
        "repeats); *vs CPU 1t* is the speed-up against the same model on CPU with 1 thread. "
        "A *fallback* ran on the CPU because the requested delegate did not run: its number is "
        "the CPU's, never a best configuration or a speed-up. An *inaccurate* cell's outputs "
        "were over the tolerance against its reference: never a best configuration either.",
        "",
    ]
    labels = device_labels(summary)
    for _, rows in summary.groupby("serial", sort=False):
        out += [f"## {md_text(device_heading(rows.iloc[0]))}", ""]
        out += _table(
            [
                "model",
                "delegate",
                "threads",
                "latency ms",
                "runs",
                "delegation",
                "vs CPU 1t",
                "status",
            ],
            [
                [
                    md_text(r.model),
                    md_text(r.delegate),
                    str(r.threads),
                    latency_text(r.latency_ms, r.std_ms),
                    runs_text(r.runs),
                    md_text(r.coverage) or "-",
                    speedup_text(r.speedup),
                    md_text(f"{r.status} ({r.flags})" if r.flags else r.status),
                ]
                for r in rows.itertuples()
            ],
        )
    best = best_per_device(summary)
    if not best.empty:
        out += ["## Best configuration per device", ""]
        out += _table(
            ["device", "model", "delegate", "threads", "latency ms", "vs CPU 1t"],
            [
                [
                    md_text(labels.get(str(row["serial"]), row["serial"])),
                    md_text(row["model"]),
                    md_text(row["delegate"]),
                    str(row["threads"]),
                    latency_text(row["latency_ms"], row["std_ms"]),
                    speedup_text(row["speedup"]),
                ]
                for _, row in best.iterrows()
            ],
        )
    out += _top_ops(summary, labels)
    out += ranking_markdown(ranking_frame(summary, reference), labels)
    out += _accuracy(df, labels)
    problems = problems_frame(df)
    if not problems.empty:
        out += ["## Cells without a number, and fallbacks", ""]
        out += _table(
            ["device", "delegate", "models", "threads", "status", "cells", "reason"],
            [
                [
                    md_text(labels.get(str(row["serial"]), row["device"] or row["serial"])),
                    md_text(row["delegate"]),
                    md_text(row["models"]),
                    str(row["threads"]),
                    md_text(row["status"]),
                    str(row["cells"]),
                    md_text(row["reason"]),
                ]
                for _, row in problems.iterrows()
            ],
        )
    return "\n".join(out)


def _top_ops(summary: Any, labels: Mapping[str, str]) -> list[str]:
    """The heaviest op types per configuration, when the runs were op-profiled."""
    profiled = summary[summary["top_ops"] != ""]
    if profiled.empty:
        return []
    return [
        "## Top ops (share of the profiled run time, by node type)",
        "",
        *_table(
            ["device", "model", "delegate", "threads", "top ops"],
            [
                [
                    md_text(labels.get(str(r.serial), r.serial)),
                    md_text(r.model),
                    md_text(r.delegate),
                    str(r.threads),
                    md_text(r.top_ops),
                ]
                for r in profiled.itertuples()
            ],
        ),
    ]


def _order(header: RunHeader) -> str | None:
    """ "shuffled, seed 1234" from the run's config (None for runs from before orders)."""
    config = header.config or {}
    if "order" not in config:
        return None
    seed = config.get("seed")
    return f"{config['order']}, seed {seed}" if config["order"] == "shuffled" else "fixed"


def ranking_markdown(ranking: Any, labels: dict[str, str]) -> list[str]:
    """The device ranking section (empty when no device has a comparable result)."""
    if ranking.empty or ranking["score"].isna().all():
        return []
    out = [
        "## Device ranking",
        "",
        "Score: 100 × geometric mean over shared models of the reference device's best "
        "latency over this device's (ok, unmarked configurations only); higher is faster.",
        "",
    ]
    return out + _table(
        ["rank", "device", "score", "models", "best configuration per model", "note"],
        [
            [
                rank_text(r.rank),
                md_text(labels.get(str(r.serial), r.serial)),
                "-" if r.score != r.score else f"{r.score:.1f}",
                r.models,
                md_text(r.configs),
                md_text(r.note),
            ]
            for r in ranking.itertuples()
        ],
    )


def _accuracy(df: Any, labels: Mapping[str, str]) -> list[str]:
    """Each delegate variant's outputs against its reference, when the run checked them."""
    checked = accuracy_frame(df)
    if checked.empty:
        return []
    return [
        "## Accuracy (outputs on fixed inputs against the reference)",
        "",
        *_table(
            [
                "device",
                "model",
                "delegate",
                "against",
                "max abs",
                "max rel",
                "cosine",
                "top-1",
                "accuracy",
            ],  # fmt: skip
            [
                [
                    md_text(labels.get(str(r.serial), r.serial)),
                    md_text(r.model),
                    md_text(r.delegate),
                    md_text(r.accuracy_reference),
                    number_text(r.max_abs_error),
                    number_text(r.max_rel_error),
                    number_text(r.cosine, digits=6),
                    number_text(r.top1_agreement),
                    md_text(r.accuracy),
                ]
                for r in checked.itertuples()
            ],
        ),
    ]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return [*lines, ""]

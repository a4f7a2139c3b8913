"""Delegates: their names, and node counts from the lines that state them, each counted once."""

from __future__ import annotations

from farm.bench.parse.model import Delegation

_PROVIDERS = ("GPU", "NNAPI", "XNNPACK", "YNNPACK", "COREML", "EXTERNAL", "STABLE_DELEGATE")
_KERNEL_TO_PROVIDER = {
    "tflitexnnpackdelegate": "XNNPACK",
    "tflitegpudelegatev2": "GPU",
    "tflitegpudelegate": "GPU",
    "tflitennapidelegate": "NNAPI",
    "tflitehexagondelegate": "Hexagon",
    "tflitecoremldelegate": "COREML",
}

# Lines that give node counts, most authoritative first. The runtime's "Replacing N out of M
# node(s)" counts what was delegated; a delegate's own summary (simple delegates) and the GPU
# delegate's "N operations will run on the GPU" say the same thing again, or what it would take.
SOURCES = ("replacing", "simple", "gpu_ops")


def provider(name: str) -> str:
    """A provider name (GPU, NNAPI, …) for a provider or delegate-kernel name."""
    upper = name.upper()
    if upper in _PROVIDERS:
        return upper
    if upper == "HEXAGON":
        return "Hexagon"
    known = _KERNEL_TO_PROVIDER.get(name.lower().replace(" ", ""))
    if known is not None:
        return known
    return "EXTERNAL"


def coverage(delegated: int | None, total: int | None) -> str | None:
    """full, partial or none from node counts; None when either is unknown."""
    if delegated is None or total is None:
        return None
    if delegated <= 0:
        return "none"
    return "full" if delegated >= total else "partial"


class Tallies:
    """Node counts per delegate and per kind of line (one of SOURCES), summed over subgraphs."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, list[int | None]]] = {}

    def add(
        self,
        name: str,
        source: str,
        delegated: int | None,
        total: int | None,
        partitions: int | None,
    ) -> None:
        """Add one line's counts for delegate `name`; each subgraph prints its own line."""
        row = self._counts.setdefault(name, {}).setdefault(source, [None, None, None])
        for i, value in enumerate((delegated, total, partitions)):
            if value is not None:
                row[i] = (row[i] or 0) + value

    def settle(self, delegation: Delegation) -> None:
        """Each delegate's node counts from its most authoritative line, and its coverage."""
        for d in delegation.delegates:
            sources = self._counts.get(d.name)
            if sources:
                counts = [_first(sources, i) for i in range(3)]
                if counts[0] is not None:
                    d.nodes_delegated = counts[0]
                if counts[1] is not None:
                    d.nodes_total = counts[1]
                if counts[2] is not None:
                    d.partitions = counts[2]
            if d.coverage is None:
                d.coverage = coverage(d.nodes_delegated, d.nodes_total)


def _first(sources: dict[str, list[int | None]], i: int) -> int | None:
    """The i-th count from the most authoritative source that has it."""
    for source in SOURCES:
        row = sources.get(source)
        if row is not None and row[i] is not None:
            return row[i]
    return None

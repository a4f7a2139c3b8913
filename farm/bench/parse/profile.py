"""Op-profiling tables: their headers and rows, read into an OpProfile of the primary graph."""

from __future__ import annotations

import re
import sys

from farm.bench.parse.model import OpProfile, OpRow, OpTypeRow
from farm.bench.parse.values import NUM_TOKEN

_HEADER_CELL = re.compile(r"\[[^\[\]]*\]")
_RUN_ORDER_COLUMNS = (
    "[node type]",
    "[start]",
    "[first]",
    "[avg ms]",
    "[%]",
    "[cdf%]",
    "[mem kb]",
    "[times called]",
    "[name]",
)
_BY_TYPE_COLUMNS = (
    "[node type]",
    "[count]",
    "[avg ms]",
    "[avg %]",
    "[cdf %]",
    "[mem kb]",
    "[times called]",
)
_OPTIONAL = ("[start]", "[name]")


def column_index(columns: list[str], table: str | None) -> tuple[int, ...] | None:
    """Where each field we keep sits in a table's header; None for tables we do not keep."""
    wanted = {"by_node_type": _BY_TYPE_COLUMNS, "run_order": _RUN_ORDER_COLUMNS}.get(
        "run_order" if table == "top_by_time" else table or ""
    )
    if wanted is None:
        return None
    idx = []
    for name in wanted:
        if name in columns:
            idx.append(columns.index(name))
        elif name in _OPTIONAL:
            idx.append(-1)
        else:
            return None
    return tuple(idx)


def split_spaced(msg: str, n: int, has_name: bool) -> list[str] | None:
    """Split a table row whose tabs became spaces: type, numeric columns, optional name."""
    tokens = msg.split()
    numeric = n - 1 - (1 if has_name else 0)
    for i in range(1, len(tokens) - numeric + 1):
        window = tokens[i : i + numeric]
        if all(NUM_TOKEN.fullmatch(t.rstrip("%")) for t in window):
            rest = tokens[i + numeric :]
            if has_name and not rest or not has_name and rest:
                continue
            out = [" ".join(tokens[:i]), *window]
            if has_name:
                out.append(" ".join(rest))
            return out
    return None


def read_row(
    raw: str, msg: str, columns: list[str], idx: tuple[int, ...], table: str | None
) -> OpRow | OpTypeRow | None:
    """One row of a kept table (`idx` from column_index); None if it is not one."""
    fields = raw.split("\t")
    if len(fields) != len(columns):
        fields = [f for f in (x.strip() for x in fields) if f]
        if len(fields) != len(columns):
            spaced = split_spaced(msg, len(columns), "[name]" in columns)
            if spaced is None:
                return None
            fields = spaced
    try:
        if table == "by_node_type":
            t, c, a, p, cdf, mem, times = idx
            return OpTypeRow(
                sys.intern(fields[t].strip()),
                int(fields[c]),
                float(fields[a]),
                float(fields[p].rstrip().rstrip("%")),
                float(fields[cdf].rstrip().rstrip("%")),
                float(fields[mem]),
                int(fields[times]),
            )
        t, start, first, a, p, cdf, mem, times, name = idx
        return OpRow(
            sys.intern(fields[t].strip()),
            float(fields[first]),
            float(fields[a]),
            float(fields[p].rstrip().rstrip("%")),
            float(fields[cdf].rstrip().rstrip("%")),
            float(fields[mem]),
            int(fields[times]),
            fields[name].strip() if name >= 0 else "",
            float(fields[start]) if start >= 0 else None,
        )
    except ValueError:
        return None  # a cut or foreign row: not ours


class Tables:
    """Where an invocation's op-profile lines go: the open section, table and its columns."""

    __slots__ = ("section", "in_subgraph", "table", "columns", "colidx")

    def __init__(self) -> None:
        self.section: OpProfile | None = None
        self.in_subgraph = False  # under another graph than the primary one: not kept
        self.table: str | None = None  # run_order, top_by_time, by_node_type, other; None: none
        self.columns: list[str] | None = None
        self.colidx: tuple[int, ...] | None = None

    def open_section(self, section: OpProfile) -> None:
        """Rows from now on go to `section`, primary graph first."""
        self.section = section
        self.in_subgraph = False
        self.table = None

    def open_table(self, table: str) -> None:
        """A table titled `table` begins; its header comes next."""
        self.table = table
        self.columns = self.colidx = None

    def reads(self, raw: str, msg: str) -> bool:
        """Whether a line is the open table's header or one of its rows (kept or skipped)."""
        if self.table is None or not ("\t" in raw or self.columns is not None or "[" in msg):
            return False
        if "[node type]" in msg or "[Node type]" in msg:  # the header
            header = [c.lower() for c in _HEADER_CELL.findall(msg)]
            self.columns = header
            self.colidx = column_index(header, self.table)
            return True
        columns = self.columns
        section = self.section
        if columns is None or section is None:
            return False
        idx = self.colidx
        if self.in_subgraph or idx is None:
            return True
        row = read_row(raw, msg, columns, idx, self.table)
        if row is None:
            return False
        if isinstance(row, OpTypeRow):
            section.by_node_type.append(row)
        elif self.table == "run_order":
            section.run_order.append(row)
        else:
            section.top_by_time.append(row)
        return True

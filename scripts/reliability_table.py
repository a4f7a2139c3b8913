"""Write the fault-matrix table of docs/reliability.md from farm/sim/fault_matrix.py (one source).

Usage: .venv/bin/python scripts/reliability_table.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from farm.sim.fault_matrix import render_doc  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"


def main(argv: list[str]) -> int:
    """Rewrite the table (or, with --check, say whether it is current); the exit code."""
    text = DOC.read_text(encoding="utf-8")
    new = render_doc(text)
    if "--check" in argv:
        if new != text:
            print(f"{DOC}: the fault matrix is out of date", file=sys.stderr)
            return 1
        return 0
    if new != text:
        tmp = DOC.with_suffix(".md.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(DOC)
        print(f"{DOC}: table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Write the fault-matrix table of docs/reliability.md from the test table (one source).

Usage: .venv/bin/python scripts/reliability_table.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lab.test_fault_matrix_table import DOC, render_doc  # noqa: E402


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

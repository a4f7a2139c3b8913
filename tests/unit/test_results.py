"""Results schema and the results.jsonl journal: durability, partial lines, resume, versions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from farm.android.info import DeviceInfo
from farm.bench.plan import Cell
from farm.config import DelegateSpec
from farm.errors import InputError
from farm.results import schema
from farm.results.journal import Journal, load_run

DEVICE = DeviceInfo(serial="s1", server="127.0.0.1:5037", state="device", model="Pixel 7",
                    soc="Google GS201", sdk=34, abis=("arm64-v8a",), profile="pixel_7")  # fmt: skip


def cell(delegate: str = "cpu", threads: int = 1, repeat: int = 0) -> Cell:
    return Cell(serial="s1", server="127.0.0.1:5037", model="m", model_path=Path("/m.tflite"),
                model_sha256="c" * 64, delegate=delegate,
                spec=DelegateSpec.model_validate(delegate), threads=threads,
                repeat=repeat)  # fmt: skip


def line(status: str = "ok", **kw: object) -> dict:
    c = kw.pop("cell", None) or cell()
    return schema.cell_line(cell=c, device=DEVICE, status=status, **kw)  # type: ignore[arg-type]


def header() -> dict:
    return schema.header(plan={"cells": []}, config={"threads": [1]}, run_id="r1")


def test_cell_line_has_the_documented_keys():
    data = line("ok", metrics={"inference_avg_us": 1234.5}, binary_sha256="d" * 64,
                command="cd /x && ./benchmark_model --graph=m", log="logs/s1/x.log",
                started_at="2026-01-01T00:00:00+00:00", duration_s=3.2)  # fmt: skip
    for key in ("serial", "server", "device", "model", "model_sha256", "binary_sha256",
                "delegate", "threads", "repeat", "status", "reason", "metrics", "delegation",
                "command", "log", "started_at", "duration_s", "simulated", "key"):  # fmt: skip
        assert key in data, key
    assert data["type"] == "cell"
    assert data["device"] == {"model": "Pixel 7", "soc": "Google GS201", "sdk": 34,
                              "abi": "arm64-v8a", "profile": "pixel_7"}  # fmt: skip
    assert data["key"] == cell().key
    with pytest.raises(ValueError, match="unknown cell status 'okay'"):
        line("okay")


def test_header_and_summary():
    h = header()
    assert h["type"] == "header" and h["schema_version"] == schema.SCHEMA_VERSION
    assert h["tool_versions"]["farm"]
    assert h["host"]["python"]
    s = schema.summary(counts={"ok": 3, "timeout": 1}, bytes_pushed=10, interrupted=False)
    assert s["counts"] == {"ok": 3, "failed": 0, "unsupported": 0, "timeout": 1,
                           "device_lost": 0, "error": 0}  # fmt: skip
    assert s["bytes_pushed"] == 10 and s["interrupted"] is False and s["finished_at"]
    with pytest.raises(ValueError):
        schema.summary(counts={"lost": 1})


@pytest.mark.parametrize(
    ("counts", "code"),
    [
        ({"ok": 5}, 0),
        ({"ok": 1, "failed": 2, "unsupported": 3}, 0),
        ({"ok": 1, "timeout": 1}, 1),
        ({"device_lost": 1}, 1),
        ({"error": 1, "ok": 0}, 1),
        ({"ok": 2, "timeout": 0}, 0),
        ({}, 0),
    ],
)
def test_exit_code_for(counts: dict, code: int):
    assert schema.exit_code_for(counts) == code


def test_journal_round_trip(tmp_path: Path):
    run = tmp_path / "run"
    journal = Journal.create(run, header())
    journal.append(line("ok", metrics={"inference_avg_us": float("nan"), "x": [1.0, float("inf")]}))
    journal.append(line("failed", cell=cell("gpu"), reason="Failed to apply GPU delegate."))
    journal.finish(schema.summary(counts={"ok": 1, "failed": 1}))
    text = (run / "results.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = load_run(run)
    assert data.header["run_id"] == "r1"
    assert [c["status"] for c in data.cells] == ["ok", "failed"]
    assert data.cells[0]["metrics"] == {"inference_avg_us": None, "x": [1.0, None]}
    assert data.summary is not None and data.summary["counts"]["ok"] == 1
    assert data.warnings == []
    assert load_run(run / "results.jsonl").cells == data.cells
    assert data.done_keys == {cell().key, cell("gpu").key}
    with pytest.raises(ValueError, match="closed"):
        journal.append(line())


def test_create_refuses_an_existing_run(tmp_path: Path):
    Journal.create(tmp_path, header()).close()
    with pytest.raises(InputError, match="already exists; continue it with --resume"):
        Journal.create(tmp_path, header())


def test_partial_last_line_is_ignored_with_a_warning(tmp_path: Path):
    journal = Journal.create(tmp_path, header())
    journal.append(line())
    journal.close()
    with open(tmp_path / "results.jsonl", "ab") as fh:
        fh.write(b'{"type": "cell", "key": "s1|cc')
    data = load_run(tmp_path)
    assert len(data.cells) == 1
    assert data.warnings == [
        "results.jsonl:3: partial last line ignored (the run stopped while writing it)"
    ]


def test_damaged_middle_line_is_skipped_not_fatal(tmp_path: Path):
    journal = Journal.create(tmp_path, header())
    journal.append(line())
    journal.close()
    with open(tmp_path / "results.jsonl", "ab") as fh:
        fh.write(b'{"bad": NaN}\n\xff\xfe garbage\n' + json.dumps(line(cell=cell("gpu"))).encode()
                 + b"\n" + b'{"type": "mystery"}\n')  # fmt: skip
    data = load_run(tmp_path)
    assert [c["delegate"] for c in data.cells] == ["cpu", "gpu"]
    assert data.warnings == [
        "results.jsonl:3: not valid JSON; line skipped",
        "results.jsonl:4: not valid JSON; line skipped",
        "results.jsonl:6: unknown record type 'mystery'; line skipped",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty, not a farm results file"),
        (b'{"type": "cell"}\n', "the first line is not a header"),
        (b"hello\n", "no header line"),
        (b'{"type": "header", "schema_version": 2}\n', "results schema 2, newer than this farm"),
        (b'{"type": "header"}\n', "no valid schema_version"),
    ],
)
def test_not_loadable_files_say_why(tmp_path: Path, content: bytes, message: str):
    (tmp_path / "results.jsonl").write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_run(tmp_path)


def test_missing_run(tmp_path: Path):
    with pytest.raises(InputError, match="no results.jsonl found"):
        load_run(tmp_path)


def test_resume_cuts_the_partial_line_and_reruns_incomplete_cells(tmp_path: Path):
    journal = Journal.create(tmp_path, header())
    journal.append(line("ok"))
    journal.append(line("timeout", cell=cell("cpu", 2), reason="no result after 600 s"))
    journal.append(line("unsupported", cell=cell("gpu"), reason="no GPU"))
    journal.close()
    with open(tmp_path / "results.jsonl", "ab") as fh:
        fh.write(b'{"type": "cell", "ke')
    journal, done = Journal.open_resume(tmp_path)
    assert done == {cell().key, cell("gpu").key}  # the timeout is run again
    journal.append(line("ok", cell=cell("cpu", 2)))
    journal.finish(schema.summary(counts={"ok": 2, "unsupported": 1}))
    data = load_run(tmp_path)
    assert data.warnings == []
    assert [c["key"] for c in data.cells] == [cell().key, cell("gpu").key, cell("cpu", 2).key]
    assert all(c["status"] != "timeout" for c in data.cells)
    assert data.superseded == 1
    assert len(data.resumes) == 1 and data.resumes[0]["done"] == 2
    assert data.summary is not None and data.summary["counts"]["ok"] == 2


def test_a_summary_before_a_resume_no_longer_counts(tmp_path: Path):
    journal = Journal.create(tmp_path, header())
    journal.finish(schema.summary(counts={}))
    Journal.open_resume(tmp_path)[0].close()
    assert load_run(tmp_path).summary is None


def test_appends_from_many_threads_stay_whole_lines(tmp_path: Path):
    journal = Journal.create(tmp_path, header())

    def worker(n: int) -> None:
        for r in range(40):
            journal.append(line(cell=cell("cpu", n, r), reason="x" * 500))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.close()
    data = load_run(tmp_path)
    assert len(data.cells) == 160 and data.warnings == []


WRITER = """
import sys
from pathlib import Path
from farm.android.info import DeviceInfo
from farm.bench.plan import Cell
from farm.config import DelegateSpec
from farm.results import schema
from farm.results.journal import Journal

dev = DeviceInfo(serial="s1", server="h:1", state="device")
j = Journal.create(Path(sys.argv[1]), schema.header(plan={}))
r = 0
while True:
    c = Cell(serial="s1", server="h:1", model="m", model_path=Path("m"), model_sha256="e" * 64,
             delegate="cpu", spec=DelegateSpec(kind="cpu"), threads=1, repeat=r)
    j.append(schema.cell_line(cell=c, device=dev, status="ok", reason="y" * 3000))
    r += 1
"""


def test_kill_9_leaves_a_loadable_journal(tmp_path: Path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run)])
    try:
        results = run / "results.jsonl"
        while not (results.exists() and results.stat().st_size > 200_000):
            assert proc.poll() is None, "the writer stopped by itself"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    data = load_run(run)
    assert len(data.cells) >= 50
    assert [c["repeat"] for c in data.cells] == list(range(len(data.cells)))
    assert len(data.warnings) <= 1
    journal, done = Journal.open_resume(run)
    journal.close()
    assert len(done) == len(data.cells)
    assert load_run(run).warnings == []


def test_every_truncation_loads_a_prefix(tmp_path: Path):
    journal = Journal.create(tmp_path / "full", header())
    for r in range(4):
        journal.append(line(cell=cell("cpu", 1, r)))
    journal.close()
    raw = (tmp_path / "full" / "results.jsonl").read_bytes()
    header_end = raw.index(b"\n")
    path = tmp_path / "results.jsonl"
    for cut in range(len(raw) + 1):
        path.write_bytes(raw[:cut])
        if cut < header_end:
            with pytest.raises(InputError):
                load_run(path)
            continue
        data = load_run(path)
        whole = raw[:cut].count(b"\n") - 1  # complete cell lines
        assert [c["repeat"] for c in data.cells] in (list(range(whole)), list(range(whole + 1)))
        assert len(data.warnings) <= 1

"""Results schema and the results.jsonl journal: durability, partial lines, resume, versions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from farm.android.info import DeviceInfo
from farm.android.inventory import Inventory
from farm.bench.cell import cell_result
from farm.bench.plan import Cell
from farm.config import DelegateSpec
from farm.errors import InputError
from farm.report import write_outputs
from farm.results.journal import Journal, load_run
from farm.results.model import (
    SCHEMA_VERSION,
    CellResult,
    Metrics,
    PlanRecord,
    RunHeader,
    RunSummary,
    SchemaError,
    Status,
    exit_code_for,
)

DEVICE = DeviceInfo(serial="s1", server="127.0.0.1:5037", state="device", model="Pixel 7",
                    soc="Google GS201", sdk=34, abis=("arm64-v8a",), profile="pixel_7")  # fmt: skip


def cell(delegate: str = "cpu", threads: int = 1, repeat: int = 0) -> Cell:
    return Cell(serial="s1", server="127.0.0.1:5037", model="m", model_path=Path("/m.tflite"),
                model_sha256="c" * 64, delegate=delegate,
                spec=DelegateSpec.model_validate(delegate), threads=threads,
                repeat=repeat)  # fmt: skip


def line(status: str = "ok", *, metrics: Metrics | None = None, **kw: object) -> CellResult:
    c = kw.pop("cell", None) or cell()
    result = cell_result(c, DEVICE, Status(status), **kw)  # type: ignore[arg-type]
    return replace(result, metrics=metrics) if metrics is not None else result


def header() -> RunHeader:
    return RunHeader(run_id="r1", plan=PlanRecord(), config={"threads": [1]})


def summary(**counts: int) -> RunSummary:
    return RunSummary(counts={Status(k): v for k, v in counts.items()})


def test_cell_line_has_the_documented_keys():
    data = line("ok", metrics=Metrics(inference_avg_us=1234.5), binary_sha256="d" * 64,
                command="cd /x && ./benchmark_model --graph=m", log="logs/s1/x.log",
                started_at="2026-01-01T00:00:00+00:00", duration_s=3.2).to_json()  # fmt: skip
    for key in ("serial", "server", "device", "model", "model_sha256", "binary_sha256",
                "delegate", "threads", "repeat", "status", "reason", "metrics", "delegation",
                "command", "log", "started_at", "duration_s", "simulated", "key",
                "exit_status", "retries"):  # fmt: skip
        assert key in data, key
    assert data["type"] == "cell"
    assert data["device"] == {"model": "Pixel 7", "soc": "Google GS201", "sdk": 34,
                              "abi": "arm64-v8a", "profile": "pixel_7"}  # fmt: skip
    assert data["key"] == cell().key
    assert "delegation" not in data["metrics"]  # stored once, at the top level
    assert CellResult.from_json(data) == line("ok", metrics=Metrics(inference_avg_us=1234.5),
        binary_sha256="d" * 64, command="cd /x && ./benchmark_model --graph=m",
        log="logs/s1/x.log", started_at="2026-01-01T00:00:00+00:00", duration_s=3.2)  # fmt: skip
    with pytest.raises(SchemaError, match="unknown cell status 'okay'"):
        CellResult.from_json(data | {"status": "okay"})


def test_header_and_summary():
    h = header().to_json()
    assert h["type"] == "header" and h["schema_version"] == SCHEMA_VERSION
    assert h["tool_versions"]["farm"]
    assert h["host"]["python"]
    back = RunHeader.from_json(h)
    assert back.run_id == "r1" and back.config == {"threads": [1]} and back.plan == PlanRecord()
    s = RunSummary(counts={Status.OK: 3, Status.TIMEOUT: 1}, bytes_pushed=10).to_json()
    assert s["counts"] == {"ok": 3, "failed": 0, "unsupported": 0, "timeout": 1,
                           "device_lost": 0, "error": 0}  # fmt: skip
    assert s["bytes_pushed"] == 10 and s["interrupted"] is False and s["finished_at"]
    assert RunSummary.from_json(s).counts[Status.TIMEOUT] == 1
    with pytest.raises(SchemaError):
        RunSummary.from_json(s | {"counts": {"lost": 1}})
    with pytest.raises(ValueError):
        Status("lost")


def test_header_keeps_each_device_inventory_typed():
    inventory = Inventory(ram_kb=7869488, nnapi_accelerators=("google-edgetpu",), unknown={})
    h = replace(header(), inventories={"R5CW20ABCDE": inventory}).to_json()
    back = RunHeader.from_json(json.loads(json.dumps(h)))
    assert back.inventories == {"R5CW20ABCDE": inventory}
    assert back.inventories["R5CW20ABCDE"].ram_mb == 7685
    older = {k: v for k, v in h.items() if k != "inventories"}  # a header written before them
    assert RunHeader.from_json(older).inventories == {}
    with pytest.raises(SchemaError, match="inventories"):
        RunHeader.from_json(h | {"inventories": {"R5CW20ABCDE": [1]}})


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
    assert exit_code_for({Status(k): v for k, v in counts.items()}) == code
    assert RunSummary(counts={Status(k): v for k, v in counts.items()}).exit_code == code
    assert RunSummary(counts={}, interrupted=True).exit_code == 130


def test_journal_round_trip(tmp_path: Path):
    run = tmp_path / "run"
    journal = Journal.create(run, header())
    nan = Metrics(inference_avg_us=float("nan"), inference_std_us=float("inf"))
    journal.append(line("ok", metrics=nan))
    journal.append(line("failed", cell=cell("gpu"), reason="Failed to apply GPU delegate."))
    journal.finish(summary(ok=1, failed=1))
    text = (run / "results.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = load_run(run)
    assert data.header.run_id == "r1" and data.header.schema_version == SCHEMA_VERSION
    assert [c.status for c in data.cells] == [Status.OK, Status.FAILED]
    first = data.cells[0].metrics
    assert first is not None and first.inference_avg_us is None and first.inference_std_us is None
    assert data.summary is not None and data.summary.counts[Status.OK] == 1
    assert data.warnings == ()
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
    assert data.warnings == (
        "results.jsonl:3: partial last line ignored (the run stopped while writing it)",
    )


def test_damaged_middle_line_is_skipped_not_fatal(tmp_path: Path):
    journal = Journal.create(tmp_path, header())
    journal.append(line())
    journal.close()
    with open(tmp_path / "results.jsonl", "ab") as fh:
        fh.write(b'{"bad": NaN}\n\xff\xfe garbage\n'
                 + json.dumps(line(cell=cell("gpu")).to_json()).encode()
                 + b"\n" + b'{"type": "mystery"}\n'
                 + b'{"type": "cell", "status": "okay", "threads": 1, "repeat": 0}\n')  # fmt: skip
    data = load_run(tmp_path)
    assert [c.delegate for c in data.cells] == ["cpu", "gpu"]
    assert data.warnings == (
        "results.jsonl:3: not valid JSON; line skipped",
        "results.jsonl:4: not valid JSON; line skipped",
        "results.jsonl:6: unknown record type 'mystery'; line skipped",
        "results.jsonl:7: cell: unknown cell status 'okay' (known: ok, failed, unsupported, "
        "timeout, device_lost, error); line skipped",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty, not a farm results file"),
        (b'{"type": "cell"}\n', "the first line is not a header"),
        (b"hello\n", "no header line"),
        (b'{"type": "header", "schema_version": 99}\n', "results schema 99, newer than this farm"),
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
    journal, before = Journal.open_resume(tmp_path)
    assert before.done_keys == {cell().key, cell("gpu").key}  # the timeout is run again
    journal.append(line("ok", cell=cell("cpu", 2)))
    journal.finish(summary(ok=2, unsupported=1))
    data = load_run(tmp_path)
    assert data.warnings == ()
    assert [c.key for c in data.cells] == [cell().key, cell("gpu").key, cell("cpu", 2).key]
    assert all(c.status != Status.TIMEOUT for c in data.cells)
    assert data.superseded == 1
    assert len(data.resumes) == 1 and data.resumes[0].done == 2
    assert data.summary is not None and data.summary.counts[Status.OK] == 2


def test_a_summary_before_a_resume_no_longer_counts(tmp_path: Path):
    journal = Journal.create(tmp_path, header())
    journal.finish(summary())
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
    assert len(data.cells) == 160 and data.warnings == ()


WRITER = """
import sys
from pathlib import Path
from farm.android.info import DeviceInfo
from farm.bench.plan import Cell
from farm.config import DelegateSpec
from farm.bench.cell import cell_result
from farm.results.journal import Journal
from farm.results.model import PlanRecord, RunHeader, Status

dev = DeviceInfo(serial="s1", server="h:1", state="device")
j = Journal.create(Path(sys.argv[1]), RunHeader(run_id="r", plan=PlanRecord()))
r = 0
while True:
    c = Cell(serial="s1", server="h:1", model="m", model_path=Path("m"), model_sha256="e" * 64,
             delegate="cpu", spec=DelegateSpec(kind="cpu"), threads=1, repeat=r)
    j.append(cell_result(c, dev, Status.OK, "y" * 3000))
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
    assert [c.repeat for c in data.cells] == list(range(len(data.cells)))
    assert len(data.warnings) <= 1
    journal, before = Journal.open_resume(run)
    journal.close()
    assert len(before.done_keys) == len(data.cells)
    assert load_run(run).warnings == ()


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
        assert [c.repeat for c in data.cells] in (list(range(whole)), list(range(whole + 1)))
        assert len(data.warnings) <= 1


V1_RUN = Path(__file__).parents[1] / "corpus" / "results_v1" / "results.jsonl"


def test_a_version_1_run_loads_upgraded_and_reports(tmp_path: Path):
    """A results.jsonl written by farm before schema 2 (kept verbatim in tests/corpus)."""
    raw = [json.loads(x) for x in V1_RUN.read_text().splitlines()]
    assert raw[0]["schema_version"] == 1
    data = load_run(V1_RUN)
    assert data.header.schema_version == 1 and data.warnings == ()
    assert len(data.cells) == 12 and data.summary is not None
    assert data.summary.counts[Status.OK] == 10 and data.summary.counts[Status.UNSUPPORTED] == 2
    assert data.header.plan.serials and len(data.header.plan.cells) == 10
    v1_cells = {c["key"]: c for c in raw if c["type"] == "cell"}
    for result in data.cells:
        old = v1_cells[result.key]
        assert result.status == Status(old["status"])
        if old["metrics"] is None:
            assert result.metrics is None and result.delegation is None
            continue
        assert result.metrics is not None
        assert result.metrics.inference_avg_us == old["metrics"]["inference_avg_us"]
        # v1 stored delegation twice; v2 keeps the top-level copy only
        assert result.delegation is not None
        assert result.delegation.to_json() == old["metrics"]["delegation"] == old["delegation"]
        assert result.exit_status == old["exit_status"]
        # written back, it is a version-2 line that reads back the same
        again = result.to_json()
        assert "delegation" not in again["metrics"]
        assert CellResult.from_json(again) == result
    # the report of an old run
    run = tmp_path / "old"
    run.mkdir()
    (run / "results.jsonl").write_bytes(V1_RUN.read_bytes())
    write_outputs(run, load_run(run).cells)
    report = (run / "report.md").read_text()
    assert "Pixel 7" in report and "external:qnn" in report
    rows = json.loads((run / "results.json").read_text())["summary"]
    assert any(r["delegate"] == "cpu" and r["latency_ms"] for r in rows)


def test_a_version_1_run_resumed_goes_on_in_version_2(tmp_path: Path):
    run = tmp_path / "old"
    run.mkdir()
    lines = V1_RUN.read_bytes().splitlines(keepends=True)
    (run / "results.jsonl").write_bytes(b"".join(lines[:-3]))  # two cells and the summary cut
    journal, before = Journal.open_resume(run)
    assert before.header.schema_version == 1 and len(before.cells) == 10
    cut = [CellResult.from_json(json.loads(x), 1) for x in lines[-3:-1]]
    for result in cut:
        journal.append(replace(result, reason="run again"))
    journal.finish(summary(ok=10, unsupported=2))
    data = load_run(run)
    assert data.warnings == () and len(data.cells) == 12
    assert [m.schema_version for m in data.resumes] == [SCHEMA_VERSION]
    assert [c.reason for c in data.cells[-2:]] == ["run again", "run again"]
    assert data.cells[-2:] == tuple(replace(c, reason="run again") for c in cut)
    raw = (run / "results.jsonl").read_text().splitlines()
    assert json.loads(raw[-3])["type"] == "cell" and "retries" in json.loads(raw[-3])


def test_verdict_binary_and_flags_round_trip_and_mark_a_fallback():
    from farm.results.model import BinaryInfo, Verdict

    ok = replace(line("ok"), verdict=Verdict.NOT_APPLIED, tool_flags={"use_caching": "true"},
                 binary=BinaryInfo(abi="arm64-v8a", source="cache", sha256="e" * 64))  # fmt: skip
    data = ok.to_json()
    assert data["verdict"] == "not_applied" and data["delegate_kind"] == "cpu"
    back = CellResult.from_json(data)
    assert back == ok and back.fallback and back.marks == ("fallback",) and not back.comparable
    assert not replace(ok, verdict=Verdict.PARTIAL).fallback
    assert not replace(ok, status=Status.FAILED).fallback  # no number, so not a fallback number
    with pytest.raises(SchemaError, match="unknown verdict"):
        CellResult.from_json(data | {"verdict": "mostly"})


def test_schema_2_cells_get_a_kind_from_their_label_and_no_verdict():
    data = line("ok").to_json() | {"delegate": "external:qnn", "verdict": "full"}
    del data["delegate_kind"]
    old = CellResult.from_json(data, version=2)
    assert old.delegate_kind == "external" and old.verdict is None

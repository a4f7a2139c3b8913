"""Report: the cell frame, summaries, best configuration, renderers and output files."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from farm.android.info import DeviceInfo
from farm.bench.cell import cell_result
from farm.bench.plan import Cell
from farm.config import DelegateSpec
from farm.report import write_outputs
from farm.report.console import PIPE_WIDTH, device_labels, print_report, report_console
from farm.report.frame import (
    best_per_device,
    cells_frame,
    coverage_text,
    problems_frame,
    short_coverage,
    short_flags,
    stability_flags,
    summary_frame,
)
from farm.report.markdown import render_markdown
from farm.report.text import csv_text, md_text, safe_text
from farm.results.model import (
    SCHEMA_VERSION,
    CellResult,
    Delegation,
    Metrics,
    PlanRecord,
    RunHeader,
    Status,
)

PIXEL = DeviceInfo(serial="p7", server="127.0.0.1:5037", state="device", model="Pixel 7",
                   soc="Google GS201", sdk=34, abis=("arm64-v8a",), profile="pixel_7")  # fmt: skip
EMU = DeviceInfo(serial="emulator-5554", server="127.0.0.1:5038", state="device",
                 model="sdk_gphone64_x86_64", sdk=34, abis=("x86_64",), emulator=True)  # fmt: skip
GPU_PARTIAL = {"delegates": ["GPU"], "nodes_delegated": 29, "nodes_total": 31, "partitions": 3,
               "kernels": 3, "coverage": "partial"}  # fmt: skip


def line(dev: DeviceInfo, delegate: str, threads: int, status: str = "ok", *, repeat: int = 0,
         avg_us: float | None = None, std_us: float | None = None, count: int | None = 50,
         reason: str | None = None, delegation: dict | None = None, model: str = "mobilenet",
         simulated: bool = False) -> CellResult:  # fmt: skip
    cell = Cell(serial=dev.serial, server=dev.server, model=model,
                model_path=Path(f"/m/{model}.tflite"), model_sha256="f" * 64,
                delegate=delegate, spec=DelegateSpec.model_validate(delegate.split(":")[0]
                if not delegate.startswith("external") else {"kind": "external", "name": "x",
                "path": "/x"}), threads=threads, repeat=repeat)  # fmt: skip
    result = cell_result(cell, dev, Status(status), reason, simulated=simulated)
    if status != "ok":
        return result
    metrics = Metrics(inference_avg_us=avg_us, inference_std_us=std_us, inference_count=count,
                      init_us=120000.0)  # fmt: skip
    return replace(result, metrics=metrics, delegation=Delegation.from_json(delegation))


def lab_cells() -> list[CellResult]:
    cells = []
    for r in range(2):
        cells += [
            line(PIXEL, "cpu", 1, avg_us=20000, std_us=400, repeat=r, simulated=True),
            line(PIXEL, "cpu", 4, avg_us=8000 + 1000 * r, std_us=100, repeat=r, simulated=True),
            line(PIXEL, "gpu", 1, avg_us=5000, std_us=50, delegation=GPU_PARTIAL, repeat=r,
                 simulated=True),
            line(PIXEL, "nnapi", 1, "failed", repeat=r, simulated=True,
                 reason="NN API returned error ANEURALNETWORKS_BAD_DATA"),
            line(EMU, "cpu", 1, avg_us=30000, std_us=6000, count=6, repeat=r),
            line(EMU, "gpu", 1, "unsupported", reason="no GPU delegate on this device", repeat=r),
        ]  # fmt: skip
    cells.append(line(EMU, "cpu", 4, "timeout", reason="no result after 600 s"))
    return cells


def test_cells_frame_is_tidy_and_in_ms():
    df = cells_frame(lab_cells())
    assert len(df) == 13
    first = df.iloc[0]
    assert first["latency_ms"] == 20.0 and first["std_ms"] == 0.4 and first["runs"] == 50
    assert first["init_ms"] == 120.0
    assert first["device"] == "Pixel 7" and first["profile"] == "pixel_7" and first["simulated"]
    gpu = df[(df["delegate"] == "gpu") & (df["serial"] == "p7")].iloc[0]
    assert gpu["coverage"] == "GPU 29/31 nodes, 3 partitions"
    failed = df[df["status"] == "failed"].iloc[0]
    assert math.isnan(failed["latency_ms"]) and failed["reason"].startswith("NN API")
    assert cells_frame([]).empty


def test_summary_pools_repeats_and_computes_speedup():
    summary = summary_frame(cells_frame(lab_cells()))
    row = summary[(summary["serial"] == "p7") & (summary["delegate"] == "cpu")
                  & (summary["threads"] == 4)].iloc[0]  # fmt: skip
    # Two repeats of 50 runs: means 8 and 9 ms, std 0.1 ms each → pooled over 100 runs.
    assert row["latency_ms"] == pytest.approx(8.5)
    assert row["std_ms"] == pytest.approx(math.sqrt(0.1**2 + 0.5**2))
    assert row["runs"] == 100 and row["repeats"] == 2 and row["repeats_ok"] == 2
    assert row["speedup"] == pytest.approx(20 / 8.5)
    gpu = summary[(summary["serial"] == "p7") & (summary["delegate"] == "gpu")].iloc[0]
    assert gpu["speedup"] == pytest.approx(4.0) and gpu["coverage"].startswith("GPU 29/31")
    nnapi = summary[summary["delegate"] == "nnapi"].iloc[0]
    assert nnapi["status"] == "failed" and "BAD_DATA" in nnapi["reason"]
    assert math.isnan(nnapi["speedup"])
    emu = summary[(summary["serial"] == "emulator-5554") & (summary["delegate"] == "cpu")]
    assert list(emu["threads"]) == [1, 4]
    assert "unstable: std 20% of mean" in emu.iloc[0]["flags"]
    assert "only 12 runs" not in emu.iloc[0]["flags"]  # 2 × 6 runs = 12, enough
    assert emu.iloc[1]["status"] == "timeout"


def test_mixed_repeats_say_how_many_were_ok():
    cells = [line(PIXEL, "cpu", 1, avg_us=1000, std_us=10, repeat=0),
             line(PIXEL, "cpu", 1, "device_lost", reason="gone", repeat=1)]  # fmt: skip
    row = summary_frame(cells_frame(cells)).iloc[0]
    assert row["status"] == "ok" and "1/2 repeats ok" in row["flags"] and row["reason"] == "gone"


def test_stability_flags():
    assert stability_flags(10.0, 0.5, 50) == []
    assert stability_flags(10.0, 1.0, 50) == ["unstable: std 10% of mean"]
    assert stability_flags(10.0, 0.1, 3) == ["only 3 runs"]
    assert stability_flags(10.0, float("nan"), None) == []


def test_best_configuration_per_device_and_model():
    cells = lab_cells() + [line(PIXEL, "cpu", 1, avg_us=900, std_us=1, model="tiny")]
    best = best_per_device(summary_frame(cells_frame(cells)))
    picks = {(r.serial, r.model): (r.delegate, r.threads) for r in best.itertuples()}
    assert picks == {("p7", "mobilenet"): ("gpu", 1), ("p7", "tiny"): ("cpu", 1),
                     ("emulator-5554", "mobilenet"): ("cpu", 1)}  # fmt: skip


def test_problems_grouped_with_reasons():
    cells = lab_cells() + [
        line(EMU, "gpu", 1, "unsupported", reason="no GPU delegate on this device", model="tiny"),
        line(EMU, "gpu", 4, "unsupported", reason="no GPU delegate on this device", model="tiny"),
        line(EMU, "cpu", 1, avg_us=900, std_us=1, model="tiny"),
    ]
    problems = problems_frame(cells_frame(cells))
    rows = [(r.serial, r.delegate, r.models, r.threads, r.status, r.cells, r.reason)
            for r in problems.itertuples()]  # fmt: skip
    assert rows == [
        ("p7", "nnapi", "mobilenet", "1", "failed", 2,
         "NN API returned error ANEURALNETWORKS_BAD_DATA"),
        ("emulator-5554", "cpu", "mobilenet", "4", "timeout", 1, "no result after 600 s"),
        ("emulator-5554", "gpu", "all 2", "1, 4", "unsupported", 4,
         "no GPU delegate on this device"),
    ]  # fmt: skip


def test_rows_in_a_stable_order_whatever_the_journal_order():
    cells = lab_cells()
    forward = summary_frame(cells_frame(cells))
    backward = summary_frame(cells_frame(list(reversed(cells))))
    columns = ["serial", "model", "delegate", "threads", "latency_ms"]
    assert forward[columns].equals(backward[columns])
    # Devices by name (Pixel before sdk_...), then delegates cpu, xnnpack, gpu, nnapi, ...
    assert list(dict.fromkeys(forward["serial"])) == ["p7", "emulator-5554"]
    assert list(forward[forward["serial"] == "p7"]["delegate"]) == ["cpu", "cpu", "gpu", "nnapi"]


def test_coverage_text():
    def text(data: dict, delegate: str = "") -> str:
        return coverage_text(Delegation.from_json(data), delegate)

    assert text(GPU_PARTIAL, "gpu") == "GPU 29/31 nodes, 3 partitions"
    assert text({"delegates": ["NNAPI"], "kernels": 1, "coverage": "full"}) == (
        "NNAPI full, 1 partition"
    )
    assert text({"delegates": ["GPU"], "nodes_delegated": 0, "nodes_total": 31}) == (
        "GPU: nothing delegated"
    )
    assert text({"delegates": []}, "cpu") == ""
    assert coverage_text(None) == ""


def render(cells: list[CellResult], width: int = 160) -> str:
    buf = io.StringIO()
    print_report(cells, console=Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


def test_console_report():
    text = render(lab_cells())
    assert "Pixel 7 · Google GS201 · p7 · pixel_7 (simulated)" in text
    assert "sdk_gphone64_x86_64 · emulator-5554" in text
    assert "8.50 ± 0.51" in text and "2.35×" in text and "4.00×" in text
    assert "GPU 29/31, 3 parts" in text
    assert "ok, noisy" in text  # the emulator's std is 20 % of its mean; the legend says so
    assert "noisy: std ≥ 10% of the mean" in text
    assert "Best configuration per device" in text
    assert "no GPU delegate on this device" in text and "unsupported" in text
    assert "virtual phones" in text
    # the simulated mark once per device (in its heading), plus the note
    assert text.count("(simulated)") == 2


LONG_MODEL = "mobilenet_v1_0.25_128_float_quant_edgetpu"


def long_cells() -> list[CellResult]:
    cells = lab_cells()
    cells += [line(PIXEL, d, t, avg_us=900, std_us=200, delegation=GPU_PARTIAL, model=LONG_MODEL,
                   simulated=True) for d in ("cpu", "gpu") for t in (1, 4)]  # fmt: skip
    return cells


@pytest.mark.parametrize("width", [80, PIPE_WIDTH])
def test_console_report_fits_its_width(width: int):
    text = render(long_cells(), width=width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert LONG_MODEL in text  # model names are never cut
    gpu_rows = [line for line in lines if "GPU 29/31, 3 parts" in line]
    assert len(gpu_rows) == 5  # delegation text stays on one line
    assert all("5.00 ± 0.05" in line or "0.90 ± 0.20" in line for line in gpu_rows)


def test_console_narrow_tables_are_per_model():
    def sections(width: int) -> tuple[str, str]:
        text = render(long_cells(), width=width)
        pixel = text.index("Pixel 7 · Google GS201")
        emulator = text.index("sdk_gphone64_x86_64 · emulator-5554")
        return text[pixel:emulator], text[emulator:]

    header = re.compile(r"^model +delegate +thr", re.MULTILINE)
    pixel, emulator = sections(PIPE_WIDTH)
    assert header.search(pixel) and header.search(emulator)
    # at 80 columns the Pixel's long model name would squeeze a model column: a table per model
    pixel, emulator = sections(80)
    assert not header.search(pixel) and header.search(emulator)
    assert re.search(rf"^{LONG_MODEL} *\n *delegate +thr", pixel, re.MULTILINE)
    assert re.search(r"^mobilenet *\n *delegate +thr", pixel, re.MULTILINE)


def test_report_console_width_when_piped(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    buf = io.StringIO()
    console = report_console(buf)
    assert console.width == PIPE_WIDTH and not console.is_terminal
    print_report(long_cells(), console=console)
    assert "\x1b[" not in buf.getvalue()  # no colour when piped
    monkeypatch.setenv("COLUMNS", "100")
    assert report_console(io.StringIO()).width == 100  # the user's choice wins


def test_report_console_honours_no_color(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # as if on a terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    colour = re.compile(r"\x1b\[[0-9;]*(?:3[0-9]|9[0-7])m")  # a foreground colour

    def out() -> str:
        buf = io.StringIO()
        print_report(lab_cells(), console=report_console(buf))
        return buf.getvalue()

    assert colour.search(out())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour.search(out())


def test_short_texts():
    assert short_coverage("GPU 29/31 nodes, 3 partitions") == "GPU 29/31, 3 parts"
    assert short_coverage("XNNPACK 6/7 nodes, 1 partition") == "XNNPACK 6/7, 1 part"
    assert short_coverage("NNAPI: nothing delegated") == "NNAPI: none"
    assert short_coverage("") == ""
    summary = summary_frame(cells_frame(lab_cells()))
    emu = summary[(summary["serial"] == "emulator-5554") & (summary["delegate"] == "cpu")]
    assert short_flags(emu.iloc[0]) == ["noisy"]
    assert short_flags(emu.iloc[1]) == []  # a timeout has no numbers to flag
    cells = [line(PIXEL, "cpu", 1, avg_us=1000, std_us=10, count=3, repeat=0),
             line(PIXEL, "cpu", 1, "device_lost", reason="gone", repeat=1)]  # fmt: skip
    assert short_flags(summary_frame(cells_frame(cells)).iloc[0]) == ["3 runs", "1/2 ok"]
    assert stability_flags(10.0, 2.0, 3, short=True) == ["noisy", "3 runs"]


def test_device_labels_add_the_serial_only_when_needed():
    twin = DeviceInfo(serial="p7b", server="127.0.0.1:5037", state="device", model="Pixel 7",
                      sdk=34, abis=("arm64-v8a",))  # fmt: skip
    cells = [line(PIXEL, "cpu", 1, avg_us=1), line(EMU, "cpu", 1, avg_us=1)]
    labels = device_labels(summary_frame(cells_frame(cells)))
    assert labels == {"p7": "Pixel 7", "emulator-5554": "sdk_gphone64_x86_64"}
    labels = device_labels(summary_frame(cells_frame([*cells, line(twin, "cpu", 1, avg_us=1)])))
    assert (labels["p7"], labels["p7b"]) == ("Pixel 7 p7", "Pixel 7 p7b")


HOSTILE = DeviceInfo(serial="evil", server="127.0.0.1:5037", state="device",
                     model="[bold red]Phone[/] | <script>x</script>",
                     soc="Soc\x1b[31mRED\x07\u202egnp.exe\r\nsecond", sdk=30,
                     abis=("arm64-v8a",))  # fmt: skip


def test_console_prints_device_text_literally():
    cells = [line(HOSTILE, "cpu", 1, avg_us=1000, std_us=1),
             line(HOSTILE, "gpu", 1, "failed", reason="boom [/] \x1b[2J")]  # fmt: skip
    text = render(cells, width=300)
    assert "[bold red]Phone[/]" in text  # not interpreted as markup
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[31mRED\\x07\\u202egnp.exe  second" in text
    assert "boom [/] \\x1b[2J" in text


def test_markdown_escapes_device_text():
    cells = [line(HOSTILE, "cpu", 1, avg_us=1000, std_us=1),
             line(HOSTILE, "gpu", 1, "failed", reason="a|b <img src=x> `c`")]  # fmt: skip
    text = render_markdown(
        cells, header=RunHeader(run_id="r<1>", plan=PlanRecord(), started_at="t")
    )
    assert "<script>" not in text and "<img" not in text and "\x1b" not in text
    assert "&lt;script&gt;" in text and "a\\|b &lt;img src=x&gt; \\`c\\`" in text
    assert "- run: r&lt;1&gt;" in text
    # Every table row has exactly as many unescaped pipes as its header.
    for block in re.findall(r"((?:^\|.*\n)+)", text, re.MULTILINE):
        rows = block.strip("\n").split("\n")
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
        assert len(widths) == 1, rows


def test_markdown_report_sections():
    text = render_markdown(lab_cells())
    assert text.startswith("# farm report")
    assert "## Pixel 7 · Google GS201 · p7 · pixel\\_7 (simulated)" in text
    assert (
        "| mobilenet | gpu | 1 | 5.00 ± 0.05 | 100 | GPU 29/31 nodes, 3 partitions | 4.00× | ok |"
        in text
    )
    assert "## Best configuration per device" in text
    assert "## Cells without a number" in text
    assert "*(simulated)*" in text
    assert render_markdown([]).endswith("No results.\n")


def test_text_helpers():
    assert safe_text("a\tb\nc\x00d\u200be") == "a b c\\x00d\\u200be"
    assert safe_text(None) == ""
    assert md_text("x|y*z_[a]<b>&") == "x\\|y\\*z\\_\\[a\\]&lt;b&gt;&amp;"
    assert csv_text("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_text("-1.5") == "-1.5" and csv_text(3) == 3


def test_write_outputs(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    header = RunHeader(run_id="20260101-000000-abc", plan=PlanRecord())
    (run / "results.jsonl").write_text(json.dumps(header.to_json()) + "\n")
    cells = lab_cells() + [line(HOSTILE, "cpu", 1, avg_us=1000, std_us=1)]
    paths = write_outputs(run, cells)
    outputs = ["junit.xml", "ranking.csv", "report.html", "report.md", "results.csv",
               "results.json"]  # fmt: skip
    assert sorted(p.name for p in paths.values()) == outputs
    assert sorted(p.name for p in run.iterdir()) == sorted([*outputs, "results.jsonl"])
    report = (run / "report.md").read_text()
    assert "- run: 20260101-000000-abc" in report  # header read from results.jsonl

    def strict(name: str) -> None:
        raise ValueError(name)

    data = json.loads((run / "results.json").read_text(), parse_constant=strict)
    assert data["schema_version"] == SCHEMA_VERSION
    assert len(data["cells"]) == len(cells)
    gpu = next(s for s in data["summary"] if s["serial"] == "p7" and s["delegate"] == "gpu")
    assert gpu["latency_ms"] == 5.0 and gpu["runs"] == 100 and gpu["speedup"] == 4.0
    failed = next(s for s in data["summary"] if s["status"] == "failed")
    assert failed["latency_ms"] is None and failed["runs"] is None
    assert {(b["serial"], b["delegate"]) for b in data["best"]} >= {("p7", "gpu")}

    rows = list(csv.DictReader(io.StringIO((run / "results.csv").read_text())))
    assert len(rows) == len(cells)
    assert rows[0]["latency_ms"] == "20.0" and rows[0]["delegate"] == "cpu"
    evil = rows[-1]
    assert "\x1b" not in evil["soc"] and evil["device"].startswith("[bold red]")


def test_write_outputs_with_nothing(tmp_path: Path):
    write_outputs(tmp_path, [])
    assert "No results." in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["cells"] == []


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_device_text_is_inert(text: str):
    shown = safe_text(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in shown)
    md = md_text(text)
    assert "<" not in md and ">" not in md
    assert not re.search(r"(?<!\\)\|", md.replace("\\\\", "")), md  # every | is escaped


def test_long_reasons_are_cut_in_reports():
    cells = [line(PIXEL, "gpu", 1, "failed", reason="x" * 5000)]
    reason = problems_frame(cells_frame(cells)).iloc[0]["reason"]
    assert len(reason) == 300 and reason.endswith("…")


def test_report_files_follow_the_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        paths = write_outputs(tmp_path, lab_cells())
    finally:
        os.umask(old)
    for path in paths.values():
        assert path.stat().st_mode & 0o777 == 0o644, path.name


def test_a_fallback_is_marked_never_best_and_never_a_speedup():
    from farm.results.model import BinaryInfo, OpTypeStat, Verdict

    fast_fallback = replace(
        line(PIXEL, "external:x", 1, avg_us=2000, std_us=10, delegation=None),
        verdict=Verdict.NOT_APPLIED,
        reason="external:x: library did not load — ran on CPU",
        binary=BinaryInfo(abi="arm64-v8a", source="cache", sha256="b" * 64),
    )
    profiled = replace(
        line(PIXEL, "gpu", 1, avg_us=5000, std_us=50, delegation=GPU_PARTIAL),
        verdict=Verdict.PARTIAL,
        metrics=Metrics(inference_avg_us=5000, inference_std_us=50, inference_count=50,
                        inference_median_us=4900, inference_p5_us=4700, inference_p95_us=5600,
                        memory_peak_mb=41.5,
                        op_profile=(OpTypeStat("CONV_2D", 3, 1.2, 12.5),
                                    OpTypeStat("TfLiteGpuDelegateV2", 1, 4.1, 80.25))),
    )  # fmt: skip
    cells = [line(PIXEL, "cpu", 1, avg_us=20000, std_us=400), fast_fallback, profiled]
    df = cells_frame(cells)
    fb = df[df["delegate"] == "external:x"].iloc[0]
    assert fb["marks"] == "fallback" and fb["verdict"] == "not_applied"
    assert fb["coverage"] == "external:x: not applied (ran on CPU)"
    assert fb["binary_abi"] == "arm64-v8a" and fb["binary_source"] == "cache"
    gpu = df[df["delegate"] == "gpu"].iloc[0]
    assert gpu["top_ops"] == "TfLiteGpuDelegateV2 80.2%, CONV_2D 12.5%"
    assert (gpu["median_ms"], gpu["p5_ms"], gpu["p95_ms"], gpu["peak_memory_mb"]) == (
        4.9, 4.7, 5.6, 41.5)  # fmt: skip
    summary = summary_frame(df)
    row = summary[summary["delegate"] == "external:x"].iloc[0]
    assert math.isnan(row["speedup"]) and row["flags"].startswith("fallback")
    assert row["reason"] == "external:x: library did not load — ran on CPU"
    best = best_per_device(summary)
    assert list(best["delegate"]) == ["gpu"]  # 2 ms fallback is faster, yet never best
    problems = problems_frame(df)
    assert problems[["delegate", "status"]].values.tolist() == [["external:x", "fallback"]]
    md = render_markdown(cells)
    assert "## Top ops" in md and "TfLiteGpuDelegateV2 80.2%" in md
    assert "| external:x | 1 | 2.00 ± 0.01 |" in md and "ok (fallback" in md

"""`farm parse`: JSON and table output, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from farm.cli.main import app

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
LOG_001 = CORPUS / "001_linux_arm64_qrb2210_cpu_xnnpack_default.log"
LOG_018 = CORPUS / "018_android_hexagon_failed_to_apply_benchmarking_failed.log"
LOG_037 = CORPUS / "037_android_grep_filtered_multirun_int8_threads_nnapi_full_and_partial.log"

KEYS = {
    "status",
    "failure_kind",
    "errors",
    "threads",
    "init_us",
    "first_inference_us",
    "warmup_avg_us",
    "inference_avg_us",
    "inference_std_us",
    "inference_count",
    "inference_min_us",
    "inference_max_us",
    "inference_median_us",
    "memory_init_mb",
    "memory_overall_mb",
    "memory_peak_mb",
    "delegation",
    "op_profile",
    "format",
}


def _run(*args: str, stdin: str | None = None):
    runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "100"})
    return runner.invoke(app, ["parse", *args], input=stdin)


def test_json_lists_every_invocation_in_order() -> None:
    result = _run("--json", str(LOG_001), str(LOG_018), str(LOG_037))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 10
    assert all(KEYS <= row.keys() for row in rows)
    assert [row["file"] for row in rows[:2]] == [str(LOG_001), str(LOG_018)]
    assert (rows[0]["init_us"], rows[0]["inference_median_us"]) == (87639, 105718)
    assert rows[0]["delegation"]["delegates"] == ["XNNPACK"]
    assert (rows[1]["status"], rows[1]["failure_kind"]) == ("failed", "delegate_failed")
    assert [row["threads"] for row in rows[2:]] == [1, 4] * 4


def test_table_shows_runs_and_failures() -> None:
    result = _run(str(LOG_018), str(LOG_037))
    assert result.exit_code == 0  # a failed run inside a log is not a parse failure
    out = result.stdout
    assert "delegate_failed" in out and "hexagon_nn_config failed. Error: -1" in out
    assert "NNAPI partial" in out and "10013" in out  # first inference, ms


def test_device_text_is_printed_without_markup(tmp_path: Path) -> None:
    log = tmp_path / "odd.log"
    log.write_text("STARTING!\nERROR: [bold red]tensor[/] Failed to allocate tensors!\n")
    result = _run(str(log))
    assert result.exit_code == 0
    assert "[bold red]tensor[/] Failed to allocate tensors!" in result.stdout
    assert "allocation_failed" in result.stdout


def test_unreadable_file_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone.log"
    result = _run("--json", str(missing), str(LOG_001))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"farm: error: {missing}: cannot read: No such file or directory"
    ]
    assert len(json.loads(result.stdout)) == 1  # the readable file is still reported


def test_file_without_benchmark_output(tmp_path: Path) -> None:
    log = tmp_path / "notes.txt"
    log.write_text("nothing to see here\n")
    result = _run(str(log))
    assert result.exit_code == 0
    assert "no benchmark output found" in result.stdout
    assert json.loads(_run("--json", str(log)).stdout) == []


def test_dash_reads_standard_input() -> None:
    result = _run("--json", "-", stdin=LOG_037.read_text(encoding="utf-8"))
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [row["file"] for row in rows] == ["-"] * 8
    assert rows[7]["inference_avg_us"] == 53974.5


def test_a_crash_names_its_signal(tmp_path: Path) -> None:
    log = tmp_path / "crash.log"
    log.write_text("STARTING!\nLoaded model m.tflite\nRunning benchmark for at least 1 iterations\n"
                   "Segmentation fault\n")  # fmt: skip
    result = _run(str(log))
    assert result.exit_code == 0 and "crashed (SIGSEGV)" in result.stdout
    (row,) = json.loads(_run("--json", str(log)).stdout)
    assert (row["failure_kind"], row["signal"], row["exit_status"]) == ("crashed", "SIGSEGV", None)

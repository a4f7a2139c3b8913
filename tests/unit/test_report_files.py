"""Device ranking, junit.xml, plain progress lines and `farm report` on a version-1 run folder."""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import junitparser
import pandas as pd
import pytest
from lxml import etree

from farm.android.info import DeviceInfo
from farm.bench.cell import cell_result
from farm.bench.plan import Cell
from farm.bench.runner import DeviceJob, Event, PlainProgress
from farm.config import DelegateSpec
from farm.errors import ConfigError
from farm.report.junit import parse_fail_on, render_junit
from farm.report.markdown import ranking_markdown
from farm.report.ranking import ranking_frame
from farm.results.model import Metrics, Status

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
RUN_V1 = CORPUS / "results_v1"
XSD = CORPUS / "junit" / "junit-10.xsd"


def summary(rows: list[tuple]) -> pd.DataFrame:
    """A summary frame from (serial, device, model, delegate, threads, status, latency, marks)."""
    frame = pd.DataFrame(
        rows,
        columns=["serial", "device", "model", "delegate", "threads", "status", "latency_ms",
                 "marks"],
    )  # fmt: skip
    frame["simulated"] = False
    frame["comparable"] = (frame["status"] == "ok") & (frame["marks"] == "")
    for col in ("soc", "profile", "reason", "coverage", "flags"):
        frame[col] = ""
    frame["std_ms"] = 0.1
    frame["speedup"] = math.nan
    return frame


SUITE = summary(
    [
        ("a", "Alpha", "m1", "cpu", 1, "ok", 10.0, ""),
        ("a", "Alpha", "m2", "cpu", 1, "ok", 40.0, ""),
        ("b", "Beta", "m1", "cpu", 1, "ok", 5.0, ""),
        ("b", "Beta", "m1", "nnapi", 1, "ok", 1.0, "fallback"),  # fastest, but marked
        ("b", "Beta", "m2", "gpu", 1, "ok", 10.0, ""),
        ("c", "Gamma", "m1", "cpu", 1, "ok", 20.0, ""),
        ("c", "Gamma", "m2", "gpu", 1, "failed", math.nan, ""),
        ("d", "Delta", "m1", "gpu", 1, "unsupported", math.nan, ""),
    ]
)


def test_ranking_scores_against_the_first_device():
    ranking = ranking_frame(SUITE).set_index("serial")
    assert ranking.loc["a", "score"] == pytest.approx(100.0)
    assert bool(ranking.loc["a", "reference"]) and ranking.loc["a", "note"] == "reference"
    # b: m1 10/5 = 2 (the marked 1 ms nnapi cell does not count), m2 40/10 = 4
    assert ranking.loc["b", "score"] == pytest.approx(100 * math.sqrt(2 * 4))
    assert "m1: cpu 1t 5.00 ms" in ranking.loc["b", "configs"]
    # c shares only m1 with the reference: 10/20, and says so
    assert ranking.loc["c", "score"] == pytest.approx(50.0)
    assert ranking.loc["c", "models"] == "1/2"
    assert ranking.loc["c", "note"] == "scored on 1 of 2 models (no comparable result for m2)"
    assert math.isnan(ranking.loc["d", "score"]) and pd.isna(ranking.loc["d", "rank"])
    assert list(ranking_frame(SUITE)["serial"]) == ["b", "a", "c", "d"]


def test_a_device_without_a_score_is_shown_unranked():
    text = "\n".join(ranking_markdown(ranking_frame(SUITE), {}))
    assert "| - | d | - | 0/2 |" in text and "| 1 | b | 282.8 | 2/2 |" in text


def test_ranking_reference_by_model_name_and_errors():
    ranking = ranking_frame(SUITE, reference="beta").set_index("serial")
    assert ranking.loc["b", "score"] == pytest.approx(100.0)
    assert ranking.loc["a", "score"] == pytest.approx(100 / math.sqrt(8))
    with pytest.raises(ConfigError, match=r"--reference 'Omega': no device .* a \(Alpha\)"):
        ranking_frame(SUITE, reference="Omega")
    with pytest.raises(ConfigError, match="d has no comparable result"):
        ranking_frame(SUITE, reference="d")


def test_junit_fails_on_the_kinds_asked_and_skips_unsupported(tmp_path: Path):
    path = tmp_path / "junit.xml"
    path.write_text(render_junit(SUITE, fail_on=("failed", "fallback"), run_id="r1",
                                 timestamp="2026-01-01T00:00:00+00:00", hostname="h",
                                 ranking=ranking_frame(SUITE)))  # fmt: skip
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(etree.parse(str(path)))
    suites = {s.name: s for s in junitparser.JUnitXml.fromfile(str(path))}
    assert set(suites) == {"Alpha (a)", "Beta (b)", "Gamma (c)", "Delta (d)"}
    beta = suites["Beta (b)"]
    assert (beta.tests, beta.failures, beta.skipped) == (3, 1, 0)
    cases = {(c.classname, c.name): c for c in beta}
    (fallback,) = cases[("m1", "nnapi 1t")].result
    assert isinstance(fallback, junitparser.Failure) and fallback.type == "fallback"
    assert cases[("m1", "cpu 1t")].time == pytest.approx(0.005)
    assert {p.name: p.value for p in beta.properties()}["rank"] == "1"
    assert suites["Gamma (c)"].failures == 1
    (skip,) = next(iter(suites["Delta (d)"])).result
    assert isinstance(skip, junitparser.Skipped)
    # without "fallback" in --fail-on the marked cell passes, and says why in its output
    quiet = render_junit(SUITE, fail_on=("failed",))
    assert 'type="fallback"' not in quiet and "marks: fallback" in quiet


def test_fail_on_kinds_are_checked():
    assert parse_fail_on("failed, fallback,failed") == ("failed", "fallback")
    with pytest.raises(ConfigError, match="unknown kind 'slow'"):
        parse_fail_on("failed,slow")


def test_plain_progress_prints_each_cell_and_a_heartbeat_at_most_every_30s():
    dev = DeviceInfo(serial="p7", server="s", state="device", model="Pixel 7", sdk=34,
                     abis=("arm64-v8a",))  # fmt: skip
    cell = Cell(serial="p7", server="s", model="mobilenet", model_path=Path("/m.tflite"),
                model_sha256="f" * 64, delegate="gpu", spec=DelegateSpec.model_validate("gpu"),
                threads=1, repeat=0)  # fmt: skip
    now = [0.0]
    out = io.StringIO()
    progress = PlainProgress([DeviceJob(info=dev, cells=[cell, cell])], stream=out,
                             clock=lambda: now[0])  # fmt: skip
    ok = cell_result(cell, dev, Status.OK, None)
    ok = type(ok)(**{**ok.__dict__, "metrics": Metrics(inference_avg_us=5120.0)})
    with progress:
        progress.update(Event("p7", "status", "running gpu 1t"))
        for t in (10.0, 29.9):
            now[0] = t
            progress.tick()
        now[0] = 30.0
        progress.tick()
        now[0] = 45.0
        progress.tick()  # 15 s after the heartbeat: nothing
        progress.update(Event("p7", "cell", status=Status.OK, result=ok))
        now[0] = 74.0
        progress.tick()
        failed = cell_result(cell, dev, Status.FAILED, "delegate_failed: no\nOpenCL")
        progress.update(Event("p7", "cell", status=Status.FAILED, result=failed))
    lines = out.getvalue().splitlines()
    assert lines == [
        "[     0s] running 2 cells on 1 device(s)",
        "[    30s] still running: 0/2 cells done; p7: running gpu 1t",
        "[    45s] cell 1/2 p7 Pixel 7 · mobilenet · gpu · 1t · ok · 5.12 ms",
        "[    74s] cell 2/2 p7 Pixel 7 · mobilenet · gpu · 1t · failed · "
        "delegate_failed: no OpenCL",
    ]


def farm(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "farm.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_farm_report_rewrites_a_version_1_run_folder(tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(RUN_V1, run)
    result = farm("report", run, "--format", "html,junit,md", "--reference", "Pixel 7")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(run / n) for n in ("report.md", "report.html",
                                                             "junit.xml")]  # fmt: skip
    html = (run / "report.html").read_text()
    assert "20261130-001023-8e4b6f" in html and html.count('<svg class="plot"') >= 4
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?https?:""", html)
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(etree.parse(str(run / "junit.xml")))
    xml = junitparser.JUnitXml.fromfile(str(run / "junit.xml"))
    assert sum(s.tests for s in xml) == 12 and sum(s.skipped for s in xml) == 2
    report = (run / "report.md").read_text()
    assert "## Device ranking" in report and "| 1 | Pixel 7 | 100.0 |" in report


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--format", "pdf"), "--format: unknown format 'pdf'"),
        (("--fail-on", "slow"), "--fail-on: unknown kind 'slow'"),
        (("--reference", "nokia"), "--reference 'nokia': no device has that serial or model"),
    ],
)
def test_farm_report_bad_options_are_one_line(tmp_path: Path, args: tuple[str, ...], says: str):
    run = tmp_path / "run"
    shutil.copytree(RUN_V1, run)
    result = farm("report", run, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"farm: error: {says}") and len(result.stderr.splitlines()) == 1


def test_farm_report_of_a_missing_folder(tmp_path: Path):
    result = farm("report", tmp_path / "nothing")
    assert result.returncode == 2
    assert result.stderr == f"farm: error: {tmp_path / 'nothing'}: no results.jsonl found\n"

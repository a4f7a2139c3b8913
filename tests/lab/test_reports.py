"""A lab run as CI and a person see it: plain progress lines while it runs, the job summary,
junit.xml, and report.html rendered in headless Chromium (one run, one browser)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import junitparser
import pytest
from lxml import etree
from PIL import Image

from farm.sim.lab import Lab
from farm.sim.testing import AdbServer, bundled_adb, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]

MODELS = Path(__file__).resolve().parents[2] / "models"
XSD = Path(__file__).resolve().parents[1] / "corpus" / "junit" / "junit-10.xsd"
CHROMIUM = "/usr/bin/chromium"


@dataclass
class LabRun:
    run_dir: Path
    stderr: str
    streamed: bool  # a cell line was on stderr while the run was still going
    step_summary: Path
    summary: list[dict[str, Any]]  # results.json summary rows


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    """`farm run` of two models × cpu 1/2 threads, gpu on two virtual phones, output piped."""
    folder = tmp_path_factory.mktemp("reports")
    server = AdbServer(bundled_adb()).start()
    lab = None
    try:
        lab = Lab.start(
            ["pixel_7", "galaxy_a54"],
            engine="model",
            adb_port=server.port,
            adb_path=server.adb_path,
            env=server.env,
            directory=folder / "lab",
        )
        config = {
            "models": [
                str(MODELS / "mobilenet_v1_0.25_128_float.tflite"),
                str(MODELS / "tiny_cnn_cumsum_float.tflite"),
            ],  # fmt: skip
            "delegates": ["cpu", "gpu"],
            "threads": [1, 2],
            "warmup_runs": 1,
            "warmup_min_secs": 0,
            "num_runs": 5,
            "min_secs": 0,
            "max_secs": 10,
            "run_deadline_s": 60,
            "adb_servers": [server.address],
            "output": str(folder / "out"),
        }
        (folder / "farm.yaml").write_text(json.dumps(config))
        summary_md = folder / "step-summary.md"
        summary_md.write_text("earlier step\n")
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1",
               "GITHUB_STEP_SUMMARY": str(summary_md)}  # fmt: skip
        err = folder / "stderr"
        with err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "farm.cli.main", "run", "-c", folder / "farm.yaml"],
                stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            try:
                wait_until(lambda: "] cell 1/" in err.read_text() or proc.poll() is not None,
                           120, "the first cell line")  # fmt: skip
                streamed = proc.poll() is None
                assert proc.wait(180) == 0, err.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        (run_dir,) = (folder / "out").iterdir()
        data = json.loads((run_dir / "results.json").read_text())
        yield LabRun(run_dir, err.read_text(), streamed, summary_md, data["summary"])
    finally:
        if lab is not None:
            lab.down()
        server.stop()


def test_piped_run_prints_a_line_per_cell_as_it_goes(lab_run: LabRun):
    cells = [json.loads(line) for line in (lab_run.run_dir / "results.jsonl").open()]
    cells = [c for c in cells if c["type"] == "cell"]
    lines = [line for line in lab_run.stderr.splitlines() if "] cell " in line]
    assert len(lines) == len(cells) == 12  # 2 phones × 2 models × (cpu 1t, 2t; gpu once)
    assert lab_run.streamed, "no cell line before the run ended"
    for i, line in enumerate(lines, 1):
        assert f"] cell {i}/12 " in line
    for cell in cells:
        words = [cell["serial"], cell["model"], cell["delegate"], f"{cell['threads']}t",
                 cell["status"]]  # fmt: skip
        assert any(all(w in line for w in words) for line in lines), words
    assert "\x1b[" not in lab_run.stderr  # plain text for logs


def test_job_summary_gets_the_markdown_report(lab_run: LabRun):
    text = lab_run.step_summary.read_text()
    assert text.startswith("earlier step\n# farm report")
    assert (lab_run.run_dir / "report.md").read_text().strip() in text
    assert "## Device ranking" in text


def test_junit_of_a_lab_run_is_valid_and_counts_what_failed(lab_run: LabRun):
    path = lab_run.run_dir / "junit.xml"
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(etree.parse(str(path)))
    suites = list(junitparser.JUnitXml.fromfile(str(path)))
    serials = {row["serial"] for row in lab_run.summary}
    assert len(suites) == len(serials) == 2
    assert sum(s.tests for s in suites) == len(lab_run.summary)
    not_ok = [r for r in lab_run.summary if r["status"] in ("failed", "timeout", "error")]
    assert sum(s.failures for s in suites) == len(not_ok)
    times = {(c.classname, c.name): c.time for s in suites for c in s}
    ok = next(r for r in lab_run.summary if r["status"] == "ok")
    assert times[(ok["model"], f"{ok['delegate']} {ok['threads']}t")] > 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright: one launch for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.needs("chromium")
def test_report_html_in_chromium(lab_run: LabRun, browser: Any):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in
            ("error", "warning") else None)  # fmt: skip
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else
            problems.append(f"network request: {r.url}"))  # fmt: skip
    page.goto((lab_run.run_dir / "report.html").as_uri())
    page.wait_for_load_state("load")

    plots = page.locator("svg.plot")
    names = [plots.nth(i).get_attribute("data-plot") for i in range(plots.count())]
    assert names == ["ranking", "m0-lat", "m0-spd", "m0-thr", "m1-lat", "m1-spd", "m1-thr"]
    devices = {row["device"] for row in lab_run.summary}
    assert all(d in plots.first.text_content() for d in devices)
    for i, name in enumerate(names):
        svg = plots.nth(i)
        box = svg.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 100, (name, box)
        # the data marks (bars, dots, lines, heatmap cells) are drawn, with ink
        marks = svg.locator(f'[id^="{name}-data-"]')
        assert marks.count() >= (len(devices) if name == "ranking" else 1), name
        area = [b for b in (marks.nth(k).bounding_box() for k in range(marks.count())) if b]
        assert sum(b["width"] * b["height"] for b in area) > 0, name
        image = Image.open(io.BytesIO(svg.screenshot())).convert("L")
        drawn = sum(1 for v in image.get_flattened_data() if v < 200)
        assert drawn > 0.005 * image.width * image.height, f"{name} looks empty"

    # the first model's table sorts by latency when its header is clicked
    table = page.locator("#model-0 table")
    header = table.locator("th", has_text="latency ms")
    column = [t.inner_text() for t in table.locator("thead th").all()].index("latency ms")
    header.click()
    keys = table.locator(f"tbody tr td:nth-child({column + 1})").evaluate_all(
        "tds => tds.map(td => td.getAttribute('data-v'))"
    )
    numbers = [float(k) for k in keys if k]
    assert numbers == sorted(numbers) and len(numbers) >= 4

    shot = lab_run.run_dir / "report.png"  # kept beside the report, a CI artifact path
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    assert problems == []
    page.close()

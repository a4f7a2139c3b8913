"""Every cell says what really ran: fallbacks on the lab, in the JSON and in the report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from farm.profiles import PROFILE_DIR
from farm.results.journal import load_run
from farm.results.model import Status, Verdict
from farm.sim.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]

MODELS = Path(__file__).resolve().parents[2] / "models"
FLOAT = MODELS / "mobilenet_v1_0.25_128_float.tflite"
INT8 = MODELS / "mobilenet_v1_0.25_128_int8.tflite"
QNN = "/data/local/tmp/libQnnTFLiteDelegate.so"


def lab_profiles(folder: Path) -> Path:
    """A Snapdragon phone without the Hexagon libraries, and a Pixel whose Edge TPU turns a
    float model down without an error (the tool then runs it on the CPU)."""
    folder.mkdir()
    s23 = yaml.safe_load((PROFILE_DIR / "galaxy_s23.yaml").read_text())
    s23["name"] = "s23_no_hexagon"
    s23["sim"]["delegates"]["hexagon"] = None
    pixel = yaml.safe_load((PROFILE_DIR / "pixel_7.yaml").read_text())
    pixel["name"] = "pixel_7_quiet_tpu"
    for acc in pixel["sim"]["delegates"]["nnapi"]["accelerators"]:
        acc.pop("failures", None)
    for data in (s23, pixel):
        (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data))
    return folder


def test_fallbacks_are_marked_with_a_reason_and_never_best(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    start_lab(
        ["s23_no_hexagon", "pixel_7_quiet_tpu"],
        profile_dir=lab_profiles(tmp_path / "profiles"),
        time_scale=0,
    )
    config = run_config(
        models=[str(FLOAT)],
        delegates=[
            "cpu",
            "hexagon",
            {"kind": "external", "name": "qnn", "path": QNN},
            {"kind": "nnapi", "accelerator_name": "google-edgetpu"},
        ],
        threads=[1, 2],
    )
    done = farm_cli("run", "--config", config, "--no-progress")
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    cells = load_run(run_dir).cells
    by = {(c.device.model, c.delegate, c.threads): c for c in cells}
    s23, pixel = "SM-S911B", "Pixel 7"

    # Delegates that ignore threads run once; the CPU gets the sweep.
    assert {(d, t) for m, d, t in by if m == pixel} == {
        ("cpu", 1), ("cpu", 2), ("hexagon", 1), ("external:qnn", 1), ("nnapi:google-edgetpu", 1)
    }  # fmt: skip

    qnn = by[(s23, "external:qnn", 1)]
    assert qnn.status is Status.OK and qnn.verdict is Verdict.NOT_APPLIED and qnn.fallback
    assert qnn.reason == "external:qnn: library did not load — ran on CPU"
    hexagon = by[(s23, "hexagon", 1)]
    assert hexagon.status is Status.OK and hexagon.verdict is Verdict.NOT_APPLIED
    assert hexagon.reason and hexagon.reason.startswith("hexagon: delegate was not applied (")
    tpu = by[(pixel, "nnapi:google-edgetpu", 1)]
    assert tpu.status is Status.OK and tpu.verdict is Verdict.NONE
    assert tpu.reason == "nnapi:google-edgetpu: the delegate took no node — ran on CPU"
    # The Pixel is not a Qualcomm phone: Hexagon is set aside before anything runs.
    assert by[(pixel, "hexagon", 1)].status is Status.UNSUPPORTED
    assert by[(pixel, "cpu", 1)].verdict is None  # no delegate asked for

    # The JSON says so per cell; no fallback is a best configuration or a speed-up.
    report = json.loads((run_dir / "results.json").read_text())
    marked = {(r["device"]["model"], r["delegate"]) for r in report["cells"] if r["marks"]}
    assert all(r["marks"] == ["fallback"] for r in report["cells"] if r["marks"])
    assert marked == {
        (s23, "external:qnn"), (s23, "hexagon"), (pixel, "external:qnn"),
        (pixel, "nnapi:google-edgetpu"),
    }  # fmt: skip
    md = (run_dir / "report.md").read_text()
    best = md.split("## Best configuration per device", 1)[1].split("##", 1)[0]
    assert "cpu" in best
    for label in ("external:qnn", "hexagon", "nnapi:google-edgetpu"):
        assert label not in best
    assert "library did not load — ran on CPU" in md
    summary_rows = [line for line in md.splitlines() if "| external:qnn |" in line]
    assert summary_rows and all("fallback" in line for line in summary_rows)
    assert all("×" not in line.split("|")[7] for line in summary_rows)  # no "vs CPU"


def test_variants_of_one_kind_and_op_profiles_from_a_command_line_flag(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    start_lab(["pixel_7"], time_scale=0)
    config = run_config(
        delegates=[
            "cpu",
            {"kind": "cpu", "xnnpack": False},
            {"kind": "gpu", "label": "gpu-fp16", "precision_loss_allowed": True},
            {"kind": "gpu", "label": "gpu-fp32", "precision_loss_allowed": False},
            {"kind": "nnapi", "accelerator_name": "*"},
        ],
        threads=[1, 2],
        models=[str(INT8)],
    )
    done = farm_cli("run", "--config", config, "--no-progress",
                    "--flag", "enable_op_profiling=true")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    cells = load_run(run_dir).cells
    assert sorted((c.delegate, c.threads) for c in cells) == [
        ("cpu", 1), ("cpu", 2), ("cpu-no-xnnpack", 1), ("cpu-no-xnnpack", 2),
        ("gpu-fp16", 1), ("gpu-fp32", 1), ("nnapi:google-edgetpu", 1),
        ("nnapi:nnapi-reference", 1),
    ]  # fmt: skip
    # the accelerators are the ones the phone's benchmark_model listed, kept in the header
    header = load_run(run_dir).header
    assert header.inventories[cells[0].serial].nnapi_accelerators == (
        "google-edgetpu", "nnapi-reference")  # fmt: skip
    for cell in cells:
        assert cell.status is Status.OK, cell.reason
        assert cell.tool_flags == {"enable_op_profiling": "true"}
        assert cell.command and "--enable_op_profiling=true" in cell.command
        assert cell.binary and cell.binary.source == "device" and cell.binary.abi == "arm64-v8a"
        assert cell.metrics and cell.metrics.op_profile, cell.delegate
    by = {c.delegate: c for c in cells}
    assert "--gpu_precision_loss_allowed=true" in (by["gpu-fp16"].command or "")
    assert "--gpu_precision_loss_allowed=false" in (by["gpu-fp32"].command or "")
    assert "--use_xnnpack=false" in (by["cpu-no-xnnpack"].command or "")
    assert "--nnapi_accelerator_name=google-edgetpu" in (by["nnapi:google-edgetpu"].command or "")
    assert by["gpu-fp16"].verdict is Verdict.FULL
    report = json.loads((run_dir / "results.json").read_text())
    assert all(c["metrics"]["op_profile"] for c in report["cells"])
    md = (run_dir / "report.md").read_text()
    top = md.split("## Top ops", 1)[1]
    assert "gpu-fp16" in top and "TfLiteGpuDelegateV2" in top

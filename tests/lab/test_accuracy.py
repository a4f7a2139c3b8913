"""Accuracy on the lab: each delegate's outputs on fixed inputs against the CPU's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from farm.bench.accuracy import ModelAccuracy, split_outputs
from farm.profiles import PROFILE_DIR
from farm.results.journal import load_run
from farm.results.model import AccuracyStatus, Status
from farm.sim.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]

MODELS = Path(__file__).resolve().parents[2] / "models"
FLOAT = MODELS / "mobilenet_v1_0.25_128_float.tflite"


def wrong_tpu_profile(folder: Path) -> Path:
    """A Pixel whose Edge TPU takes float models and silently computes garbage."""
    folder.mkdir()
    pixel = yaml.safe_load((PROFILE_DIR / "pixel_7.yaml").read_text())
    pixel["name"] = "pixel_7_wrong_tpu"
    tpu = pixel["sim"]["delegates"]["nnapi"]["accelerators"][0]
    tpu.update(takes_float=True, failures=[{"when": "always", "kind": "wrong_results"}])
    (folder / "pixel_7_wrong_tpu.yaml").write_text(yaml.safe_dump(pixel))
    return folder


def test_delegate_outputs_against_the_cpu_and_the_host(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    start_lab(
        ["pixel_7_wrong_tpu"],
        engine="litert",
        profile_dir=wrong_tpu_profile(tmp_path / "profiles"),
        time_scale=0,
    )
    config = run_config(
        models=[str(FLOAT)],
        delegates=[
            "cpu",
            "xnnpack",
            {"kind": "gpu", "label": "gpu-fp16", "precision_loss_allowed": True},
            {"kind": "nnapi", "accelerator_name": "google-edgetpu"},
        ],
        accuracy=True,
    )
    done = farm_cli("run", "--config", config, "--no-progress", "--json")
    assert done.returncode == 0, done.stderr
    run_dir = Path(json.loads(done.stdout)["run_dir"])
    cells = {c.delegate: c for c in load_run(run_dir).cells}
    assert all(c.status is Status.OK for c in cells.values()), cells
    acc = {label: c.accuracy for label, c in cells.items()}
    assert all(a is not None and a.simulated for a in acc.values())

    # The CPU against LiteRT on the host; XNNPACK agrees with the CPU.
    cpu, xnnpack, gpu, tpu = (
        acc["cpu"],
        acc["xnnpack"],
        acc["gpu-fp16"],
        acc["nnapi:google-edgetpu"],
    )
    assert cpu and cpu.status is AccuracyStatus.OK and cpu.reference == "host-litert"
    assert cpu.max_abs is not None and cpu.max_abs <= 1e-6
    assert xnnpack and xnnpack.status is AccuracyStatus.OK and xnnpack.reference == "device-cpu"
    assert xnnpack.max_abs is not None and xnnpack.max_abs <= 1e-6
    # fp16 rounding: a small, nonzero error within the fp16 tolerance.
    assert gpu and gpu.status is AccuracyStatus.OK, gpu and gpu.reason
    assert gpu.max_abs and gpu.max_abs > 0 and gpu.rel is not None
    assert gpu.rel <= gpu.tolerance["max_rel"] and gpu.cosine and gpu.cosine > 0.99
    # wrong_results: flagged with its numbers, marked, never best.
    assert tpu and tpu.status is AccuracyStatus.INACCURATE
    tpu_cell = cells["nnapi:google-edgetpu"]
    assert "inaccurate" in tpu_cell.marks and not tpu_cell.comparable
    assert tpu_cell.reason and "cosine" in tpu_cell.reason
    report = json.loads((run_dir / "results.json").read_text())
    assert {b["delegate"] for b in report["best"]} & {"nnapi:google-edgetpu"} == set()
    (line,) = [c for c in report["cells"] if c["delegate"] == "nnapi:google-edgetpu"]
    assert line["marks"] == ["inaccurate"]
    numbers = line["accuracy"]["tensors"][0]
    assert numbers["cosine"] < 0.5 and numbers["max_abs"] > 0 and numbers["rel"] > 0.05
    md = (run_dir / "report.md").read_text()
    assert "## Accuracy" in md and "inaccurate" in md
    csv = (run_dir / "results.csv").read_text().splitlines()[0]
    assert csv.endswith(
        "accuracy,accuracy_reference,max_abs_error,max_rel_error,cosine,top1_agreement"
    )

    # Inputs and outputs are files in the run folder: the comparison can be done again.
    (manifest,) = (run_dir / "accuracy" / "inputs").glob("*/manifest.json")
    model = ModelAccuracy.from_json(json.loads(manifest.read_text()))
    assert all((run_dir / i.file).is_file() for i in model.inputs)
    assert tpu.output and tpu.reference_output
    (ref,) = split_outputs(model.outputs, (run_dir / tpu.reference_output).read_bytes())
    (out,) = split_outputs(model.outputs, (run_dir / tpu.output).read_bytes())
    assert np.abs(out.astype(float) - ref).max() == pytest.approx(numbers["max_abs"])

    # A second run pushes no input (nor model) again.
    again = farm_cli("run", "--config", config, "--no-progress", "--json", "--delegate", "cpu")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["bytes_pushed"] == 0

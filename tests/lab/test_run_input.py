"""`farm run` with bad input: one clear line, exit 2 (3 for no device), nothing pushed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farm.results.journal import load_run
from farm.sim.lab import Lab

pytestmark = pytest.mark.lab

FLOAT = Path(__file__).resolve().parents[2] / "models" / "mobilenet_v1_0.25_128_float.tflite"


def test_bad_input_is_one_line_exit_2_and_nothing_pushed(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    on_phone: Callable[[Lab, str, str], bool],
    one_error_line: Callable[[str], str],
    tmp_path: Path,
) -> None:
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    config = run_config()

    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(FLOAT.read_bytes()[:4096])
    result = farm_cli("run", "--config", config, "--model", corrupt)
    assert result.returncode == 2
    assert "corrupt.tflite" in one_error_line(result.stderr)

    typo = tmp_path / "typo.yaml"
    typo.write_text(config.read_text().replace('"delegates"', '"delegats"'))
    result = farm_cli("run", "--config", typo)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "typo.yaml:" in line and "delegats" in line

    result = farm_cli("run", "--config", config, "--delegate", "cpu,gpux")
    assert result.returncode == 2
    assert "unknown delegate 'gpux'" in one_error_line(result.stderr)

    result = farm_cli("run", "--config", config, "--serial", "no-such-phone")
    assert result.returncode == 3
    assert "no-such-phone" in one_error_line(result.stderr)

    assert not on_phone(lab, serial, "/data/local/tmp/farm")
    assert not (tmp_path / "out").exists()


@pytest.mark.needs("bubblewrap")  # runs the benchmark stand-in, device paths in shell
def test_hostile_model_name_runs_and_executes_nothing(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    on_phone: Callable[[Lab, str, str], bool],
    tmp_path: Path,
) -> None:
    lab = start_lab(["emulator_x86_64"], time_scale=0)
    serial = lab.phones[0].serial
    odd = tmp_path / "$(touch pwned) a'b `touch pwned2`;.tflite"
    shutil.copy(FLOAT, odd)
    config = run_config(models=[str(odd)])
    result = farm_cli("run", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    data = load_run(json.loads(result.stdout)["run_dir"])
    (cell,) = data.cells
    assert cell.status == "ok", cell.reason
    assert cell.model == odd.stem
    assert (data.run_dir / cell.log).is_file()
    for folder in ("/", "/data/local/tmp", "/data/local/tmp/farm", "/data/local/tmp/farm/logs"):
        for name in ("pwned", "pwned2"):
            assert not on_phone(lab, serial, f"{folder}/{name}")
    assert not any(Path(d, n).exists() for d in (".", tmp_path) for n in ("pwned", "pwned2"))

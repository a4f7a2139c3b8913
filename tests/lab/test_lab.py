"""The lab manager and `farm lab`: start, state folder, faults, kill, down without orphans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from farm.errors import ConfigError, LabError
from farm.sim.lab import Lab, parse_profile_specs
from farm.sim.testing import AdbServer, processes_with, wait_until_gone, wait_until_present

pytestmark = pytest.mark.lab
FARM = [sys.executable, "-m", "farm.cli.main"]


def farm(server: AdbServer, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "FARM_LAB_DIR": "", "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [*FARM, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_profile_specs_expand_counts():
    assert parse_profile_specs(["pixel_7:2", "pixel_7"]) == ["pixel_7"] * 3
    with pytest.raises(ConfigError, match="unknown device profile 'nokia_3310'"):
        parse_profile_specs(["nokia_3310"])
    with pytest.raises(ConfigError, match="count"):
        parse_profile_specs(["pixel_7:many"])


def test_state_folder_lets_another_process_see_and_stop_the_lab(start_lab, tmp_path: Path):
    lab = start_lab(["pixel_7", "pixel_7"])
    # A second process (here: another Lab object from the same folder) sees the same phones.
    seen = Lab.load(lab.dir)
    assert [p.serial for p in seen.phones] == [p.serial for p in lab.phones]
    assert {row["state"] for row in seen.status()} == {"device"}
    assert all(p.port not in range(5554, 5586) for p in lab.phones)
    serial = lab.phones[0].serial
    seen.adb("-s", serial, "shell", "nohup sleep $((9876530+1)) >/dev/null 2>&1 &")
    assert wait_until_present("9876531")
    seen.down()
    assert wait_until_gone("9876531") == []
    assert not any(os.path.exists(f"/proc/{p.pid}") and _alive(p.pid) for p in lab.phones)
    assert serial not in lab.adb_states()
    with pytest.raises(LabError, match="no lab is up"):
        Lab.load(lab.dir)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_killed_phone_goes_offline_and_its_processes_die(start_lab, adb_server):
    lab = start_lab(["pixel_7", "pixel_7"], per_process=True)
    victim, keep = lab.phones
    assert victim.pid != keep.pid
    adb_server.adb("-s", victim.serial, "shell", "nohup sleep $((9876540+1)) >/dev/null 2>&1 &")
    assert wait_until_present("9876541")
    lab.kill(victim.serial)
    lab.wait_state(victim.serial, "offline")
    assert wait_until_gone("9876541") == []
    assert adb_server.adb("-s", keep.serial, "shell", "echo alive").stdout == "alive\n"


def test_kill_refuses_a_shared_process(start_lab):
    lab = start_lab(["pixel_7", "pixel_7"])
    with pytest.raises(LabError, match="one process per phone"):
        lab.kill(lab.phones[0].serial)


def test_farm_lab_cli_up_status_fault_down(adb_server: AdbServer, tmp_path: Path):
    lab_dir = str(tmp_path / "cli-lab")
    up = farm(
        adb_server,
        "lab",
        "up",
        "--profile",
        "pixel_7:2",
        "--adb-port",
        str(adb_server.port),
        "--dir",
        lab_dir,
        "--json",
    )
    try:
        assert up.returncode == 0, up.stderr
        phones = json.loads(up.stdout)
        assert [p["profile"] for p in phones] == ["pixel_7", "pixel_7"]
        assert {p["state"] for p in phones} == {"device"}
        assert {"serial", "profile", "port", "pid"} <= set(phones[0])
        devices = adb_server.adb("devices", "-l").stdout
        assert all(f"{p['serial']}" in devices for p in phones)
        assert "model:Pixel_7" in devices

        status = farm(adb_server, "lab", "status", "--dir", lab_dir)
        assert status.returncode == 0
        assert phones[0]["serial"] in status.stdout and "device" in status.stdout

        serial = phones[1]["serial"]
        fault = farm(adb_server, "lab", "fault", serial, "offline", "seconds=1", "--dir", lab_dir)
        assert fault.returncode == 0, fault.stderr
        Lab.load(Path(lab_dir)).wait_state(serial, "offline")

        bad = farm(adb_server, "lab", "fault", serial, "melt", "--dir", lab_dir)
        assert bad.returncode == 2
        assert bad.stderr.startswith("farm: error: unknown fault 'melt'")
        assert "Traceback" not in bad.stderr
    finally:
        down = farm(adb_server, "lab", "down", "--dir", lab_dir)
    assert down.returncode == 0, down.stderr
    assert "2 phone(s) stopped" in down.stdout
    assert not any(_alive(p["pid"]) for p in phones)
    assert not any(p["serial"] in adb_server.adb("devices").stdout for p in phones)
    assert processes_with(lab_dir) == []


def test_farm_lab_cli_errors_are_one_line(adb_server: AdbServer, tmp_path: Path):
    unknown = farm(adb_server, "lab", "up", "--profile", "nokia_3310", "--dir", str(tmp_path))
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert "unknown device profile 'nokia_3310'" in unknown.stderr
    nothing = farm(adb_server, "lab", "status", "--dir", str(tmp_path / "none"))
    assert nothing.returncode == 1
    assert nothing.stderr.strip() == f"farm: error: no lab is up in {tmp_path / 'none'}"
    bad_fault = farm(
        adb_server, "lab", "up", "--fault", "7:drop", "--dir", str(tmp_path), "--profile", "pixel_7"
    )
    assert bad_fault.returncode == 2 and "no phone 7" in bad_fault.stderr

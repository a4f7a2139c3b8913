"""Phones on the emulator ports, as CI's emulators appear: `emulator-NNNN` serials end to end."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.bench.runner import RunnerOptions
from farm.bench.service import run
from farm.config import load_config
from farm.results.journal import load_run
from farm.sim.fault_matrix import SUITE
from farm.sim.testing import AdbServer, bundled_adb, wait_until
from tests.lab.conftest import LabStarter

pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]
EMULATOR = re.compile(r"^emulator-55([5-7]\d|8[0-4])$")


@pytest.fixture
def scanning_server() -> Iterator[AdbServer]:
    """A private adb server that looks for emulators when it starts, as a developer's does."""
    server = AdbServer(bundled_adb(), emulator_scan=True).start()
    try:
        yield server
    finally:
        server.adb("kill-server")  # a server farm started again is a daemon of its own
        server.stop()


def test_lab_up_emulator_phones_are_emulator_serials_the_server_finds_itself(
    scanning_server: AdbServer, farm_cli: Callable[..., Any], tmp_path: Path
) -> None:
    server, lab_dir = scanning_server, tmp_path / "lab"
    up = farm_cli(
        *("lab", "up", "--emulator", "-p", "pixel_7", "-p", "galaxy_s23", "--json"),
        *("--adb-port", server.port, "--dir", lab_dir),
        env=server.env,
    )
    try:
        assert up.returncode == 0, up.stderr
        serials = [row["serial"] for row in json.loads(up.stdout)]
        assert len(serials) == 2 and all(EMULATOR.match(s) for s in serials), serials
        states = {s: server.adb("-s", s, "get-state").stdout.strip() for s in serials}
        assert states == dict.fromkeys(serials, "device")
        # A new server finds them by scanning the emulator ports, with nobody attaching them.
        server._kill()
        server.start()
        wait_until(
            lambda: all(
                server.adb("-s", s, "get-state").stdout.strip() == "device" for s in serials
            ),
            30,
            "the new adb server to find the phones on the emulator ports",
        )
        model = server.adb("-s", serials[1], "shell", "getprop ro.product.model").stdout
        assert model.strip() == "SM-S911B"
    finally:
        down = farm_cli("lab", "down", "--dir", lab_dir, env=server.env)
        assert down.returncode == 0, down.stderr


def test_run_on_emulator_serials_survives_an_adb_server_restart_and_resumes(
    scanning_server: AdbServer,
    run_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = scanning_server
    start = LabStarter(server, tmp_path)
    try:
        lab = start(["pixel_7", "galaxy_s23"], emulator=True, per_process=True, time_scale=0.2)
        serials = [p.serial for p in lab.phones]
        assert all(EMULATOR.match(s) for s in serials), serials
        for name, value in server.env.items():  # farm's new server keeps to the private HOME
            if name != "PATH":
                monkeypatch.setenv(name, value)
        config = load_config(run_config([server.address], repeats=3, min_secs=1.0))

        # The adb server dies mid-run; farm starts it again and the phones come back.
        seen: list[str] = []

        def kill_server(serial: str, phase: str, cell: Any) -> None:
            if phase == "run":
                seen.append(cell.key)
                if len(seen) == 2:
                    server._kill()

        options = RunnerOptions(
            run_deadline_s=60, on_phase=kill_server, **{**SUITE, "grace_s": 20.0}
        )
        result = run(config=config, progress=False, options=options)
        assert [c.status for c in result.cells] == ["ok"] * 6, [c.reason for c in result.cells]
        assert {c.serial for c in result.cells} == set(serials)
        hit = next(c for c in result.cells if c.key == seen[1])
        assert hit.retries.get("wait", 0) >= 1 and hit.retries.get("rerun", 0) == 0
        assert "started it again" in (result.run_dir / "farm.log").read_text()

        # A phone dies for good mid-run: its cells are lost; back again, --resume finishes them.
        lost = serials[0]

        killed: list[str] = []

        def kill_phone(serial: str, phase: str, cell: Any) -> None:
            if serial == lost and phase == "run" and not killed:
                killed.append(cell.key)
                lab.kill(lost)

        options = RunnerOptions(run_deadline_s=60, on_phase=kill_phone, **{**SUITE, "grace_s": 3.0})
        broken = run(config=config, progress=False, options=options)
        statuses = {c.serial: set() for c in broken.cells}
        for cell in broken.cells:
            statuses[cell.serial].add(cell.status)
        assert statuses[serials[1]] == {"ok"} and "device_lost" in statuses[lost], statuses
        lab.restart(lost)
        resumed = run(resume=broken.run_dir, progress=False, grace_s=20.0)
        assert resumed.exit_code == 0
        cells = load_run(broken.run_dir).cells
        assert sorted(c.status for c in cells) == ["ok"] * 6, [c.reason for c in cells]
    finally:
        start.down()

"""Android's own userland in the virtual phones, by release, and farm's device commands on it.

Each SDK profile (23: Android 6, 24: Android 7.0, 28: Android 9, 34: Android 14) gets one full
`farm run` with a tiny matrix; the commands farm sends that a run does not reach on every
release (the orphan sweep, free space, a host-side hash) are sent here through the real adb
server too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.android import jobs, paths
from farm.android.adb import Device
from farm.android.discovery import get_server
from farm.bench.binaries import BinaryChoice, binary_for
from farm.profiles import get_profile
from farm.results.journal import load_run
from farm.sim.lab import Lab
from farm.sim.phone_os import PhoneOS
from farm.sim.testing import AdbServer, benchmarks_on

pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]

# SDK -> profile.
PROFILES = {
    23: "nexus_5x_android6",
    24: "moto_g5_plus_android7",
    28: "pixel_3_android9",
    34: "pixel_7",
}
DEADLINE_S = 20.0
# A stand-in benchmark: a shell whose command line names benchmark_model, as farm checks.
FAKE_BENCHMARK = "sh -c 'sleep 30; :' benchmark_model"


def _run(phone: PhoneOS, command: str) -> tuple[int, str, str]:
    async def go() -> tuple[int, str, str]:
        proc = await phone.spawn(command)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
        finally:
            if proc.returncode is None:
                phone.kill_group(proc)
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    return asyncio.run(go())


@pytest.fixture
def phone_of(tmp_path: Path) -> Iterator[Callable[..., PhoneOS]]:
    """phone_of(profile name, sdk=None) -> a PhoneOS (sdk: the profile with that SDK level)."""
    made: list[PhoneOS] = []

    def make(name: str, sdk: int | None = None) -> PhoneOS:
        profile = get_profile(name)
        if sdk is not None:
            props = {**profile.props, "ro.build.version.sdk": str(sdk)}
            profile = profile.model_copy(update={"props": props})
        phone = PhoneOS(f"UL{len(made)}{name}"[:40], profile, tmp_path / f"phone{len(made)}")
        assert phone.confined
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.kill_all()


@pytest.mark.parametrize("sdk", sorted(PROFILES))
def test_the_shell_is_mksh_with_toybox_and_no_host_tools(phone_of, sdk: int) -> None:
    phone = phone_of(PROFILES[sdk])
    rc, out, _ = _run(phone, "echo $KSH_VERSION")
    assert rc == 0 and "MIRBSD KSH" in out
    rc, _, err = _run(phone, "ls /usr/bin")
    assert rc != 0 and "No such file or directory" in err
    for gnu in ("sort --version", "sleep infinity", "python3 -c 1", "bash -c true"):
        assert _run(phone, gnu)[0] != 0, gnu
    rc, out, _ = _run(phone, "readlink /system/bin/ls; id -un; echo a b | tr a x")
    assert rc == 0 and out.split() == ["../lib/simtools/toybox", "shell", "x", "b"]
    # What each release has: sha256sum from Android 9, awk beside toybox from Android 9.
    rc, _, _ = _run(phone, "sha256sum /system/build.prop")
    assert (rc == 0) == (sdk >= 28)
    assert (_run(phone, "toybox sha256sum /system/build.prop")[0] == 0) == (sdk >= 28)
    assert (_run(phone, "echo 1 | awk '{print}'")[0] == 0) == (sdk >= 28)
    assert _run(phone, "sha1sum /system/build.prop")[0] == 0


def test_a_release_without_tr_still_stops_an_orphan(phone_of) -> None:
    """Android 5 has no tr: farm reads a pid's command line with cat (a tr pipe reads "")."""
    phone = phone_of("nexus_5x_android6", sdk=21)
    assert _run(phone, "tr a b </dev/null")[0] == 127
    pid_file = f"{paths.LOGS}/orphan.log.pid"
    script = (
        f"mkdir -p {paths.LOGS}; {FAKE_BENCHMARK} </dev/null >/dev/null 2>&1 & "
        f"echo $! >{pid_file}; sleep 0.2; {jobs.stop_pids_script(pid_file, 1.0)}; "
        "sleep 0.2"
    )
    rc, out, err = _run(phone, script)
    assert rc == 0, err
    stopped = out.split("stopped:", 1)[1].split()
    assert len(stopped) == 1 and stopped[0].isdigit(), out
    assert _run(phone, f"kill -0 {stopped[0]}")[0] != 0  # it is gone


# -- through adb ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AdbServer, Lab]]:
    """One phone per SDK profile on an adb server of their own, shared by this module."""
    from farm.sim.testing import bundled_adb

    server = AdbServer(bundled_adb()).start()
    lab = Lab.start(
        list(PROFILES.values()),
        engine="model",
        adb_port=server.port,
        adb_path=server.adb_path,
        env=server.env,
        directory=tmp_path_factory.mktemp("releases"),
    )
    try:
        yield server, lab
    finally:
        lab.down()
        server.stop()


def _device(releases: tuple[AdbServer, Lab], sdk: int) -> tuple[Device, Any]:
    server, lab = releases
    (phone,) = [p for p in lab.phones if p.profile == PROFILES[sdk]]
    return get_server(server.address).device(phone.serial), phone


def test_android6_shell_is_v1_on_a_pty_with_small_payloads(releases) -> None:
    device, _ = _device(releases, 23)
    assert "shell_v2" not in device.features()
    result = device.shell("echo out; echo err >&2; exit 3", timeout=10)
    assert result.exit_code == 3
    assert result.output == "out\r\nerr\r\n"  # one terminal: CR LF, stderr merged


def test_free_space_reads_toybox_and_toolbox_df(releases) -> None:
    for sdk in PROFILES:
        device, _ = _device(releases, sdk)
        text = jobs.free_space(device, timeout=10)
        assert text.endswith("(df)") and "MiB free on" in text, (sdk, text)
        mib = float(text.split()[0])
        # The profile's free space, less what is stored on the phone (rounded by toolbox).
        free_mb = get_profile(PROFILES[sdk]).sim.storage_free_mb
        assert free_mb * 0.95 < mib < free_mb * 1.01, (sdk, text)


def test_own_binary_is_hashed_on_the_host_where_sha256sum_is_missing(releases, caplog) -> None:
    for sdk in PROFILES:
        device, phone = _device(releases, sdk)
        with caplog.at_level(logging.DEBUG, logger="farm.deploy"):
            choice = binary_for(device)
        assert isinstance(choice, BinaryChoice), (sdk, choice)
        content = (Path(phone.root) / "system/bin/benchmark_model").read_bytes()
        assert choice.sha256 == hashlib.sha256(content).hexdigest()
        hashed_on_host = "hashed on the host" in caplog.text
        assert hashed_on_host == (sdk < 28), sdk
        caplog.clear()


@pytest.mark.parametrize("sdk", sorted(PROFILES))
def test_launch_returns_while_the_job_runs_and_kill_stops_it(releases, sdk: int) -> None:
    """On a PTY (Android 6) a detached shell holding the terminal would keep the launch's adb
    shell open until the job ended: the launch must come back with the job still running."""
    device, phone = _device(releases, sdk)
    log = paths.log_path(f"userland-{sdk}.log")
    job = jobs.launch(
        device, FAKE_BENCHMARK, log=log, binary="benchmark_model", timeout=20, grace_s=1
    )
    assert job is not None
    try:
        state = jobs.wait(device, job, chunk_s=0.2, timeout=10)
        assert state.running, "the launch returned only after its job had ended"
        launcher, _ = jobs.launcher_script()
        assert device.stat(launcher) is not None
    finally:
        jobs.kill(device, job, grace_s=1, timeout=10)
    state = jobs.wait(device, job, chunk_s=0.2, timeout=10)
    assert not state.running
    assert jobs.stop_orphans(device, grace_s=1, timeout=10) == []
    assert benchmarks_on(phone.serial) == []


def test_farm_run_passes_on_every_release(
    releases, run_config: Callable[..., Path], farm_cli: Callable[..., Any], tmp_path: Path
) -> None:
    server, lab = releases
    config = run_config([server.address], delegates=["cpu", "gpu", "nnapi"])
    result = farm_cli("run", "--config", config, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    data = load_run(json.loads(result.stdout)["run_dir"])
    by_sdk = {c.device.sdk: c for c in data.cells if c.delegate == "cpu"}
    assert set(by_sdk) == set(PROFILES)
    for sdk, cell in by_sdk.items():
        assert cell.status == "ok", (sdk, cell.reason)
        assert cell.metrics.inference_avg_us > 0
        assert len(cell.binary_sha256) == 64
    # NNAPI is unsupported before Android 8.1 and runs on Android 9 and 14.
    for cell in data.cells:
        if cell.delegate == "nnapi":
            assert (cell.status == "unsupported") == (cell.device.sdk < 27), cell
    # Every shell command farm sent stayed well under the 4 KiB an old adb server allows.
    shells = [
        line for line in (data.run_dir / "farm.log").read_text().splitlines() if "] shell " in line
    ]
    assert any("launch-" in line for line in shells)
    for line in shells:
        assert len(line) < 2048, line[:200]

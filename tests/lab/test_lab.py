"""The lab manager and `farm lab`: start, state folder, faults, kill, down without orphans."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from farm.errors import ConfigError, LabError
from farm.sim.lab import Lab, adb_server_pid, parse_profile_specs, phone_processes
from farm.sim.testing import (
    AdbServer,
    free_port,
    processes_with,
    wait_until_gone,
    wait_until_present,
)

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


@pytest.mark.needs("bubblewrap")  # device paths in shell commands, the sandbox's processes
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


def test_kill_and_restart_refuse_a_shared_process(start_lab):
    lab = start_lab(["pixel_7", "pixel_7"])
    with pytest.raises(LabError, match="one process per phone"):
        lab.kill(lab.phones[0].serial)
    with pytest.raises(LabError, match="one process per phone"):
        lab.restart(lab.phones[0].serial)


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
    assert down.stderr == ""  # everything stopped when asked: nothing had to be killed
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


@pytest.mark.needs("bubblewrap")  # device paths in shell commands, the sandbox's processes
def test_restarted_phone_keeps_port_serial_and_files(start_lab, adb_server):
    lab = start_lab(["pixel_7", "galaxy_a54"], per_process=True)
    victim, keep = lab.phones
    adb_server.adb("-s", victim.serial, "shell", "echo kept > /data/local/tmp/before")
    lab.kill(victim.serial)
    lab.wait_state(victim.serial, "offline")
    back = lab.restart(victim.serial)
    assert (back.serial, back.port, back.profile) == (victim.serial, victim.port, "pixel_7")
    assert back.pid != victim.pid and _alive(back.pid)
    assert [p.serial for p in lab.phones] == [victim.serial, keep.serial]
    assert lab.adb_states()[victim.serial] == "device"
    shell = adb_server.adb("-s", victim.serial, "shell", "cat /data/local/tmp/before")
    assert shell.stdout == "kept\n"
    assert Lab.load(lab.dir).phone(victim.serial).pid == back.pid
    # A phone still running is killed first, as a reboot does.
    again = lab.restart(victim.serial)
    assert again.pid != back.pid and not _alive(back.pid)
    assert adb_server.adb("-s", keep.serial, "shell", "echo alive").stdout == "alive\n"


@pytest.mark.needs("bubblewrap")  # device paths in shell commands, the sandbox's processes
def test_phones_see_the_labs_host_cpu_lock(start_lab, adb_server):
    lab = start_lab(["pixel_7", "galaxy_s23"])
    host_inode = (lab.dir / "cpu.lock").stat().st_ino
    for phone in lab.phones:
        shell = adb_server.adb(
            "-s", phone.serial, "shell", "p=$(cat /data/vendor/farm_sim/cpu_lock); stat -c %i $p"
        )
        assert shell.stdout.strip() == str(host_inode), shell
        denied = adb_server.adb("-s", phone.serial, "shell", "echo x > /data/vendor/farm_cpu.lock")
        assert denied.returncode != 0
    lab.down()
    assert not (lab.dir / "cpu.lock").exists()


def test_farm_lab_cli_profile_dir_and_restart(adb_server: AdbServer, tmp_path: Path):
    from farm.profiles import PROFILE_DIR

    mine = tmp_path / "profiles"
    mine.mkdir()
    source = (PROFILE_DIR / "pixel_7.yaml").read_text()
    (mine / "lab_phone.yaml").write_text(
        source.replace("name: pixel_7", "name: lab_phone", 1).replace(
            "ro.product.model: Pixel 7\n", 'ro.product.model: "Lab [b]Phone[/b]"\n', 1
        )
    )
    lab_dir = str(tmp_path / "cli-lab")
    common = ["--adb-port", str(adb_server.port), "--dir", lab_dir]
    up = farm(
        adb_server, "lab", "up", "-p", "lab_phone", "--profile-dir", str(mine), "--per-process",
        *common, "--json",
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        (phone,) = json.loads(up.stdout)
        assert phone["profile"] == "lab_phone"
        serial = phone["serial"]
        model = adb_server.adb("-s", serial, "shell", "getprop ro.product.model").stdout
        assert model == "Lab [b]Phone[/b]\n"
        Lab.load(Path(lab_dir)).kill(serial)
        restart = farm(adb_server, "lab", "restart", serial, "--dir", lab_dir)
        assert restart.returncode == 0, restart.stderr
        assert restart.stdout.startswith(f"{serial}: restarted")
        model = adb_server.adb("-s", serial, "shell", "getprop ro.product.model").stdout
        assert model == "Lab [b]Phone[/b]\n"
        missing = farm(adb_server, "lab", "restart", "127.0.0.1:1", "--dir", lab_dir)
        assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
        unknown = farm(adb_server, "lab", "up", "-p", "pixel_7", "--profile-dir", str(mine),
                       "--dir", str(tmp_path / "other"))  # fmt: skip
        assert unknown.returncode == 2 and "unknown device profile 'pixel_7'" in unknown.stderr
        absent = farm(adb_server, "lab", "up", "--profile-dir", str(tmp_path / "nope"),
                      "--dir", str(tmp_path / "other"))  # fmt: skip
        assert absent.returncode == 2 and "no such folder" in absent.stderr
    finally:
        down = farm(adb_server, "lab", "down", "--dir", lab_dir)
    assert down.returncode == 0, down.stderr
    assert processes_with(lab_dir) == []


CHILD = """
import sys, time
from pathlib import Path
from farm.sim.lab import Lab
from farm.sim.testing import AdbServer, bundled_adb
server = AdbServer(bundled_adb(), home=Path(sys.argv[1]) / "adb").start()
lab = Lab.start(["pixel_7"], per_process=True, adb_port=server.port, adb_path=server.adb_path,
                env=server.env, directory=Path(sys.argv[1]) / "lab")
print(server._proc.pid, *(h.pid for h in lab.hosts), flush=True)
time.sleep(600)
"""


def test_adb_server_and_lab_hosts_die_with_a_killed_parent(tmp_path: Path):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        pids = [int(p) for p in child.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        child.kill()  # SIGKILL: no cleanup code of the child runs
        child.wait()
    assert wait_until_gone(str(tmp_path / "lab")) == []
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _phone_pids(serial: str) -> dict[int, str]:
    """Live host processes of a phone (its environment names it): pid -> command line."""
    needle = f"FARM_SIM_SERIAL={serial}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not _alive(int(entry)):
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if needle in environ:
            found[int(entry)] = cmdline.decode(errors="replace")
    return found


@pytest.mark.needs("bubblewrap")  # device paths in shell commands, the sandbox's processes
def test_reboots_during_detached_jobs_leave_no_sandbox_after_down(start_lab, adb_server):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    seen: dict[int, str] = {}

    def detach_job(number: int) -> None:
        # A job still between `&` and its nohup when the stream closes dies with the shell:
        # the shell waits a little, and the job is started again if it did not make it.
        deadline = time.monotonic() + 30
        while str(9876700 + number) not in " ".join(_phone_pids(serial).values()):
            assert time.monotonic() < deadline
            command = f"nohup sleep {9876700 + number} >/dev/null 2>&1 & sleep 0.2"
            lab.adb("-s", serial, "shell", command)
            wait_until_present(str(9876700 + number), timeout=2)
        seen.update(_phone_pids(serial))

    for number in range(3):
        detach_job(number)
        # Shells racing the reboot: some start before it, some in the sandbox it leaves.
        shells = [
            subprocess.Popen(
                [lab.adb_path, "-P", str(lab.adb_port), "-s", serial, "shell", "sleep 30"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(3)
        ]
        lab.fault(serial, "reboot", seconds=0.5)
        for proc in shells:
            proc.kill()
            proc.wait()
        lab.wait_state(serial, "device")
    detach_job(3)
    assert any("bwrap" in cmd for cmd in seen.values())  # the sandbox's init carries the name
    lab.down()
    deadline = time.monotonic() + 10
    while (left := _phone_pids(serial)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == {}


def test_end_phone_processes_ends_only_the_named_phones():
    from farm.sim.lab import end_phone_processes, phone_processes

    def start(serial: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "FARM_SIM_SERIAL": serial}
        # A shell with a child: the child is found by its inherited environment too.
        return subprocess.Popen(["sh", "-c", "sleep 600 & wait"], env=env, start_new_session=True)

    mine = [start(f"127.0.0.1:{os.getpid()}1"), start(f"127.0.0.1:{os.getpid()}2")]
    other = start(f"127.0.0.1:{os.getpid()}3")
    serials = {f"127.0.0.1:{os.getpid()}1", f"127.0.0.1:{os.getpid()}2"}
    try:
        deadline = time.monotonic() + 10
        while len(phone_processes(serials)) < 4:  # two shells and their sleeps
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert end_phone_processes(serials, timeout=10) == []
        assert phone_processes(serials) == []
        for proc in mine:
            assert proc.wait(10) == -9
        assert other.poll() is None
        assert end_phone_processes(set()) == []
    finally:
        for proc in [*mine, other]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()


def test_down_returns_once_every_process_is_gone_and_says_what_it_killed(
    adb_server: AdbServer, tmp_path: Path
):
    """Processes of the lab that do not stop when asked (a lab host and the adb server the lab
    started, stopped here with SIGSTOP as hung ones would be) are killed with SIGKILL, and down
    says so. When down returns no process of the lab is left, so `down` then `up` on the same
    adb port and folder works at once."""
    port = free_port()
    env = {**adb_server.env, "ANDROID_ADB_SERVER_PORT": str(port)}

    def start() -> Lab:  # on a port where no adb server runs: the lab starts one
        return Lab.start(
            ["pixel_7", "pixel_7"],
            per_process=True,
            adb_port=port,
            adb_path=adb_server.adb_path,
            env=env,
            directory=tmp_path / "lab",
        )

    lab = start()
    assert lab.started_adb_server and adb_server_pid(port) == lab.adb_server_pid > 0
    serials = {p.serial for p in lab.phones}
    marker = f"98{port}"  # this test's own: processes of other runs on the host do not count
    for phone in lab.phones:
        lab.adb("-s", phone.serial, "shell", f"nohup sleep {marker} >/dev/null 2>&1 &")
    assert len(wait_until_present(marker)) == 2
    stuck = [lab.hosts[0].pid, lab.adb_server_pid]
    for pid in stuck:
        os.kill(pid, signal.SIGSTOP)
    try:
        said = lab.down(timeout=1)
    finally:
        for pid in stuck:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Right away, without waiting: nothing of the lab runs.
    assert [pid for pid in stuck if _alive(pid)] == []
    assert processes_with(str(tmp_path / "lab")) == []
    assert phone_processes(serials) == []
    assert processes_with(marker) == []
    assert adb_server_pid(port) == 0
    assert len(said) == 2, said
    assert f"lab host(s) {stuck[0]} did not stop" in said[0] and "SIGKILL" in said[0]
    assert f"adb server {stuck[1]} (port {port})" in said[1] and "SIGKILL" in said[1]
    again = start()
    try:
        assert again.started_adb_server
        assert {row["state"] for row in again.status()} == {"device"}
    finally:
        assert again.down() == []  # a lab that stops when asked: nothing to say
    assert processes_with(str(tmp_path / "lab")) == [] and adb_server_pid(port) == 0

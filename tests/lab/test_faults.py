"""Each fault kind, and what the real adb CLI and adbutils report when a phone shows it."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import adbutils
import pytest

from farm.errors import ConfigError
from farm.sim.faults import parse_fault, parse_size
from farm.sim.testing import random_file, sha256, wait_until_gone

pytestmark = pytest.mark.lab
MODEL = Path(__file__).resolve().parents[2] / "models" / "mobilenet_v1_0.25_128_float.tflite"


def test_unauthorized_from_start_then_cleared(start_lab, adb_server):
    lab = start_lab(["pixel_7"], faults={0: [("unauthorized", {})]})
    serial = lab.phones[0].serial
    assert lab.adb_states()[serial] == "unauthorized"
    result = adb_server.adb("-s", serial, "shell", "echo hi")
    assert result.returncode == 1
    assert "device unauthorized" in result.stderr
    client = adb_server.client()
    assert serial not in [d.serial for d in client.device_list()]  # adbutils skips it
    with pytest.raises(adbutils.AdbError, match="unauthorized"):
        client.device(serial).shell("echo hi")
    lab.fault(serial, "clear")
    lab.wait_state(serial, "device")
    assert client.device(serial).shell("echo hi") == "hi"


def test_unauthorized_while_running(start_lab, adb_server):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    client = adb_server.client()
    assert client.device(serial).shell("echo hi") == "hi"  # allowed, until now
    lab.fault(serial, "unauthorized")
    lab.wait_state(serial, "unauthorized")
    # What adb sees: the phone listed as unauthorized, every command refused.
    listed = adb_server.adb("devices").stdout.splitlines()
    assert f"{serial}\tunauthorized" in listed, listed
    result = adb_server.adb("-s", serial, "shell", "echo hi")
    assert result.returncode == 1 and "device unauthorized" in result.stderr
    assert serial not in [d.serial for d in client.device_list()]  # adbutils skips it
    with pytest.raises(adbutils.AdbError, match="unauthorized"):
        client.device(serial).shell("echo hi")


def test_drop_ends_a_running_shell_and_the_phone_comes_back(start_lab, adb_server):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    shell = subprocess.Popen(
        [
            adb_server.adb_path,
            "-P",
            str(adb_server.port),
            "-s",
            serial,
            "shell",
            "echo up; sleep 60",
        ],
        stdout=subprocess.PIPE,
        env=adb_server.env,
    )
    assert shell.stdout is not None and shell.stdout.readline() == b"up\n"
    lab.fault(serial, "drop")
    assert shell.wait(timeout=30) != 0  # adb 36 exits 255 when the device goes away
    lab.wait_state(serial, "device")
    assert adb_server.adb("-s", serial, "shell", "echo again").stdout == "again\n"
    # adbutils' v1 shell stream just ends: the partial output, and no error.
    conn = adb_server.client().device(serial).shell("echo up; sleep 60", stream=True)
    assert conn.read(3) == b"up\n"
    lab.fault(serial, "drop")
    assert conn.read_until_close() == ""
    conn.close()
    lab.wait_state(serial, "device")


def test_die_after_bytes_fails_push_in_adb_and_adbutils(start_lab, adb_server, tmp_path: Path):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    src = random_file(tmp_path / "f.bin", 4 * 1024 * 1024)
    lab.fault(serial, "die_after", bytes="1M")
    push = adb_server.adb("-s", serial, "push", str(src), "/data/local/tmp/f.bin")
    assert push.returncode == 1
    assert "adb: error:" in push.stderr
    lab.wait_state(serial, "device")
    lab.fault(serial, "die_after", bytes="1M")
    with pytest.raises(adbutils.AdbError):
        adb_server.client().device(serial).sync.push(str(src), "/data/local/tmp/f.bin")
    lab.wait_state(serial, "device")
    # Nothing half-written is left under the final name, and a clean push then works.
    stat = adb_server.client().device(serial).sync.stat("/data/local/tmp/f.bin")
    assert stat.size == 0
    assert adb_server.adb("-s", serial, "push", str(src), "/data/local/tmp/f.bin").returncode == 0


def test_die_after_bytes_fails_pull(start_lab, adb_server, tmp_path: Path):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    src = random_file(tmp_path / "f.bin", 4 * 1024 * 1024)
    assert adb_server.adb("-s", serial, "push", str(src), "/data/local/tmp/f.bin").returncode == 0
    lab.fault(serial, "die_after", bytes="1M", offline=1)
    pull = adb_server.adb("-s", serial, "pull", "/data/local/tmp/f.bin", str(tmp_path / "back"))
    assert pull.returncode == 1
    lab.wait_state(serial, "device")
    pull = adb_server.adb("-s", serial, "pull", "/data/local/tmp/f.bin", str(tmp_path / "back"))
    assert pull.returncode == 0 and sha256(tmp_path / "back") == sha256(src)


def test_hang_blocks_callers_until_cleared(start_lab, adb_server):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    lab.fault(serial, "hang")
    with pytest.raises(subprocess.TimeoutExpired):
        adb_server.adb("-s", serial, "shell", "echo hi", timeout=2)
    # adbutils has no total deadline: its call stays blocked while the phone hangs...
    answers: list[str] = []
    worker = threading.Thread(
        target=lambda: answers.append(adb_server.client().device(serial).shell("echo late")),
        daemon=True,
    )
    worker.start()
    worker.join(1.0)
    assert worker.is_alive() and answers == []
    assert lab.adb_states()[serial] == "device"  # the server does not notice a hung phone
    # ...and completes once the phone answers again.
    lab.fault(serial, "clear")
    worker.join(30)
    assert answers == ["late"]


def test_offline_then_back(start_lab, adb_server):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    lab.fault(serial, "offline", seconds=1)
    lab.wait_state(serial, "offline", timeout=10)
    with pytest.raises(adbutils.AdbError, match="offline"):
        adb_server.client().device(serial).shell("echo hi")
    result = adb_server.adb("-s", serial, "shell", "echo hi")
    assert result.returncode == 1 and "offline" in result.stderr
    lab.wait_state(serial, "device", timeout=30)


@pytest.mark.parametrize("how", ["adb", "fault"])
def test_reboot_kills_processes_and_comes_back(start_lab, adb_server, how):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    started = adb_server.adb(
        "-s", serial, "shell", "nohup sleep $((9876520+1)) >/dev/null 2>&1 & echo $!"
    )
    assert started.returncode == 0
    if how == "adb":
        assert adb_server.adb("-s", serial, "reboot").returncode == 0
    else:
        lab.fault(serial, "reboot", seconds=1)
    assert wait_until_gone("9876521") == []
    # The server may still call the phone a device for a moment after the link went down:
    # a command in that moment meets the cut link, a later one the phone that came back.
    deadline = time.monotonic() + 30
    while adb_server.adb("-s", serial, "wait-for-device", "shell", "echo up").stdout != "up\n":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    lab.wait_state(serial, "device", timeout=30)


def test_disk_full_fails_push_as_adbd_says(start_lab, adb_server, tmp_path: Path):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    src = random_file(tmp_path / "f.bin", 2 * 1024 * 1024)
    lab.fault(serial, "disk_full", free="1M")
    push = adb_server.adb("-s", serial, "push", str(src), "/data/local/tmp/f.bin")
    assert push.returncode == 1
    assert "remote write failed: No space left on device" in push.stderr
    with pytest.raises(adbutils.AdbError):
        adb_server.client().device(serial).sync.push(str(src), "/data/local/tmp/f.bin")
    small = random_file(tmp_path / "small.bin", 1000)
    assert adb_server.adb("-s", serial, "push", str(small), "/data/local/tmp/s").returncode == 0
    lab.fault(serial, "clear")
    assert adb_server.adb("-s", serial, "push", str(src), "/data/local/tmp/f.bin").returncode == 0


def test_slow_link_caps_push_bandwidth(start_lab, adb_server, tmp_path: Path):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    size, rate = 512 * 1024, 256 * 1024
    src = random_file(tmp_path / "f.bin", size)
    lab.fault(serial, "slow", rate=rate)
    started = time.monotonic()
    push = adb_server.adb("-s", serial, "push", str(src), "/data/local/tmp/f.bin")
    elapsed = time.monotonic() - started
    assert push.returncode == 0
    # A lower bound only: a capped link cannot move the file faster than size/rate.
    assert elapsed >= 0.9 * size / rate


@pytest.mark.needs("bubblewrap")  # runs the benchmark stand-in, device paths in shell
def test_benchmark_crash_kills_the_benchmark_with_the_signal(start_lab, adb_server):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    lab.fault(serial, "benchmark_crash", signal=11)
    binary = adb_server.adb("-s", serial, "shell", "getprop debug.farm.benchmark_model").stdout
    binary = binary.strip()
    assert binary, "the phone names no benchmark binary (debug.farm.benchmark_model)"
    assert (
        adb_server.adb("-s", serial, "push", str(MODEL), "/data/local/tmp/m.tflite").returncode == 0
    )
    result = adb_server.adb(
        "-s", serial, "shell", binary, "--graph=/data/local/tmp/m.tflite", "--num_runs=2"
    )
    assert result.returncode == 128 + 11
    lab.fault(serial, "clear")
    result = adb_server.adb(
        "-s", serial, "shell", binary, "--graph=/data/local/tmp/m.tflite", "--num_runs=2"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_fault_options_are_checked():
    assert parse_fault("die_after", {"bytes": "2M"}) == {"bytes": 2 * 1024 * 1024, "offline": 0.0}
    assert parse_size("64K") == 65536 and parse_size(10) == 10
    with pytest.raises(ConfigError, match="unknown fault 'melt'"):
        parse_fault("melt", {})
    with pytest.raises(ConfigError, match="required"):
        parse_fault("slow", {})
    with pytest.raises(ConfigError, match="unknown option 'color'"):
        parse_fault("drop", {"color": "red"})
    with pytest.raises(ConfigError, match="bad value for seconds"):
        parse_fault("offline", {"seconds": "soon"})


def test_unknown_fault_is_refused_before_reaching_the_phone(start_lab):
    lab = start_lab(["pixel_7"])
    with pytest.raises(ConfigError):
        lab.fault(lab.phones[0].serial, "explode")


def test_disk_full_push_names_the_reason_and_df_agrees(start_lab_any, adb_server_any, tmp_path):
    from farm.android.discovery import get_server
    from farm.errors import DeviceStorageFull

    lab = start_lab_any(["pixel_7"])
    serial = lab.phones[0].serial
    device = get_server(f"127.0.0.1:{adb_server_any.port}").device(serial)
    src = random_file(tmp_path / "f.bin", 3 * 1024 * 1024)
    lab.fault(serial, "disk_full", free="1M")
    with pytest.raises(DeviceStorageFull) as caught:
        device.push(src, "/data/local/tmp/f.bin", timeout=30)
    assert caught.value.serial == serial
    assert "write failed: No space left on device" in str(caught.value)
    # The phone's own df tells the same story as the failed write.
    df = device.shell("df /data", timeout=10).output.splitlines()[-1].split()
    assert int(df[3]) <= 1024
    lab.fault(serial, "clear")
    assert device.push(src, "/data/local/tmp/f.bin", timeout=30) == 3 * 1024 * 1024
    df = device.shell("df /data", timeout=10).output.splitlines()[-1].split()
    assert int(df[3]) > 1024

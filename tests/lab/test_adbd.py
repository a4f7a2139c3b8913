"""The device side of the ADB protocol, through the real adb CLI (36 and 29) and adbutils."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from farm.profiles import get_profile
from farm.sim.adbd import banner, exit_status
from farm.sim.testing import (
    processes_with,
    random_file,
    sha256,
    wait_until,
    wait_until_gone,
    wait_until_present,
)

pytestmark = pytest.mark.lab


def test_adb_lists_phones_as_devices_with_model_names(start_lab_any, adb_server_any):
    lab = start_lab_any(["pixel_7", "pixel_7"])
    out = adb_server_any.adb("devices", "-l").stdout
    for phone in lab.phones:
        line = next(line for line in out.splitlines() if line.startswith(phone.serial))
        assert line.split()[1] == "device"
        assert "model:Pixel_7" in line
        assert "product:panther" in line
    serial = lab.phones[0].serial
    result = adb_server_any.adb("-s", serial, "shell", "getprop", "ro.product.model")
    assert result.stdout.strip() == get_profile("pixel_7").model


def test_shell_exit_codes_and_streams(start_lab_any, adb_server_any):
    serial = start_lab_any(["pixel_7"]).phones[0].serial
    assert adb_server_any.adb("-s", serial, "shell", "exit 7").returncode == 7
    result = adb_server_any.adb("-s", serial, "shell", "echo out; echo err >&2; exit 3")
    assert (result.stdout, result.stderr, result.returncode) == ("out\n", "err\n", 3)
    # A command killed by a signal exits 128+signal.
    assert adb_server_any.adb("-s", serial, "shell", "kill -9 $$").returncode == 137


def test_shell_v2_passes_stdin(start_lab, adb_server):
    serial = start_lab(["pixel_7"]).phones[0].serial
    result = subprocess.run(
        [adb_server.adb_path, "-P", str(adb_server.port), "-s", serial, "shell", "tr a-z A-Z"],
        input="hello phone\n",
        capture_output=True,
        text=True,
        timeout=30,
        env=adb_server.env,
    )
    assert result.stdout == "HELLO PHONE\n"


def test_push_pull_20mb_round_trip(start_lab_any, adb_server_any, tmp_path: Path):
    serial = start_lab_any(["pixel_7"]).phones[0].serial
    src = random_file(tmp_path / "big.bin", 20 * 1024 * 1024)
    push = adb_server_any.adb("-s", serial, "push", str(src), "/data/local/tmp/sub/big.bin")
    assert push.returncode == 0, push.stderr
    listing = adb_server_any.adb("-s", serial, "ls", "/data/local/tmp/sub")
    assert "big.bin" in listing.stdout
    back = tmp_path / "back.bin"
    pull = adb_server_any.adb("-s", serial, "pull", "/data/local/tmp/sub/big.bin", str(back))
    assert pull.returncode == 0, pull.stderr
    assert sha256(back) == sha256(src)


def test_pull_of_missing_file_and_push_outside_sandbox_fail(
    start_lab_any, adb_server_any, tmp_path: Path
):
    serial = start_lab_any(["pixel_7"]).phones[0].serial
    pull = adb_server_any.adb("-s", serial, "pull", "/data/local/tmp/nope", str(tmp_path / "x"))
    assert pull.returncode == 1
    assert "No such file or directory" in pull.stdout + pull.stderr  # adb 29 says it on stdout
    src = random_file(tmp_path / "small.bin", 1000)
    push = adb_server_any.adb("-s", serial, "push", str(src), "/system/bin/evil")
    assert push.returncode == 1
    said = push.stdout + push.stderr
    assert "couldn't create file" in said or "Permission denied" in said


def test_adbutils_sync_shell_and_stat(start_lab, adb_server, tmp_path: Path):
    serial = start_lab(["pixel_7"]).phones[0].serial
    device = adb_server.client().device(serial)
    src = random_file(tmp_path / "big.bin", 20 * 1024 * 1024)
    device.sync.push(str(src), "/data/local/tmp/a/big.bin")
    info = device.sync.stat("/data/local/tmp/a/big.bin")
    assert info.size == src.stat().st_size
    names = [entry.path for entry in device.sync.list("/data/local/tmp/a")]
    assert "big.bin" in names
    back = tmp_path / "back.bin"
    device.sync.pull("/data/local/tmp/a/big.bin", str(back))
    assert sha256(back) == sha256(src)
    assert device.shell("getprop ro.product.model").strip() == "Pixel 7"
    result = device.shell2("echo hi; exit 5", v2=True)
    assert (result.output, result.returncode) == ("hi\n", 5)
    assert device.prop.model == "Pixel 7"


def test_closed_v2_shell_stream_hangs_up_the_shell_only(start_lab, adb_server, on_phone):
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    marker = "9876511"  # the command computes it, so only the sleep carries it
    client = subprocess.Popen(
        [
            adb_server.adb_path,
            *("-P", str(adb_server.port), "-s", serial, "shell"),
            "trap 'echo hup > /data/local/tmp/hup; exit 3' HUP; sleep $((9876510+1)) & wait",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=adb_server.env,
    )
    try:
        assert len(wait_until_present(marker)) == 1
    finally:
        client.kill()
        client.wait()
    # adbd sends SIGHUP to the shell, as a real one does; what the shell started lives on.
    wait_until(lambda: on_phone(lab, serial, "/data/local/tmp/hup"), 10, "the shell's HUP trap")
    assert len(processes_with(marker)) == 1
    lab.fault(serial, "reboot", seconds=0.5)  # a reboot ends it
    assert wait_until_gone(marker) == []


def test_exec_out_is_raw(start_lab, adb_server):
    serial = start_lab(["pixel_7"]).phones[0].serial
    result = subprocess.run(
        [
            adb_server.adb_path,
            "-P",
            str(adb_server.port),
            "-s",
            serial,
            "exec-out",
            "printf 'a\\0b'",
        ],
        capture_output=True,
        timeout=30,
        env=adb_server.env,
    )
    assert result.stdout == b"a\0b"


@pytest.mark.needs("bubblewrap")  # the sandbox is what keeps host files out of reach
def test_host_files_stay_out_of_reach_through_adb(start_lab, adb_server, tmp_path: Path):
    serial = start_lab(["pixel_7"]).phones[0].serial
    repo_file = Path(__file__).resolve().parents[2] / "pyproject.toml"
    result = adb_server.adb(
        "-s", serial, "shell", f"cat /etc/passwd {repo_file}; echo x > {repo_file.parent}/pwned"
    )
    assert result.returncode != 0
    # /etc/passwd is the phone's own (root and shell at /), never the host's
    assert ":/root:" not in result.stdout and "[project]" not in result.stdout
    assert not (repo_file.parent / "pwned").exists()
    pull = adb_server.adb("-s", serial, "pull", str(repo_file), str(tmp_path / "got"))
    assert pull.returncode == 1 and not (tmp_path / "got").exists()
    host_passwd = Path("/etc/passwd").read_bytes()
    adb_server.adb("-s", serial, "pull", "/etc/passwd", str(tmp_path / "passwd"))
    assert not (tmp_path / "passwd").exists() or (tmp_path / "passwd").read_bytes() != host_passwd


@pytest.mark.needs("bubblewrap")  # runs the benchmark stand-in, device paths in shell
def test_stand_in_runs_through_adb_shell(start_lab, adb_server):
    serial = start_lab(["pixel_7"]).phones[0].serial
    binary = adb_server.adb("-s", serial, "shell", "getprop debug.farm.benchmark_model").stdout
    assert binary.strip(), "the phone names no benchmark binary (debug.farm.benchmark_model)"
    model = Path(__file__).resolve().parents[2] / "models" / "tiny_cnn_cumsum_float.tflite"
    assert (
        adb_server.adb("-s", serial, "push", str(model), "/data/local/tmp/t.tflite").returncode == 0
    )
    result = adb_server.adb(
        "-s",
        serial,
        "shell",
        binary.strip(),
        "--graph=/data/local/tmp/t.tflite",
        "--use_gpu=true",
        "--num_runs=3",
        "--warmup_runs=1",
        "--min_secs=0",
        "--warmup_min_secs=0",
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "Inference timings in us: Init:" in output
    # CUMSUM is outside the Pixel 7 GPU op set: the delegate takes only part of the graph.
    assert re.search(r"Replacing \d+ out of \d+ node\(s\) with delegate .* \d+ partitions", output)


def test_banner_and_exit_status():
    pixel = get_profile("pixel_7")
    features = ["shell_v2", "delayed_ack", "stat_v2", "sendrecv_v2"]
    profile = pixel.model_copy(update={"sim": pixel.sim.model_copy(update={"features": features})})
    text = banner(profile).decode()
    assert text.startswith("device::ro.product.name=panther;ro.product.model=Pixel 7;")
    assert text.endswith("features=shell_v2,stat_v2")  # never what adbd here cannot do
    assert [exit_status(rc) for rc in (0, 7, -9, -11, None)] == [0, 7, 137, 139, 255]

"""The adb choke point and deploy through the real adb server to virtual phones."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from farm.android import paths
from farm.android.adb import Device, ShellResult, join_command
from farm.android.discovery import discover, get_server
from farm.bench.binaries import EM_AARCH64, BinaryCache, BinaryChoice, Unsupported, binary_for
from farm.bench.deploy import ensure_model, sha256_file
from farm.errors import (
    DeviceCommandFailed,
    DeviceStorageFull,
    DeviceTimeout,
    DeviceUnavailable,
    InputError,
    RemoteFileMissing,
)
from farm.sim.lab import Lab
from farm.sim.testing import AdbServer
from tests.elf_builds import ANDROID_BUILDS, make_elf

pytestmark = pytest.mark.lab

NASTY = "$(touch /data/local/tmp/pwned) a'b.tflite"
NASTY_FILE = "$(touch pwned) a'b.tflite"  # the same trick as a plain file name


@pytest.fixture
def phone(adb_server: AdbServer, start_lab: Callable[..., Lab]) -> tuple[Device, Lab]:
    """A phone of its own, for tests that inject faults or change its properties."""
    lab = start_lab(["pixel_7"])
    (p,) = lab.phones
    return get_server(adb_server.address).device(p.serial), lab


@pytest.fixture
def shared(shared_pixel: tuple[AdbServer, Lab]) -> tuple[Device, Lab]:
    """A fresh handle on a phone the tests of this module share (they leave it as it was)."""
    server, lab = shared_pixel
    return get_server(server.address).device(lab.phones[0].serial), lab


def test_shell_exit_codes_and_output(shared) -> None:
    device, _ = shared
    result = device.shell("echo out; echo err >&2; exit 7", timeout=10)
    assert result.exit_code == 7 and not result.ok
    assert sorted(result.output.split()) == ["err", "out"]
    assert device.shell("true", timeout=10).ok
    with pytest.raises(DeviceCommandFailed) as err:
        device.shell("echo nope; exit 3", timeout=10, check=True)
    assert (err.value.rc, err.value.serial, err.value.command) == (
        3,
        device.serial,
        "echo nope; exit 3",
    )
    assert "exit code 3: nope" in str(err.value)


def test_quoted_arguments_execute_nothing(shared) -> None:
    device, _ = shared
    out = device.shell(join_command(["printf", "%s|", NASTY, "`id`", "a;b"]), timeout=10)
    assert out.output == f"{NASTY}|`id`|a;b|"
    assert device.stat("/data/local/tmp/pwned") is None


def test_total_deadline_beats_trickling_output(shared) -> None:
    device, _ = shared
    start = time.monotonic()
    with pytest.raises(DeviceTimeout) as err:
        # Output every 0.2 s keeps an idle timeout happy; only a total deadline stops this.
        device.shell(
            "for i in $(seq 1 100); do echo $i; sleep 0.2; done; sleep 29.617", timeout=1.5
        )
    assert time.monotonic() - start < 10  # a generous ceiling against a hang, not a speed test
    assert err.value.serial == device.serial and "deadline" in str(err.value)
    # The device side was stopped with the stream, and the device still answers.
    for _ in range(50):
        ps = device.shell("ps -A -o args 2>/dev/null || ps -o args", timeout=10).output
        if "29.6" not in ps and "seq 1 100" not in ps:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"device process left running:\n{ps}")


def test_push_stat_pull_and_missing_files(shared, tmp_path: Path) -> None:
    device, _ = shared
    data = os.urandom(200_000) + b"end"
    remote = "/data/local/tmp/farm/test/blob.bin"
    assert device.stat(remote) is None
    assert device.push(data, remote, timeout=30) == len(data)
    st = device.stat(remote)
    assert st is not None and st.is_file and st.size == len(data)
    assert device.stat("/data/local/tmp").is_dir
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    back = pulled / "back.bin"
    assert device.pull(remote, back, timeout=30) == len(data)
    assert back.read_bytes() == data
    assert device.read_bytes(remote, timeout=30) == data
    missing = pulled / "missing.bin"
    with pytest.raises(RemoteFileMissing, match="No such file"):  # a DeviceCommandFailed
        device.pull("/data/local/tmp/farm/none.log", missing, timeout=10)
    with pytest.raises(RemoteFileMissing):
        device.read_bytes("/data/local/tmp/farm/none.log", timeout=10)
    assert not missing.exists() and list(pulled.iterdir()) == [back]  # no folder, no partial


def test_ensure_model_is_content_addressed(shared, tmp_path: Path) -> None:
    device, _ = shared
    model = tmp_path / NASTY_FILE
    model.write_bytes(os.urandom(150_000))
    sha = sha256_file(model)
    assert sha == hashlib.sha256(model.read_bytes()).hexdigest()
    first = ensure_model(device, model, sha)
    assert first == (paths.model_path(sha), model.stat().st_size)
    assert ensure_model(device, model, sha) == (paths.model_path(sha), 0)
    assert device.bytes_pushed == model.stat().st_size
    assert device.read_bytes(first.remote_path, timeout=30) == model.read_bytes()
    assert device.stat("/data/local/tmp/pwned") is None
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_interrupted_push_is_pushed_again(phone, tmp_path: Path) -> None:
    device, lab = phone
    model = tmp_path / "m.tflite"
    model.write_bytes(os.urandom(600_000))
    sha = sha256_file(model)
    lab.fault(device.serial, "die_after", bytes=200_000)
    with pytest.raises(DeviceUnavailable) as err:
        ensure_model(device, model, sha)
    assert err.value.serial == device.serial
    for _ in range(100):  # the server re-attaches the phone by itself
        try:
            if device.state(timeout=2) == "device":
                break
        except DeviceUnavailable:
            pass
        time.sleep(0.1)
    deployed = ensure_model(device, model, sha)
    assert deployed.pushed_bytes == 600_000
    assert device.read_bytes(deployed.remote_path, timeout=30) == model.read_bytes()


def test_disk_full_and_hang_are_typed(phone, tmp_path: Path) -> None:
    device, lab = phone
    lab.fault(device.serial, "disk_full", free=10_000)
    with pytest.raises(DeviceStorageFull, match="No space left"):
        device.push(os.urandom(100_000), "/data/local/tmp/farm/big.bin", timeout=20)
    lab.fault(device.serial, "clear")
    device.stat("/data/local/tmp")  # answers (features cached before the hang)
    lab.fault(device.serial, "hang", seconds=0)
    try:
        with pytest.raises(DeviceTimeout):
            device.stat("/data/local/tmp", timeout=1.0)
        with pytest.raises(DeviceTimeout):
            device.shell("echo hi", timeout=1.0)
    finally:
        lab.fault(device.serial, "clear")
    assert device.shell("echo back", timeout=20).output == "back\n"  # and it recovers


def test_getprops_is_one_cached_call(shared) -> None:
    device, _ = shared
    props = device.getprops()
    assert props["ro.product.model"] == "Pixel 7"
    props["ro.product.model"] = "changed"  # a copy
    assert device.getprops()["ro.product.model"] == "Pixel 7"
    assert device.getprops(refresh=True)["ro.build.version.sdk"] == "34"


def test_binary_from_cache_is_checked_and_pushed_once(phone, tmp_path: Path) -> None:
    device, _ = phone
    cache = BinaryCache(tmp_path / "cache")
    linux = tmp_path / "linux_aarch64_benchmark_model"
    linux.write_bytes(make_elf(EM_AARCH64, 64, "/lib/ld-linux-aarch64.so.1"))
    # This phone is to have no benchmark_model of its own.
    device.shell("setprop debug.farm.benchmark_model ''", timeout=10, check=True)
    assert device.getprops(refresh=True).get("debug.farm.benchmark_model", "") == ""
    refused = binary_for(device, binaries={"arm64-v8a": str(linux)}, cache=cache)
    assert isinstance(refused, Unsupported)
    assert "no benchmark_model for arm64-v8a" in refused.reason
    assert "a Linux build" in refused.reason and refused.hint == "farm binaries fetch arm64-v8a"
    build = tmp_path / "android_aarch64_benchmark_model"
    build.write_bytes(ANDROID_BUILDS["arm64-v8a"])
    entry = cache.add("arm64-v8a", build)
    first = binary_for(device, cache=cache)
    assert isinstance(first, BinaryChoice)
    assert (first.sha256, first.source, first.abi) == (entry.sha256, "cache:arm64-v8a", "arm64-v8a")
    assert first.remote_path == paths.binary_path(entry.sha256)
    assert first.pushed_bytes == entry.size
    st = device.stat(first.remote_path)
    assert st is not None and st.mode & 0o111
    assert binary_for(device, cache=cache).pushed_bytes == 0


@pytest.mark.needs("bubblewrap")  # runs the benchmark stand-in, device paths in shell
def test_device_binary_beats_cache_and_config_beats_both(shared, tmp_path: Path) -> None:
    device, _ = shared
    own = device.getprops().get("debug.farm.benchmark_model")
    assert own, "the phone names no benchmark binary (debug.farm.benchmark_model)"
    build = tmp_path / "android_aarch64_benchmark_model"
    build.write_bytes(ANDROID_BUILDS["arm64-v8a"])
    cache = BinaryCache(tmp_path / "cache")
    cache.add("arm64-v8a", build)
    choice = binary_for(device, cache=cache)
    assert isinstance(choice, BinaryChoice)
    assert (choice.remote_path, choice.source, choice.pushed_bytes) == (own, "device", 0)
    on_device = device.read_bytes(own, timeout=30)
    assert choice.sha256 == hashlib.sha256(on_device).hexdigest()
    assert device.bytes_pushed == 0
    configured = binary_for(device, binaries={"arm64-v8a": str(build)}, cache=cache)
    assert isinstance(configured, BinaryChoice)
    assert configured.source == f"config:{build}"
    assert configured.pushed_bytes == build.stat().st_size


@pytest.mark.needs("bubblewrap")  # runs the benchmark stand-in, device paths in shell
def test_nasty_device_path_through_the_shell(shared) -> None:
    device, _ = shared
    remote = f"{paths.MODELS}/{NASTY}"
    device.push(b"model bytes", remote, timeout=10)
    out = device.shell(join_command(["cat", remote]), timeout=10, check=True)
    assert out.output == "model bytes"
    device.shell(join_command(["rm", "-f", remote]), timeout=10, check=True)
    assert device.stat(remote) is None
    assert device.stat("/data/local/tmp/pwned") is None


def test_shell_v1_fallback_keeps_exit_codes(shared) -> None:
    device, _ = shared
    device._features = frozenset({"cmd"})  # as a device without shell_v2 would advertise
    result = device.shell("echo one; exit 5", timeout=10)
    assert (result.exit_code, result.output) == (5, "one\n")
    assert device.shell("printf 'no newline'", timeout=10).output == "no newline"
    assert device.shell("true", timeout=10).ok
    with pytest.raises(DeviceTimeout):
        device.shell("while :; do echo x; sleep 0.1; done", timeout=1.0)


def test_connection_lost_mid_shell_is_unavailable(phone) -> None:
    device, lab = phone
    device.shell("true", timeout=10)
    timer = threading.Timer(0.5, lambda: lab.fault(device.serial, "drop"))
    timer.start()
    try:
        with pytest.raises(DeviceUnavailable) as err:
            device.shell("echo started; sleep 5; echo done", timeout=20)
    finally:
        timer.join()
    assert err.value.serial == device.serial and err.value.command.startswith("echo started")


def test_both_adb_builds(adb_server_any: AdbServer, start_lab_any) -> None:
    lab = start_lab_any(["pixel_7"])
    found = discover([f"127.0.0.1:{adb_server_any.port}"])
    (info,) = found.devices
    assert (info.serial, info.profile) == (lab.phones[0].serial, "pixel_7")
    device = found.device(info)
    assert device.shell("echo hi; exit 4", timeout=10) == ShellResult(4, "hi\n", "echo hi; exit 4")
    assert device.push(b"x" * 100_000, "/data/local/tmp/farm/t.bin", timeout=20) == 100_000
    assert device.stat("/data/local/tmp/farm/t.bin").size == 100_000


def test_host_side_problems_are_input_errors(shared, tmp_path: Path) -> None:
    device, _ = shared
    with pytest.raises(InputError, match="missing.tflite: cannot read"):
        ensure_model(device, tmp_path / "missing.tflite", "0" * 64)
    with pytest.raises(InputError, match="cannot read"):
        device.push(tmp_path / "missing.bin", "/data/local/tmp/farm/x", timeout=10)
    device.push(b"log", "/data/local/tmp/farm/x.log", timeout=10)
    with pytest.raises(InputError, match="cannot write"):
        device.pull("/data/local/tmp/farm/x.log", tmp_path / "no" / "dir" / "x.log", timeout=10)

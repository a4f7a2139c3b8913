"""Pure parts of the adb layer: parsing, quoting, error mapping, device paths."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from adbutils.errors import AdbConnectionError, AdbError, AdbTimeout

from farm.android import paths
from farm.android.adb import (
    join_command,
    map_error,
    parse_devices,
    parse_getprop,
    parse_server,
    sh_quote,
)
from farm.errors import (
    AdbServerUnreachable,
    ConnectionLost,
    DeviceCommandFailed,
    DeviceError,
    DeviceNotFound,
    DeviceOffline,
    DeviceStorageFull,
    DeviceTimeout,
    DeviceUnavailable,
)


def test_parse_devices_all_states() -> None:
    text = (
        "List of devices attached\n"
        "ebe3968d               device product:OP5B16L1 model:CPH2641 device:OP5B16L1 "
        "transport_id:1\n"
        "emulator-5554          offline transport_id:2\n"
        "127.0.0.1:40001        unauthorized transport_id:3\n"
        "R5CT1234567\trecovery product:x model:SM_S911B device:dm1q transport_id:4\n"
        "0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev "
        "group); see [http://developer.android.com/tools/device.html] usb:1-1 transport_id:5\n"
        "\n"
    )
    entries = parse_devices(text)
    assert [(e.serial, e.state) for e in entries] == [
        ("ebe3968d", "device"),
        ("emulator-5554", "offline"),
        ("127.0.0.1:40001", "unauthorized"),
        ("R5CT1234567", "recovery"),
        ("0123456789ABCDEF", "no permissions"),
    ]
    assert entries[0].tags["model"] == "CPH2641"
    assert entries[3].tags["model"] == "SM_S911B"
    assert entries[4].tags == {"usb": "1-1", "transport_id": "5"}


def test_adb_output_samples_are_in_the_repository_and_indexed() -> None:
    folder = Path(__file__).resolve().parents[1] / "corpus" / "adb_outputs"
    index = (folder / "index.tsv").read_text(encoding="utf-8").splitlines()[1:]
    listed = sorted(line.split("\t", 1)[0] for line in index)
    assert listed == sorted(p.name for p in folder.glob("*.txt"))
    assert len(listed) == 10


def test_parse_devices_corpus_and_empty(adb_output: Callable[[str], str]) -> None:
    (entry,) = parse_devices(adb_output("001_adb_devices_l_oppo_cph2641.txt"))
    assert (entry.serial, entry.state, entry.tags["product"]) == ("ebe3968d", "device", "OP5B16L1")
    assert parse_devices("") == []
    assert parse_devices("* daemon started successfully\nList of devices attached\n") == []


def test_parse_getprop_multiline_and_empty_values() -> None:
    text = (
        "[ro.product.model]: [Pixel 7]\n"
        "[ro.product.cpu.abilist32]: []\n"
        "[persist.odd]: [line one\n"
        "line two]\n"
        "[ro.soc.model]: [GS201]\r\n"
        "garbage line\n"
        "[x.brackets]: [a [b] c]\n"
    )
    props = parse_getprop(text)
    assert props == {
        "ro.product.model": "Pixel 7",
        "ro.product.cpu.abilist32": "",
        "persist.odd": "line one\nline two",
        "ro.soc.model": "GS201",
        "x.brackets": "a [b] c",
    }


def test_parse_getprop_corpus(adb_output: Callable[[str], str]) -> None:
    props = parse_getprop(adb_output("002_getprop_excerpt_moto_g75_5g_sm6475.txt"))
    assert props["ro.product.model"] == "moto g75 5G"
    assert props["ro.product.cpu.abilist"] == "arm64-v8a,armeabi-v7a,armeabi"
    assert props["ro.soc.model"] == "SM6475"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:5037", ("127.0.0.1", 5037)),
        ("lab-host:6000", ("lab-host", 6000)),
        ("5038", ("127.0.0.1", 5038)),
        ("[::1]:5037", ("::1", 5037)),
    ],
)
def test_parse_server(spec: str, expected: tuple[str, int]) -> None:
    assert parse_server(spec) == expected


@pytest.mark.parametrize("spec", ["", "host", "host:", ":5037", "h:99999", "h:port", "[::1]5037"])
def test_parse_server_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_server(spec)


def test_quoting_executes_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "x"
    nasty = f"$(touch {marker}) a'b.tflite"
    cmd = join_command(["printf", "%s\\n", nasty, "`id`", "; rm -rf /", "$HOME"])
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [nasty, "`id`", "; rm -rf /", "$HOME"]
    assert not marker.exists()
    assert sh_quote(Path("/a b")) == "'/a b'"
    assert sh_quote(4) == "4"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (AdbError("device offline"), DeviceOffline),
        (AdbError("device 'emulator-5554' not found"), DeviceNotFound),
        (AdbError("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS"), DeviceOffline),
        (AdbError(""), ConnectionLost),
        (AdbError("Invalid sync cmd", ""), ConnectionLost),
        (EOFError("Expected 5 bytes, got 0"), ConnectionLost),
        (EOFError(), ConnectionLost),
        (ConnectionResetError(104, "Connection reset by peer"), ConnectionLost),
        (AdbConnectionError("connect to adb server failed"), AdbServerUnreachable),
        (AdbTimeout("adb read timeout"), DeviceTimeout),
        (TimeoutError("timed out"), DeviceTimeout),
        (AdbError("write failed: No space left on device"), DeviceStorageFull),
        (AdbError("something new"), DeviceUnavailable),
    ],
)
def test_map_error(exc: BaseException, kind: type) -> None:
    err = map_error(exc, "SER1", what="push", command="push /x", output="o" * 2000)
    assert type(err) is kind
    assert isinstance(err, DeviceError)  # every kind is a device error a retry can tell apart
    assert err.serial == "SER1"
    assert err.command == "push /x"
    assert str(err).startswith("[SER1] push")
    assert "\n" not in str(err)
    assert 0 < len(err.output_tail) <= 700


def test_map_error_deadline_wins_and_passes_device_errors() -> None:
    err = map_error(EOFError(), "S", what="shell", expired=True)
    assert isinstance(err, DeviceTimeout)
    original = DeviceCommandFailed("S", "boom")
    assert map_error(original, "S", what="shell") is original


def test_device_paths() -> None:
    sha = "ab" * 32
    assert paths.binary_path(sha) == "/data/local/tmp/farm/bin/benchmark_model-" + "ab" * 8
    assert paths.model_path(sha) == "/data/local/tmp/farm/models/" + "ab" * 8 + ".tflite"
    assert paths.log_path("run 1.log") == "/data/local/tmp/farm/logs/run 1.log"
    for bad in ("", "../x", "a/b", ".."):
        with pytest.raises(ValueError):
            paths.log_path(bad)

"""ADB hosts other than Google's adb, RSA authorization, and a phone back from offline."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from adb_shell import constants as adb_shell_constants
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_cryptography import CryptographySigner

from farm.errors import LabError
from farm.sim.adbd import ADB_VERSION_SKIP_CHECKSUM
from farm.sim.testing import random_file, sha256, wait_until

pytestmark = pytest.mark.lab


def _allow_when_asked(lab, serial: str) -> None:
    """Tap "Allow" on the phone once a host key waits for it."""

    def allowed() -> bool:
        try:
            return lab.authorize(serial) == 1
        except LabError:
            return False

    wait_until(allowed, 20, "a host key waiting on the phone")


def test_python_adb_host_on_protocol_1_0_runs_shell_push_and_pull(
    start_lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert adb_shell_constants.VERSION < ADB_VERSION_SKIP_CHECKSUM  # it checks every checksum
    monkeypatch.setattr(adb_shell_constants, "MAX_ADB_DATA", 4096)  # as legacy hosts announce
    lab = start_lab(["pixel_7"])
    phone = lab.phones[0]
    keygen(str(tmp_path / "adbkey"))
    signer = CryptographySigner(str(tmp_path / "adbkey"))

    # An unknown key: the phone waits for its owner, then lets the host in.
    device = AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=10)
    connected: list[bool] = []
    connect = threading.Thread(
        target=lambda: connected.append(device.connect(rsa_keys=[signer], auth_timeout_s=30))
    )
    connect.start()
    _allow_when_asked(lab, phone.serial)
    connect.join(30)
    assert connected == [True]
    assert device._maxdata == 4096  # the phone keeps to what the host announced

    try:
        assert device.shell("echo $((6*7)); echo err >&2") == "42\nerr\n"
        local = random_file(tmp_path / "blob.bin", 300_000)
        device.push(str(local), "/data/local/tmp/blob.bin")
        assert device.shell("wc -c < /data/local/tmp/blob.bin").strip() == "300000"
        device.pull("/data/local/tmp/blob.bin", str(tmp_path / "back.bin"))
        assert sha256(tmp_path / "back.bin") == sha256(local)
    finally:
        device.close()

    # The key is trusted from now on: no question asked.
    again = AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=10)
    assert again.connect(rsa_keys=[signer], auth_timeout_s=2)
    assert again.shell("getprop ro.product.model").strip() == "Pixel 7"
    again.close()
    assert lab.adb_states()[phone.serial] == "device"  # the adb server's own link is untouched


def test_authorize_lets_the_adb_server_in_after_revoked_keys(
    start_lab, adb_server, farm_cli, one_error_line
) -> None:
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    result = farm_cli("lab", "authorize", serial, "--dir", lab.dir)
    assert result.returncode != 0
    assert "no host is waiting for authorization" in one_error_line(result.stderr)

    lab.fault(serial, "unauthorized")  # "Revoke USB debugging authorizations"
    lab.wait_state(serial, "unauthorized")
    result = farm_cli("lab", "authorize", serial, "--dir", lab.dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{serial}: 1 host key(s) allowed"
    lab.wait_state(serial, "device", timeout=10)
    assert adb_server.adb("-s", serial, "shell", "echo hi").stdout == "hi\n"
    # Allowed for good: a new connection of the server gets in at once.
    lab.fault(serial, "drop")
    lab.wait_state(serial, "device", timeout=20)


def test_offline_then_clear_is_device_again_without_adb_connect(
    start_lab, adb_server, farm_cli
) -> None:
    lab = start_lab(["pixel_7"])
    serial = lab.phones[0].serial
    result = farm_cli("lab", "fault", serial, "offline", "seconds=600", "--dir", lab.dir)
    assert result.returncode == 0, result.stderr
    lab.wait_state(serial, "offline", timeout=20)
    result = farm_cli("lab", "fault", serial, "clear", "--dir", lab.dir)
    assert result.returncode == 0, result.stderr
    assert lab.adb_states()[serial] == "device"  # `clear` returns once it is

    # Offline until cleared, and meanwhile the server gave up on it (as after ~60 s).
    lab.fault(serial, "offline", seconds=0)
    lab.wait_state(serial, "offline", timeout=20)
    adb_server.adb("disconnect", serial)
    lab.wait_state(serial, "absent")
    lab.fault(serial, "clear")
    assert lab.adb_states()[serial] == "device"
    assert adb_server.adb("-s", serial, "shell", "echo back").stdout == "back\n"

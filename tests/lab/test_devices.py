"""`farm devices` and discovery through the real adb server, with and without virtual phones."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from farm.android.discovery import discover
from farm.profiles import PROFILE_DIR, all_profiles, get_profile, load_profile
from farm.sim.lab import Lab
from farm.sim.testing import AdbServer, free_port

pytestmark = pytest.mark.lab

WANTED = ("pixel_7", "galaxy_s23", "galaxy_a54", "emulator_x86_64")


def known_profiles() -> list[str]:
    return [name for name in WANTED if name in all_profiles()]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


FarmCli = Callable[..., subprocess.CompletedProcess[str]]


def test_unreachable_server_is_one_warning_and_starts_nothing(farm_cli: FarmCli) -> None:
    port = free_port()
    found = discover([f"127.0.0.1:{port}"])
    assert found.devices == []
    assert found.warnings == [f"adb server 127.0.0.1:{port} unreachable (nothing listens there)"]
    result = farm_cli("devices", "--server", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no devices"
    assert result.stderr.strip().splitlines() == [
        f"farm: warning: adb server 127.0.0.1:{port} unreachable (nothing listens there)"
    ]
    assert not listening(port)  # adbutils would have run `adb start-server`; we must not


def test_env_port_convention_and_bad_server(adb_server: AdbServer, farm_cli: FarmCli) -> None:
    result = farm_cli("devices", "--json", env={"ANDROID_ADB_SERVER_PORT": str(adb_server.port)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"devices": [], "warnings": []}
    bad = farm_cli("devices", "--server", "localhost:http")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "farm: error: --server: bad port in adb server address 'localhost:http'"
    ]


def test_discovery_reads_each_phone(
    adb_server: AdbServer, start_lab: Callable[..., Lab], farm_cli: FarmCli
) -> None:
    names = known_profiles()
    lab = start_lab(names)
    found = discover([f"{adb_server.host}:{adb_server.port}"])
    assert found.warnings == []
    by_serial = {d.serial: d for d in found.devices}
    assert sorted(by_serial) == sorted(p.serial for p in lab.phones)
    for phone in lab.phones:
        info = by_serial[phone.serial]
        profile = get_profile(phone.profile)
        props = profile.props
        assert info.state == "device" and info.online
        assert info.server == f"127.0.0.1:{adb_server.port}"
        assert info.profile == phone.profile
        assert info.model == props["ro.product.model"]
        assert info.manufacturer == props.get("ro.product.manufacturer", "")
        assert info.sdk == int(props["ro.build.version.sdk"])
        assert info.release == props.get("ro.build.version.release", "")
        assert list(info.abis) == profile.abis
        assert info.emulator == profile.emulator
        assert info.fingerprint == props.get("ro.build.fingerprint", "")
        if props.get("ro.soc.model"):
            assert props["ro.soc.model"] in info.soc
        # The handle carries the properties discovery read: no second getprop.
        assert found.device(info).getprops() == info.props

    result = farm_cli("devices", "--json", "--server", f"127.0.0.1:{adb_server.port}")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["devices"]
    assert sorted(d["serial"] for d in listed) == sorted(by_serial)
    assert {d["profile"] for d in listed} == set(names)
    table = farm_cli("devices", "--server", f"127.0.0.1:{adb_server.port}")
    assert table.returncode == 0
    header, *rows = table.stdout.strip().splitlines()
    assert header.split() == (
        "SERIAL STATE SERVER MODEL SOC SDK ABIS PROFILE EMU GPU RAM CPU NNAPI".split()
    )
    assert len(rows) == len(names)
    pixel = next(r for r in rows if "pixel_7" in r)
    assert "Pixel 7" in pixel and "arm64-v8a" in pixel and "34 (14)" in pixel


def test_offline_and_unauthorized_are_listed(adb_server: AdbServer, start_lab) -> None:
    lab = start_lab(["pixel_7", "pixel_7"], faults={1: [("unauthorized", {})]})
    ok, locked = lab.phones
    lab.fault(ok.serial, "offline", seconds=30)
    lab.wait_state(ok.serial, "offline", timeout=20)
    found = discover([f"127.0.0.1:{adb_server.port}"])
    states = {d.serial: d.state for d in found.devices}
    assert states == {ok.serial: "offline", locked.serial: "unauthorized"}
    for d in found.devices:
        assert (d.profile, d.abis, d.sdk, d.online) == (None, (), None, False)
    assert found.warnings == []


def test_two_servers_tag_their_devices(
    adb_server: AdbServer,
    second_server: AdbServer,
    start_lab: Callable[..., Lab],
    start_second_lab: Callable[..., Lab],
) -> None:
    first = start_lab(["pixel_7"])
    second = start_second_lab(["pixel_7", "pixel_7"])
    servers = [adb_server.address, second_server.address]
    found = discover([*servers, servers[0]])  # a repeated server counts once
    got = sorted((d.server, d.serial) for d in found.devices)
    expected = sorted(
        [(servers[0], p.serial) for p in first.phones]
        + [(servers[1], p.serial) for p in second.phones]
    )
    assert got == expected
    assert all(d.online and d.profile == "pixel_7" for d in found.devices)


def test_servers_from_config_file(tmp_path: Path, farm_cli: FarmCli) -> None:
    ports = [free_port(), free_port()]
    config = tmp_path / "farm.yaml"
    config.write_text(f"adb_servers: ['127.0.0.1:{ports[0]}', '127.0.0.1:{ports[1]}']\n")
    result = farm_cli("devices", "--config", str(config))
    assert result.returncode == 0
    assert sorted(result.stderr.splitlines()) == sorted(
        f"farm: warning: adb server 127.0.0.1:{p} unreachable (nothing listens there)"
        for p in ports
    )
    typo = tmp_path / "typo.yaml"
    typo.write_text("adb_server: ['127.0.0.1:1']\n")
    bad = farm_cli("devices", "--config", str(typo))
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    assert "adb_server" in bad.stderr and str(typo.name) in bad.stderr


def unknown_phone_profile(folder: Path) -> Path:
    """A Galaxy S23 copied under a name, model, SoC and accelerators no host profile knows."""
    data = yaml.safe_load((PROFILE_DIR / "galaxy_s23.yaml").read_text())
    data["name"] = "lab_only_phone"
    data["match"] = {"props": {"ro.product.model": ["Lab Only X1"]}}
    data["props"].update(
        {
            "ro.product.model": "Lab Only X1",
            "ro.board.platform": "labonly",
            "ro.soc.manufacturer": "Lab",
            "ro.soc.model": "LAB1",
            "ro.build.version.security_patch": "2025-01-01",
        }
    )
    sim = data["sim"]
    sim["mem_total_kb"] = 11_538_432
    sim["cpu"]["clusters"] = [
        {"cpus": [0, 1, 2, 3, 4, 5], "core": "Cortex-A55", "max_freq_khz": 2000000},
        {"cpus": [6, 7], "core": "Cortex-X3", "max_freq_khz": 3100000},
    ]
    sim["gles"] = {"vendor": "Lab", "renderer": "LabGPU 9", "version": "OpenGL ES 3.2 lab-1"}
    sim["delegates"]["nnapi"]["accelerators"][0]["name"] = "lab-npu"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lab_only_phone.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def test_devices_json_lists_what_each_phone_reports_of_itself(
    adb_server: AdbServer, start_lab: Callable[..., Lab], farm_cli: FarmCli, tmp_path: Path
) -> None:
    """GPU, NNAPI accelerators, RAM and CPU clusters come from each phone, also from a phone
    whose family no host profile knows."""
    lab = start_lab(["pixel_7", "emulator_x86_64"])
    unknown = start_lab(["lab_only_phone"], profile_dir=unknown_phone_profile(tmp_path / "p"))
    profiles = {p.serial: p.profile for p in lab.phones}
    (odd,) = unknown.phones
    served = {**{s: get_profile(n) for s, n in profiles.items()}}
    served[odd.serial] = load_profile(tmp_path / "p" / "lab_only_phone.yaml")
    cache = tmp_path / "cache"
    args = ("devices", "--json", "--server", adb_server.address)

    result = farm_cli(*args, env={"FARM_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    listed = {d["serial"]: d for d in json.loads(result.stdout)["devices"]}
    assert set(listed) == set(served)
    assert listed[odd.serial]["profile"] is None  # matched no host profile
    for serial, profile in served.items():
        inventory = listed[serial]["inventory"]
        sim = profile.sim
        assert sim.gles is not None
        gpu = sim.delegates.gpu
        renderer = sim.gles.renderer or (gpu.renderer if gpu else "")
        assert inventory["gpu"] == {
            "vendor": sim.gles.vendor,
            "renderer": renderer,
            "version": sim.gles.version,
        }, serial
        nnapi = sim.delegates.nnapi
        assert inventory["nnapi_accelerators"] == [a.name for a in nnapi.accelerators if nnapi]
        assert inventory["ram_kb"] == sim.mem_total_kb
        assert inventory["cpu_clusters"] == [
            {"cpus": c.cpus, "max_freq_khz": c.max_freq_khz} for c in sim.cpu.clusters
        ]
        assert inventory["thermal_zones"] == ([z.type for z in sim.thermal] or None)
        assert inventory["sdk"] == int(profile.props["ro.build.version.sdk"])
        assert inventory["security_patch"] == profile.props["ro.build.version.security_patch"]
        assert set(inventory["unknown"]) <= {"thermal_zones", "nnapi_feature_level"}
    assert listed[odd.serial]["inventory"]["nnapi_accelerators"][0] == "lab-npu"
    assert (
        "thermal_zones"
        in listed[next(s for s, n in profiles.items() if n.startswith("emu"))]["inventory"][
            "unknown"
        ]
    )
    # The probe's answers are kept per device, build and binary: the second listing reads them.
    entries = sorted((cache / "inventory").glob("*.json"))
    assert len(entries) == len(served)
    stamps = [e.stat().st_mtime_ns for e in entries]
    again = farm_cli(*args, env={"FARM_CACHE": str(cache)})
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(result.stdout)
    assert [e.stat().st_mtime_ns for e in entries] == stamps

    table = farm_cli("devices", "--server", adb_server.address, env={"FARM_CACHE": str(cache)})
    row = next(r for r in table.stdout.splitlines() if odd.serial in r)
    assert table.returncode == 0, table.stderr
    assert "LabGPU 9" in row and "11.0G" in row and "6+2 3.1GHz" in row and "lab-npu" in row

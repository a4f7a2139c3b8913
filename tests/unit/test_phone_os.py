"""The virtual phone's files and identity from its profile; path resolution; thermal model."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from farm.profiles import PROFILE_DIR, all_profiles, get_profile, match_profile
from farm.sim import android_files as af
from farm.sim.phone_os import PhoneOS

PROFILE_NAMES = ["pixel_7", "galaxy_s23", "galaxy_a54", "emulator_x86_64"]
# What discovery and the orchestrator read from one batched getprop.
NEEDED_PROPS = [
    "ro.product.model",
    "ro.product.manufacturer",
    "ro.product.brand",
    "ro.product.name",
    "ro.product.device",
    "ro.hardware",
    "ro.soc.manufacturer",
    "ro.soc.model",
    "ro.build.version.sdk",
    "ro.build.version.release",
    "ro.build.fingerprint",
    "ro.product.cpu.abi",
    "ro.product.cpu.abilist",
]


@pytest.fixture
def phone(tmp_path: Path) -> PhoneOS:
    """A pixel_7 phone that never starts a process (its files only)."""
    return PhoneOS("28031FDH2001AB", get_profile("pixel_7"), tmp_path / "phone", confine=False)


# Profiles.
@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_profile_has_what_the_orchestrator_reads(name: str):
    profile = get_profile(name)
    for key in NEEDED_PROPS:
        assert profile.props.get(key), f"{name}: {key} missing or empty"
    assert int(profile.props["ro.build.version.sdk"]) >= 28
    fingerprint = profile.props["ro.build.fingerprint"]
    assert fingerprint.startswith(profile.props["ro.product.brand"] + "/"), fingerprint
    assert f":{profile.props['ro.build.version.release']}/" in fingerprint
    assert profile.props["ro.product.cpu.abi"] == profile.abis[0]
    # Every CPU of the clusters is described once, numbered from 0.
    cpus = sorted(c for cluster in profile.sim.cpu.clusters for c in cluster.cpus)
    assert cpus == list(range(len(cpus)))
    for zone in profile.sim.thermal:
        assert zone.idle_c < zone.max_c
    # The profile recognises a device that reports its own props, and only that profile does.
    assert match_profile(af.device_props(profile, "X")) is profile


def test_four_profiles_ship():
    assert set(PROFILE_NAMES) <= set(all_profiles(PROFILE_DIR))


def test_emulator_profile():
    emu = get_profile("emulator_x86_64")
    assert emu.emulator
    assert emu.props["ro.kernel.qemu"] == "1"
    assert emu.props["ro.hardware"] == "ranchu"
    assert emu.abis == ["x86_64", "arm64-v8a"]
    assert emu.sim.delegates.gpu is None
    assert emu.sim.delegates.hexagon is None
    assert emu.sim.delegates.nnapi is not None
    assert [a.name for a in emu.sim.delegates.nnapi.accelerators] == ["nnapi-reference"]


def test_phones_are_not_emulators():
    for name in ("pixel_7", "galaxy_s23", "galaxy_a54"):
        profile = get_profile(name)
        assert not profile.emulator
        assert profile.props.get("ro.kernel.qemu", "") == ""
        assert profile.sim.delegates.gpu is not None
        assert profile.sim.thermal


def test_galaxy_s23_delegates():
    s23 = get_profile("galaxy_s23")
    assert (s23.props["ro.soc.model"], s23.props["ro.board.platform"]) == ("SM8550", "kalama")
    assert s23.sim.delegates.gpu is not None and "740" in s23.sim.delegates.gpu.renderer
    assert s23.sim.delegates.hexagon is not None
    assert not s23.sim.delegates.hexagon.takes_float
    assert s23.sim.delegates.nnapi is not None
    rejecting = [a for a in s23.sim.delegates.nnapi.accelerators if a.failures]
    assert rejecting, "an NNAPI accelerator of the S23 must reject something"
    assert "ANEURALNETWORKS_" in rejecting[0].failures[0].message


def test_galaxy_a54_failure_modes():
    a54 = get_profile("galaxy_a54")
    assert a54.sim.delegates.hexagon is None
    assert a54.sim.delegates.nnapi is not None
    quantized = [
        f for a in a54.sim.delegates.nnapi.accelerators for f in a.failures if f.when == "quantized"
    ]
    assert quantized and "ANEURALNETWORKS_BAD_DATA" in quantized[0].message
    gpu = a54.sim.delegates.gpu
    assert gpu is not None and "Mali-G68" in gpu.renderer
    crash = [f for f in gpu.failures if f.kind == "crash"]
    assert crash and crash[0].when == "has_op" and crash[0].op == "CUMSUM"
    assert crash[0].signal == 11


# Identity files.
def test_getprop_listing_has_the_real_format(adb_output):
    props = af.device_props(get_profile("galaxy_s23"), "R5CW20ABCDE")
    text = af.format_getprop(props)
    line = re.compile(r"^\[[^\]]+\]: \[.*\]$")
    real = adb_output("002_getprop_excerpt_moto_g75_5g_sm6475.txt")
    assert all(line.match(x) for x in real.splitlines())  # the pattern fits a real phone's output
    lines = text.splitlines()
    assert all(line.match(x) for x in lines)
    keys = [x[1 : x.index("]")] for x in lines]
    assert keys == sorted(keys)
    assert "[ro.product.model]: [SM-S911B]" in lines
    assert f"[{af.BENCHMARK_PROP}]: [{af.BENCHMARK_BINARY}]" in lines
    assert "[sys.boot_completed]: [1]" in lines


def test_device_props_serial_and_emulator():
    props = af.device_props(get_profile("emulator_x86_64"), "emulator-5554")
    assert props["ro.serialno"] == "emulator-5554"
    assert props["ro.kernel.qemu"] == "1"
    tcp = af.device_props(get_profile("pixel_7"), "127.0.0.1:5555")
    assert tcp["ro.serialno"] == get_profile("pixel_7").props["ro.serialno"]
    assert "ro.kernel.qemu" not in tcp  # a phone does not have the property at all


def test_build_prop_round_trip_keeps_equals_and_last_wins():
    props = {"a.b": "x=y", "c": ""}
    text = af.build_prop(props) + "# comment\n\na.b=z\n"
    assert af.parse_build_prop(text) == {"a.b": "z", "c": ""}


def test_cpuinfo_arm64():
    profile = get_profile("pixel_7")
    text = af.cpuinfo(profile)
    assert len(re.findall(r"^processor\t: \d+$", text, re.M)) == 8
    parts = re.findall(r"^CPU part\t: (0x[0-9a-f]+)$", text, re.M)
    assert parts[:4] == ["0xd05"] * 4  # Cortex-A55
    assert parts[6:] == ["0xd44"] * 2  # Cortex-X1
    assert text.rstrip().endswith("Hardware\t: Tensor G2")


def test_cpuinfo_x86_emulator():
    text = af.cpuinfo(get_profile("emulator_x86_64"))
    assert text.count("vendor_id\t: GenuineIntel") == 4
    assert "CPU part" not in text and "Hardware" not in text


def test_sysfs_tree():
    profile = get_profile("galaxy_s23")
    files, links = af.sysfs_files(profile)
    assert files["devices/system/cpu/possible"] == "0-7\n"
    assert files["devices/system/cpu/cpufreq/policy7/cpuinfo_max_freq"] == "3360000\n"
    assert links["devices/system/cpu/cpu6/cpufreq"] == "../cpufreq/policy5"
    for index, zone in enumerate(profile.sim.thermal):
        base = f"devices/virtual/thermal/thermal_zone{index}"
        assert files[f"{base}/type"] == zone.type + "\n"
        assert files[f"{base}/temp"] == f"{round(zone.idle_c * 1000)}\n"
        assert links[f"class/thermal/thermal_zone{index}"].endswith(base)


def test_cpu_range():
    assert af._cpu_range([0, 1, 2, 4, 6, 7]) == "0-2,4,6-7"
    assert af._cpu_range([3]) == "3"


# Path resolution (the sync service's view of the phone).
def test_resolve_maps_the_sandbox(phone: PhoneOS):
    root = phone.root
    assert phone.resolve("/data/local/tmp") == root / "data/local/tmp"
    assert phone.resolve("/data/local/tmp/new.bin", write=True) == root / "data/local/tmp/new.bin"
    assert phone.resolve("/sdcard/a/b.txt", write=True) == root / "sdcard/a/b.txt"
    assert phone.resolve("/storage/emulated/0/x", write=True) == root / "sdcard/x"
    assert phone.resolve("/proc/cpuinfo").read_text() == af.cpuinfo(phone.profile)
    temp = phone.resolve("/sys/class/thermal/thermal_zone0/temp")
    assert temp.read_text() == "34000\n"
    assert root in temp.parents


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/",
        "/data",
        "/data/local",
        "/data/local/tmp/../../../etc/passwd",
        "/data/vendor/farm_sim/faults.json",
        "/proc/self/environ",
        "../../etc/passwd",
        "/data/local/tmpx",
    ],
)
def test_resolve_refuses_outside(phone: PhoneOS, path: str):
    with pytest.raises(PermissionError):
        phone.resolve(path)
    with pytest.raises(PermissionError):
        phone.resolve(path, write=True)


def test_resolve_missing_and_read_only(phone: PhoneOS):
    with pytest.raises(FileNotFoundError):
        phone.resolve("/data/local/tmp/missing")
    with pytest.raises(FileNotFoundError):
        phone.resolve("/data/local/tmp/no/such/dir")
    for path in (
        "/proc/cpuinfo",
        "/system/bin/getprop",
        "/sys/class/thermal/thermal_zone0/temp",
        "/system/bin/new",
    ):
        with pytest.raises(PermissionError):
            phone.resolve(path, write=True)
    (phone.root / "data/local/tmp/file").write_text("x")
    with pytest.raises(NotADirectoryError):
        phone.resolve("/data/local/tmp/file/below")


def test_resolve_follows_symlinks_as_the_phone(phone: PhoneOS):
    tmp = phone.root / "data/local/tmp"
    (tmp / "model.tflite").write_bytes(b"model")
    (tmp / "rel").symlink_to("model.tflite")
    (tmp / "abs").symlink_to("/data/local/tmp/model.tflite")
    (tmp / "card").symlink_to("/sdcard")
    (tmp / "passwd").symlink_to("/etc/passwd")
    (tmp / "hostdir").symlink_to(str(phone.root))  # a host path means nothing on the phone
    (tmp / "up").symlink_to("../../../etc")
    (tmp / "loop").symlink_to("loop")
    assert phone.resolve("/data/local/tmp/rel") == tmp / "model.tflite"
    assert phone.resolve("/data/local/tmp/abs") == tmp / "model.tflite"
    assert phone.resolve("/data/local/tmp/card/f", write=True) == phone.root / "sdcard/f"
    for bad in ("passwd", "hostdir/state/faults.json", "up/passwd"):
        with pytest.raises(PermissionError):
            phone.resolve(f"/data/local/tmp/{bad}")
    with pytest.raises(OSError, match="symbolic links"):
        phone.resolve("/data/local/tmp/loop")


# Storage, faults, properties.
def test_free_bytes_counts_what_is_stored(phone: PhoneOS):
    full = phone.profile.sim.storage_free_mb * 1024 * 1024
    assert phone.free_bytes() == full
    (phone.root / "data/local/tmp/a.bin").write_bytes(b"\0" * 3000)
    (phone.root / "sdcard/d").mkdir()
    (phone.root / "sdcard/d/b.bin").write_bytes(b"\0" * 1000)
    assert phone.free_bytes() == full - 4000


def test_faults_file(phone: PhoneOS):
    path = phone.state_dir / "faults.json"
    assert json.loads(path.read_text()) == {}
    phone.set_fault("benchmark_crash", signal=11)
    phone.set_fault("disk_full", free=0)
    assert json.loads(path.read_text()) == {
        "benchmark_crash": {"signal": 11},
        "disk_full": {"free": 0},
    }
    phone.clear_faults()
    assert json.loads(path.read_text()) == {}


def test_state_for_the_stand_in(phone: PhoneOS):
    state = phone.state_dir
    assert json.loads((state / "profile.json").read_text())["name"] == "pixel_7"
    assert (state / "engine").read_text() == "litert"
    assert (state / "running").is_dir()


def test_getprop_on_the_host(phone: PhoneOS):
    props = phone.getprop()
    assert props["ro.product.model"] == "Pixel 7"
    assert props["ro.serialno"] == "28031FDH2001AB"
    assert props[af.BENCHMARK_PROP] == af.BENCHMARK_BINARY


# Thermal model.
def test_temperature_rises_under_load_and_falls_back(phone: PhoneOS):
    zones = phone.profile.sim.thermal
    idle = {z.type: z.idle_c for z in zones}
    assert phone.temperatures() == idle
    marker = phone.state_dir / "running" / str(os.getpid())  # a live process
    marker.touch()
    phone.tick(2.0)
    hot = phone.temperatures()
    for zone in zones:
        assert hot[zone.type] == pytest.approx(zone.idle_c + 2 * zone.heat_per_s)
    temp_file = phone.resolve("/sys/class/thermal/thermal_zone0/temp")
    assert int(temp_file.read_text()) == round(hot[zones[0].type] * 1000)
    freq = phone.resolve("/sys/devices/system/cpu/cpu7/cpufreq/scaling_cur_freq")
    assert freq.read_text() == "2850000\n"
    phone.tick(10_000)
    assert phone.temperatures() == {z.type: z.max_c for z in zones}
    marker.unlink()
    phone.tick(1.0)
    cooling = phone.temperatures()
    for zone in zones:
        assert cooling[zone.type] == pytest.approx(zone.max_c - zone.cool_per_s)
    assert freq.read_text() == "300000\n"  # the cluster's minimum once idle
    phone.tick(10_000)
    assert phone.temperatures() == idle


def test_stale_marker_of_a_dead_process_is_dropped(phone: PhoneOS):
    proc = subprocess.Popen(["true"])
    proc.wait()
    marker = phone.state_dir / "running" / str(proc.pid)
    marker.touch()
    assert not phone.busy()
    assert not marker.exists()

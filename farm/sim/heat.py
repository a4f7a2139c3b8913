"""A virtual phone's heat model: zones heat under benchmark load and cool when idle; above the
profile's `cpu.throttle_c` the big cores throttle and Android's thermal status rises.

The zone temperatures live in one file of the phone's state folder (`thermal.json`), changed
under an flock by two parties: the phone OS cools it (and heats it for a load that does not
report itself) in its background tick, and the `benchmark_model` stand-in heats it by the load
it simulates, so a run heats by its simulated duration whatever the lab's time_scale. The phone
OS mirrors the file into /sys, the cpufreq files and the thermalservice dump.

Pure functions take and return temperatures (one per zone of the profile, in °C).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from farm.profiles import CpuCluster, Profile

STATE_FILE = "thermal.json"
HEAT_SELF = "self"  # a running/ marker's first word: its process heats the phone itself
# The lab's time_scale (real seconds per simulated second of a benchmark) also paces cooling;
# below this it counts as this, so idle phones cool at most 20 times faster than real time.
MIN_SCALE = 0.05
# Android's thermal status: NONE, LIGHT, MODERATE, SEVERE, CRITICAL (PowerManager constants),
# one step per STATUS_STEP_C above the throttling temperature.
MAX_STATUS = 4
STATUS_STEP_C = 5.0


def idle(profile: Profile) -> list[float]:
    """Every zone at its idle temperature."""
    return [zone.idle_c for zone in profile.sim.thermal]


def heated(profile: Profile, temps: list[float], seconds: float) -> list[float]:
    """Temperatures after `seconds` of benchmark load."""
    return [
        min(zone.max_c, max(t, zone.idle_c) + zone.heat_per_s * seconds)
        for zone, t in zip(profile.sim.thermal, temps, strict=True)
    ]


def cooled(profile: Profile, temps: list[float], seconds: float) -> list[float]:
    """Temperatures after `seconds` idle."""
    return [
        max(zone.idle_c, t - zone.cool_per_s * seconds)
        for zone, t in zip(profile.sim.thermal, temps, strict=True)
    ]


def started_at(profile: Profile, temp_c: float) -> list[float]:
    """The hottest zone at `temp_c`, the others as far above their idle as it is (the `hot`
    fault), each within its own ceiling."""
    zones = profile.sim.thermal
    if not zones:
        return []
    top = max(zone.idle_c for zone in zones)
    return [min(zone.max_c, max(zone.idle_c, temp_c - (top - zone.idle_c))) for zone in zones]


def hottest(temps: list[float]) -> float | None:
    """The hottest zone's temperature (None without zones)."""
    return max(temps) if temps else None


def big_clusters(profile: Profile) -> list[CpuCluster]:
    """Clusters faster than the slowest one (none on a CPU of one kind of core)."""
    clusters = profile.sim.cpu.clusters
    slowest = min((c.max_freq_khz for c in clusters), default=0)
    return [c for c in clusters if c.max_freq_khz > slowest]


def throttle(profile: Profile, temps: list[float]) -> tuple[float, int]:
    """(share of their maximum frequency the big cores may run at, Android thermal status)."""
    cpu = profile.sim.cpu
    top = hottest(temps)
    if cpu.throttle_c is None or top is None or top <= cpu.throttle_c:
        return 1.0, 0
    over = top - cpu.throttle_c
    factor = max(cpu.throttle_floor, 1.0 - cpu.throttle_per_c * over)
    return factor, min(MAX_STATUS, 1 + int(over // STATUS_STEP_C))


def max_freq_khz(profile: Profile, cluster: CpuCluster, factor: float) -> int:
    """The cluster's frequency cap at throttle `factor` (big clusters only are capped)."""
    if factor >= 1.0 or cluster.max_freq_khz <= min(
        c.max_freq_khz for c in profile.sim.cpu.clusters
    ):
        return cluster.max_freq_khz
    return max(cluster.min_freq_khz, int(cluster.max_freq_khz * factor) // 1000 * 1000)


def cpu_slowdown(profile: Profile, temps: list[float], cpus: set[int] | None) -> float:
    """How much longer CPU work takes (≥ 1) on these cores (None: wherever the scheduler puts
    it, the big cores first): slower cores, and big cores throttled."""
    clusters = profile.sim.cpu.clusters
    if not clusters:
        return 1.0
    fastest = max(c.max_freq_khz for c in clusters)
    factor, _status = throttle(profile, temps)
    usable = [c for c in clusters if cpus is None or cpus & set(c.cpus)]
    if not usable:
        return 1.0
    best = max(max_freq_khz(profile, c, factor) for c in usable)
    return fastest / best


def speed(time_scale: float) -> float:
    """Thermal seconds per real second for a lab at `time_scale`."""
    return 1.0 / max(time_scale, MIN_SCALE)


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    fd = os.open(state / (STATE_FILE + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(state: Path, profile: Profile) -> list[float]:
    try:
        data = json.loads((state / STATE_FILE).read_text(encoding="utf-8"))
        temps = [float(t) for t in data["temps"]]
    except (OSError, ValueError, KeyError, TypeError):
        return idle(profile)
    return temps if len(temps) == len(profile.sim.thermal) else idle(profile)


def load(state: Path, profile: Profile) -> list[float]:
    """The phone's current temperatures (idle when the file is missing or unreadable)."""
    return _read(state, profile)


def update(
    state: Path, profile: Profile, change: Callable[[list[float]], list[float]]
) -> list[float]:
    """Apply `change` to the phone's temperatures under the lock; the new temperatures."""
    with _locked(state):
        temps = change(_read(state, profile))
        path = state / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"temps": [round(t, 4) for t in temps]}), encoding="utf-8")
        os.replace(tmp, path)
    return temps


def parse_affinity(mask: str) -> set[int] | None:
    """The CPUs of a hexadecimal affinity mask ("f0" -> {4, 5, 6, 7}); None when unset/bad."""
    try:
        value = int(mask.strip().removeprefix("0x"), 16) if mask.strip() else 0
    except ValueError:
        return None
    cpus = {bit for bit in range(value.bit_length()) if value >> bit & 1}
    return cpus or None


def thermalservice(profile: Profile, temps: list[float]) -> str:
    """What `dumpsys thermalservice` prints for these temperatures (Android 10+ layout)."""
    _factor, status = throttle(profile, temps)
    lines = ["IsStatusOverride: false", f"Thermal Status: {status}", "Cached temperatures:"]
    rows = [
        f"\tTemperature{{mValue={t:.1f}, mType=0, mName={zone.type}, mStatus={status}}}"
        for zone, t in zip(profile.sim.thermal, temps, strict=True)
    ]
    lines += rows
    lines += ["HAL Ready: true", "HAL connection:", "\tThermalHAL AIDL 1  connected: yes"]
    lines += ["Current temperatures from HAL:", *rows]
    return "\n".join(lines) + "\n"

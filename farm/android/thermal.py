"""The device's thermal state in one shell call: thermal zones, Android's thermal status, the
battery and the frequency of each CPU cluster (`Snapshot`).

Only what the `shell` user may read on a stock phone: `/sys/class/thermal/thermal_zone*/{type,
temp}` (else the thermal HAL's sensors as `dumpsys thermalservice` lists them, Android 10+),
`dumpsys thermalservice` for the status, `dumpsys battery`, and cpufreq's
`scaling_cur_freq`, `cpuinfo_max_freq`, `scaling_max_freq` per policy. What cannot be read is
None, with the reason in `Reading.unreadable`; reading never fails for that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from farm.android.adb import Device
from farm.results.model import now_iso
from farm.results.provenance import Battery, Cluster, Snapshot, Zone

_SECTIONS = ("zones", "cpufreq", "battery", "thermalservice")
_CPU = "/sys/devices/system/cpu"
# One call, well under 4 KiB, mksh + toybox only (no printf: Android 5 lacks it).
SCRIPT = (
    "echo @zones; for z in /sys/class/thermal/thermal_zone*; do [ -d $z ] || continue; "
    'echo "$(cat $z/type 2>/dev/null)|$(cat $z/temp 2>/dev/null)"; done; '
    f"echo @cpufreq; p=$(ls -d {_CPU}/cpufreq/policy* 2>/dev/null); "
    f'[ -n "$p" ] || p=$(ls -d {_CPU}/cpu[0-9]*/cpufreq 2>/dev/null); '
    "for f in $p; do "
    'echo "$(cat $f/related_cpus 2>/dev/null)|$(cat $f/scaling_cur_freq 2>/dev/null)|'
    '$(cat $f/cpuinfo_max_freq 2>/dev/null)|$(cat $f/scaling_max_freq 2>/dev/null)"; done; '
    "echo @battery; dumpsys battery 2>&1; "
    "echo @thermalservice; dumpsys thermalservice 2>&1"
)

_STATUS = {"1": "unknown", "2": "charging", "3": "discharging", "4": "not charging", "5": "full"}
_POWERED = (("AC powered", "ac"), ("USB powered", "usb"), ("Wireless powered", "wireless"))
_HAL_TEMP = re.compile(r"Temperature\{mValue=(-?[\d.]+), mType=-?\d+, mName=([^,}]*)")


@dataclass(frozen=True)
class Reading:
    """A snapshot and the reasons some of it could not be read."""

    snapshot: Snapshot
    unreadable: tuple[str, ...] = ()


def read(device: Device, *, timeout: float) -> Reading:
    """Read the device's thermal state now (one shell call with this deadline)."""
    out = device.shell(SCRIPT, timeout=timeout).output
    return parse(out)


def _sections(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {name: [] for name in _SECTIONS}
    current: list[str] | None = None
    for line in text.replace("\r\n", "\n").splitlines():
        name = line.strip()[1:] if line.strip().startswith("@") else None
        if name in found:
            current = found[name]
        elif current is not None:
            current.append(line)
    return found


def _temp_c(text: str) -> float | None:
    """A zone's `temp`: millidegrees (most kernels) or degrees; None when not a temperature."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if abs(value) >= 1000:
        value /= 1000.0
    return round(value, 3) if -40.0 <= value <= 200.0 else None


def _khz(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def parse_zones(lines: list[str]) -> list[Zone]:
    """`type|temp` lines (a zone whose temp cannot be read keeps its name with None)."""
    zones = []
    for line in lines:
        name, sep, temp = line.rpartition("|")
        if sep:
            zones.append(Zone(name=name.strip() or "?", temp_c=_temp_c(temp)))
    return zones


def parse_clusters(lines: list[str]) -> list[Cluster]:
    """`related_cpus|cur|max|cap` lines, one per cpufreq policy (repeats dropped)."""
    seen: dict[str, Cluster] = {}
    for line in lines:
        parts = line.split("|")
        if len(parts) != 4 or not parts[0].strip():
            continue
        cpus = " ".join(parts[0].split())
        seen.setdefault(cpus, Cluster(cpus, _khz(parts[1]), _khz(parts[2]), _khz(parts[3])))
    return list(seen.values())


def parse_battery(lines: list[str]) -> Battery:
    """`dumpsys battery`: level, temperature (tenths of °C), status, what powers it."""
    values: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.strip().partition(":")
        if sep:
            values.setdefault(key.strip(), value.strip())
    level = values.get("level", "")
    temp = values.get("temperature", "")
    powered = [name for key, name in _POWERED if values.get(key) == "true"]
    known = any(key in values for key, _ in _POWERED)
    return Battery(
        level=int(level) if level.isdigit() else None,
        temp_c=int(temp) / 10 if temp.lstrip("-").isdigit() else None,
        status=_STATUS.get(values.get("status", "")),
        plugged=(powered[0] if powered else "none") if known else None,
    )


def parse_thermalservice(lines: list[str]) -> tuple[int | None, list[Zone]]:
    """(Thermal Status, the HAL's current temperatures, else its cached ones)."""
    status = None
    current: list[Zone] = []
    cached: list[Zone] = []
    target: list[Zone] | None = None
    for line in lines:
        text = line.strip()
        if text.startswith("Thermal Status:"):
            value = text.partition(":")[2].strip()
            status = int(value) if value.isdigit() else None
        elif text.startswith("Current temperatures from HAL"):
            target = current
        elif text.startswith("Cached temperatures"):
            target = cached
        elif (match := _HAL_TEMP.search(text)) and target is not None:
            target.append(Zone(name=match.group(2).strip(), temp_c=_temp_c(match.group(1))))
        elif not line.startswith(("\t", " ")):
            target = None
    return status, current or cached


def parse(text: str) -> Reading:
    """A snapshot from the output of SCRIPT, with the reasons for what it lacks."""
    sections = _sections(text)
    zones, source = parse_zones(sections["zones"]), "sysfs"
    status, hal_zones = parse_thermalservice(sections["thermalservice"])
    why: list[str] = []
    if not any(z.temp_c is not None for z in zones):
        if any(z.temp_c is not None for z in hal_zones):
            zones, source = hal_zones, "thermalservice"
        else:
            why.append(
                "temperatures: no readable /sys/class/thermal zone and no thermal HAL "
                "sensor in dumpsys thermalservice"
            )
    if status is None:
        why.append("thermal status: dumpsys thermalservice says none (before Android 10)")
    clusters = parse_clusters(sections["cpufreq"])
    if not any(c.cur_khz is not None for c in clusters):
        why.append("CPU frequencies: cpufreq scaling_cur_freq not readable")
    battery = parse_battery(sections["battery"])
    if battery.level is None:
        why.append("battery: dumpsys battery printed no level")
    snapshot = Snapshot(
        at=now_iso(),
        zones=tuple(zones),
        zones_source=source if any(z.temp_c is not None for z in zones) else None,
        thermal_status=status,
        battery=battery,
        clusters=tuple(clusters),
    )
    return Reading(snapshot, tuple(why))

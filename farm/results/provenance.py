"""A cell's thermal provenance: the device's temperatures, thermal status, battery and CPU
cluster frequencies before and after the run, what was seen while it ran, and the cool-down
wait. Frozen values with their JSON (the `thermal` object of a cell line)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Zone:
    """One thermal zone (or thermal HAL sensor): its name and temperature in °C."""

    name: str
    temp_c: float | None

    def to_json(self) -> dict[str, Any]:
        """{name, temp_c}."""
        return {"name": self.name, "temp_c": self.temp_c}

    @classmethod
    def from_json(cls, data: Any) -> Zone:
        """Read {name, temp_c}."""
        d = _map(data)
        return cls(name=str(d.get("name", "")), temp_c=_num(d.get("temp_c")))


@dataclass(frozen=True)
class Cluster:
    """One cpufreq policy: its CPUs and frequencies in kHz (cap: scaling_max_freq)."""

    cpus: str  # "4-5" or "4 5", as the kernel lists them
    cur_khz: int | None
    max_khz: int | None  # cpuinfo_max_freq: what the cores can do
    cap_khz: int | None = None  # scaling_max_freq: what they may do now

    @property
    def capped(self) -> bool:
        """True when the cluster may not reach its maximum (a thermal or power cap)."""
        return self.cap_khz is not None and self.max_khz is not None and self.cap_khz < self.max_khz

    def to_json(self) -> dict[str, Any]:
        """{cpus, cur_khz, max_khz, cap_khz}."""
        return {
            "cpus": self.cpus,
            "cur_khz": self.cur_khz,
            "max_khz": self.max_khz,
            "cap_khz": self.cap_khz,
        }

    @classmethod
    def from_json(cls, data: Any) -> Cluster:
        """Read one cluster."""
        d = _map(data)
        return cls(
            cpus=str(d.get("cpus", "")),
            cur_khz=_int(d.get("cur_khz")),
            max_khz=_int(d.get("max_khz")),
            cap_khz=_int(d.get("cap_khz")),
        )


@dataclass(frozen=True)
class Battery:
    """What `dumpsys battery` said: level %, temperature °C, status, what powers it."""

    level: int | None = None
    temp_c: float | None = None
    status: str | None = None  # charging, discharging, not charging, full, unknown
    plugged: str | None = None  # ac, usb, wireless, dock, none

    @property
    def charging(self) -> bool | None:
        """True when plugged into power (None: unknown)."""
        return None if self.plugged is None else self.plugged != "none"

    def to_json(self) -> dict[str, Any]:
        """{level, temp_c, status, plugged}."""
        return {
            "level": self.level,
            "temp_c": self.temp_c,
            "status": self.status,
            "plugged": self.plugged,
        }

    @classmethod
    def from_json(cls, data: Any) -> Battery:
        """Read the battery object."""
        d = _map(data)
        return cls(
            level=_int(d.get("level")),
            temp_c=_num(d.get("temp_c")),
            status=_opt_str(d.get("status")),
            plugged=_opt_str(d.get("plugged")),
        )


@dataclass(frozen=True)
class Snapshot:
    """The device's thermal state at one moment (None where it could not be read)."""

    at: str
    zones: tuple[Zone, ...] = ()
    zones_source: str | None = None  # "sysfs" or "thermalservice"
    thermal_status: int | None = None  # Android's: 0 none … 4 critical … 6 shutdown
    battery: Battery = Battery()
    clusters: tuple[Cluster, ...] = ()

    @property
    def hottest(self) -> Zone | None:
        """The hottest zone."""
        known = [z for z in self.zones if z.temp_c is not None]
        return max(known, key=lambda z: z.temp_c or 0.0) if known else None

    @property
    def hottest_c(self) -> float | None:
        """The hottest zone's temperature."""
        zone = self.hottest
        return zone.temp_c if zone is not None else None

    @property
    def capped(self) -> bool:
        """True when a cluster may not reach its maximum frequency."""
        return any(c.capped for c in self.clusters)

    def to_json(self) -> dict[str, Any]:
        """The snapshot object (hottest zone first, for readers of the raw line)."""
        hottest = self.hottest
        return {
            "at": self.at,
            "hottest": hottest.to_json() if hottest is not None else None,
            "thermal_status": self.thermal_status,
            "battery": self.battery.to_json(),
            "clusters": [c.to_json() for c in self.clusters],
            "zones_source": self.zones_source,
            "zones": [z.to_json() for z in self.zones],
        }

    @classmethod
    def from_json(cls, data: Any) -> Snapshot | None:
        """Read a snapshot; None stays None."""
        if data is None:
            return None
        d = _map(data)
        return cls(
            at=str(d.get("at", "")),
            zones=tuple(Zone.from_json(z) for z in d.get("zones") or () if isinstance(z, Mapping)),
            zones_source=_opt_str(d.get("zones_source")),
            thermal_status=_int(d.get("thermal_status")),
            battery=Battery.from_json(d.get("battery")),
            clusters=tuple(
                Cluster.from_json(c) for c in d.get("clusters") or () if isinstance(c, Mapping)
            ),
        )


@dataclass(frozen=True)
class Thermal:
    """A cell's thermal provenance: before and after, what samples during the run saw, and the
    cool-down wait before it."""

    before: Snapshot | None = None
    after: Snapshot | None = None
    limit_c: float | None = None  # the hot limit (cooldown.max_temp_c)
    waited_s: float = 0.0  # time spent at the cool-down gate
    gate: str | None = None  # "cool" (at or below the limit), "timeout", None: no gate
    samples: int = 0  # snapshots taken while the benchmark ran
    max_status: int | None = None  # the highest thermal status the samples saw
    capped: bool = False  # a sample saw a cluster capped below its maximum

    @property
    def hot(self) -> bool:
        """The cell started above the limit."""
        start = self.before.hottest_c if self.before is not None else None
        return start is not None and self.limit_c is not None and start > self.limit_c

    @property
    def throttled(self) -> bool:
        """The thermal status rose, or a cluster was capped below its maximum, while the
        benchmark ran (as it started, in the samples, and as it ended)."""
        seen = [s for s in (self.before, self.after) if s is not None]
        capped = self.capped or any(s.capped for s in seen)
        after = self.after.thermal_status if self.after is not None else None
        statuses = [s for s in (self.max_status, after) if s is not None]
        base = self.before.thermal_status if self.before is not None else None
        rose = any(s > (base or 0) for s in statuses)
        return capped or rose

    def to_json(self) -> dict[str, Any]:
        """The `thermal` object of a cell line."""
        return {
            "before": self.before.to_json() if self.before is not None else None,
            "after": self.after.to_json() if self.after is not None else None,
            "limit_c": self.limit_c,
            "waited_s": self.waited_s,
            "gate": self.gate,
            "samples": self.samples,
            "max_status": self.max_status,
            "capped": self.capped,
        }

    @classmethod
    def from_json(cls, data: Any) -> Thermal | None:
        """Read the `thermal` object; None stays None."""
        if data is None:
            return None
        d = _map(data)
        return cls(
            before=Snapshot.from_json(d.get("before")),
            after=Snapshot.from_json(d.get("after")),
            limit_c=_num(d.get("limit_c")),
            waited_s=_num(d.get("waited_s")) or 0.0,
            gate=_opt_str(d.get("gate")),
            samples=_int(d.get("samples")) or 0,
            max_status=_int(d.get("max_status")),
            capped=bool(d.get("capped")),
        )

"""The device's own inventory: GPU, RAM, CPU clusters, thermal zones, Android level, NNAPI.

Everything comes from the device: one batched shell call (`/proc/meminfo`, cpufreq policies,
thermal zone names, the `GLES:` line of `dumpsys SurfaceFlinger`), the getprop values discovery
already read (SDK, security patch, GLES level, NNAPI feature level), and for NNAPI the tool's own
answer: a short probe run of benchmark_model with `--use_nnapi=true` and a graph that does not
exist, which prints `NNAPI accelerators available: [...]` while it logs its parameters and then
stops at loading the model. Probe answers are cached on the host per device, build fingerprint
and binary sha256. A fact that cannot be read is None, with the reason in `Inventory.unknown`;
reading an inventory never fails because one fact is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from farm.android import paths
from farm.android.adb import Device, join_command, sh_quote
from farm.android.info import DeviceInfo
from farm.errors import DeviceError

log = logging.getLogger("farm.inventory")

INVENTORY_TIMEOUT_S = 20.0  # the one batched shell call (dumpsys SurfaceFlinger can be slow)
PROBE_TIMEOUT_S = 30.0  # the NNAPI probe run, start to end
PROBE_CACHE_ENTRIES = 256  # probe answers kept on the host

SECURITY_PATCH_PROP = "ro.build.version.security_patch"
GLES_PROP = "ro.opengles.version"  # (major << 16) | minor
# Set by the NNAPI updatable module on recent releases (benchmark_model does not print it).
NNAPI_FEATURE_LEVEL_PROP = "persist.device_config.nnapi_native.current_feature_level"
# benchmark_model lists NNAPI devices through the device-enumeration API of Android 10.
NNAPI_LIST_MIN_SDK = 29

_MARK = "@@farm-inventory:"
_CPU = "/sys/devices/system/cpu"
# A graph path that never exists: the probe stops at loading it, after logging its parameters.
PROBE_GRAPH = f"{paths.ROOT}/inventory-probe-no-model.tflite"
_ACCELERATORS = re.compile(r"NNAPI accelerators available: \[([^\]]*)\]")
_GLES_NUMBER = re.compile(r"OpenGL ES(?:-CM)? (\d+)\.(\d+)")
# Renderers that rasterise on the CPU: the GPU delegate finds no GPU behind them.
_SOFTWARE_RENDERERS = ("swiftshader", "llvmpipe", "softpipe", "lavapipe")


# ---------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Gpu:
    """The GPU as SurfaceFlinger's RenderEngine names it: `GLES: vendor, renderer, version`."""

    vendor: str
    renderer: str
    version: str  # GL_VERSION as printed, e.g. "OpenGL ES 3.2 V@0676.0 (GIT@...)"

    @property
    def software(self) -> bool:
        """True for a renderer that rasterises on the CPU (SwiftShader, llvmpipe, ...)."""
        text = f"{self.vendor} {self.renderer}".lower()
        return any(name in text for name in _SOFTWARE_RENDERERS)

    def to_json(self) -> dict[str, str]:
        return {"vendor": self.vendor, "renderer": self.renderer, "version": self.version}


@dataclass(frozen=True)
class CpuCluster:
    """Cores that share a cpufreq policy, and the policy's highest frequency."""

    cpus: tuple[int, ...]
    max_freq_khz: int | None

    def to_json(self) -> dict[str, Any]:
        return {"cpus": list(self.cpus), "max_freq_khz": self.max_freq_khz}


@dataclass(frozen=True)
class NnapiProbe:
    """What benchmark_model said about NNAPI: accelerator names, or None and why not."""

    accelerators: tuple[str, ...] | None
    reason: str | None = None
    line: str | None = None  # the tool's line as printed


@dataclass(frozen=True)
class Inventory:
    """What one device says it is and has. None means unknown; `unknown` says why."""

    gpu: Gpu | None = None
    gles_version: str | None = None  # "3.2": from the GLES line, else ro.opengles.version
    ram_kb: int | None = None  # MemTotal
    cpu_clusters: tuple[CpuCluster, ...] | None = None
    thermal_zones: tuple[str, ...] | None = None  # thermal_zoneN type, in zone order
    sdk: int | None = None
    security_patch: str | None = None
    nnapi_accelerators: tuple[str, ...] | None = None  # () when the tool lists none
    nnapi_feature_level: int | None = None
    unknown: Mapping[str, str] = field(default_factory=dict)  # fact -> why it is None

    @property
    def has_gpu(self) -> bool | None:
        """True when SurfaceFlinger names a hardware GPU, False for a software renderer,
        None when unknown. Whether the GPU delegate really runs is the tool's answer."""
        if self.gpu is None:
            return None
        return not self.gpu.software

    @property
    def ram_mb(self) -> int | None:
        return None if self.ram_kb is None else self.ram_kb // 1024

    def gles_at_least(self, major: int, minor: int) -> bool | None:
        """Whether the device's OpenGL ES level is at least major.minor (None: unknown)."""
        level = _version_pair(self.gles_version)
        return None if level is None else level >= (major, minor)

    def to_json(self) -> dict[str, Any]:
        """JSON for `farm devices --json` and the run header."""
        return {
            "gpu": self.gpu.to_json() if self.gpu else None,
            "gles_version": self.gles_version,
            "ram_kb": self.ram_kb,
            "cpu_clusters": (
                None if self.cpu_clusters is None else [c.to_json() for c in self.cpu_clusters]
            ),
            "thermal_zones": None if self.thermal_zones is None else list(self.thermal_zones),
            "sdk": self.sdk,
            "security_patch": self.security_patch,
            "nnapi_accelerators": (
                None if self.nnapi_accelerators is None else list(self.nnapi_accelerators)
            ),
            "nnapi_feature_level": self.nnapi_feature_level,
            "unknown": dict(self.unknown),
        }

    @classmethod
    def from_json(cls, data: Any) -> Inventory:
        """An Inventory from `to_json()` output; ValueError when it is not one."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an inventory is an object, not {type(data).__name__}")
        gpu = data.get("gpu")
        clusters = data.get("cpu_clusters")
        zones = data.get("thermal_zones")
        names = data.get("nnapi_accelerators")
        unknown = data.get("unknown") or {}
        return cls(
            gpu=Gpu(str(gpu["vendor"]), str(gpu["renderer"]), str(gpu["version"]))
            if isinstance(gpu, Mapping)
            else None,
            gles_version=_opt_str(data.get("gles_version")),
            ram_kb=_opt_int(data.get("ram_kb")),
            cpu_clusters=None
            if clusters is None
            else tuple(
                CpuCluster(tuple(int(c) for c in k["cpus"]), _opt_int(k.get("max_freq_khz")))
                for k in clusters
            ),
            thermal_zones=None if zones is None else tuple(str(z) for z in zones),
            sdk=_opt_int(data.get("sdk")),
            security_patch=_opt_str(data.get("security_patch")),
            nnapi_accelerators=None if names is None else tuple(str(n) for n in names),
            nnapi_feature_level=_opt_int(data.get("nnapi_feature_level")),
            unknown={str(k): str(v) for k, v in dict(unknown).items()},
        )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    return int(value)


def _version_pair(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    major, _, minor = text.partition(".")
    if not major.isdigit() or not minor.isdigit():
        return None
    return int(major), int(minor)


# ---------------------------------------------------------------------------- parsers


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """`text` split at `sep` outside parentheses, each part stripped."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def parse_gles_line(line: str) -> Gpu | None:
    """The `GLES: vendor, renderer, version` line of `dumpsys SurfaceFlinger`, or None.

    Renderers may hold commas inside parentheses (the emulator's `... Translator (ANGLE
    (Google, Vulkan 1.3.0 ...))`); the version is the last part that starts with "OpenGL ES".
    """
    _, mark, rest = line.partition("GLES:")
    if not mark or not rest.strip():
        return None
    parts = [p for p in split_top_level(rest.strip()) if p]
    if not parts:
        return None
    vendor, rest_parts = parts[0], parts[1:]
    version = ""
    for index in range(len(rest_parts) - 1, -1, -1):
        if rest_parts[index].startswith("OpenGL ES"):
            version = ", ".join(rest_parts[index:])
            rest_parts = rest_parts[:index]
            break
    return Gpu(vendor=vendor, renderer=", ".join(rest_parts), version=version)


def gles_number(version: str) -> str | None:
    """ "3.2" from a GL_VERSION string such as "OpenGL ES 3.2 V@0676.0", or None."""
    m = _GLES_NUMBER.search(version)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def gles_from_prop(value: str) -> str | None:
    """ "3.2" from ro.opengles.version ("196610" = 3 << 16 | 2), or None."""
    text = value.strip()
    if not text.isdigit() or int(text) <= 0:
        return None
    number = int(text)
    return f"{number >> 16}.{number & 0xFFFF}"


def parse_meminfo(text: str) -> int | None:
    """MemTotal in kB from /proc/meminfo text, or None."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "MemTotal":
            number = value.split()
            if number and number[0].isdigit():
                return int(number[0])
    return None


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """CPU numbers from `0 1 2 3` (related_cpus) or kernel list syntax `0-3,6`."""
    cpus: set[int] = set()
    for part in re.split(r"[\s,]+", text.strip()):
        first, dash, last = part.partition("-")
        if dash and first.isdigit() and last.isdigit():
            cpus.update(range(int(first), int(last) + 1))
        elif part.isdigit():
            cpus.add(int(part))
    return tuple(sorted(cpus))


def parse_cpufreq(lines: Iterable[str]) -> tuple[CpuCluster, ...]:
    """Clusters from `related_cpus|cpuinfo_max_freq` lines, one per policy (duplicates, as
    cpuN/cpufreq links to its policy, count once), ordered by their first core."""
    clusters: dict[tuple[int, ...], int | None] = {}
    for line in lines:
        related, sep, freq = line.partition("|")
        cpus = parse_cpu_list(related)
        if not sep or not cpus:
            continue
        value = freq.strip()
        max_khz = int(value) if value.isdigit() else None
        if clusters.get(cpus) is None:
            clusters[cpus] = max_khz
    return tuple(CpuCluster(cpus, clusters[cpus]) for cpus in sorted(clusters))


def parse_thermal(lines: Iterable[str]) -> tuple[str, ...]:
    """Zone types from `thermal_zoneN|type` lines, in zone-number order."""
    zones: list[tuple[int, str]] = []
    for line in lines:
        name, sep, kind = line.partition("|")
        number = name.strip().removeprefix("thermal_zone")
        if sep and number.isdigit() and kind.strip() and "denied" not in kind:
            zones.append((int(number), kind.strip()))
    return tuple(kind for _, kind in sorted(zones))


def parse_nnapi_probe(text: str, sdk: int | None) -> NnapiProbe:
    """What a `--use_nnapi=true` run printed about NNAPI accelerators.

    The tool prints `NNAPI accelerators available: [a,b]` when it logs its parameters, only
    when the list is not empty; `Use NNAPI: [1]` without that line means it found none.
    """
    for line in text.splitlines():
        m = _ACCELERATORS.search(line)
        if m:
            names = tuple(n.strip() for n in m.group(1).split(",") if n.strip())
            return NnapiProbe(names, line=line.strip())
    if re.search(r"Use NNAPI: \[(1|true)\]", text):
        if sdk is not None and sdk < NNAPI_LIST_MIN_SDK:
            return NnapiProbe(
                None,
                f"benchmark_model lists NNAPI devices only from Android 10 (SDK "
                f"{NNAPI_LIST_MIN_SDK}); this device has SDK {sdk}",
            )
        return NnapiProbe(())
    if re.search(r"Unconsumed cmdline flags:.*use_nnapi", text):
        return NnapiProbe(None, "this benchmark_model has no NNAPI (--use_nnapi not consumed)")
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    return NnapiProbe(
        None, "the probe run printed no NNAPI parameters" + (f": {last[:200]}" if last else "")
    )


# ---------------------------------------------------------------------------- the device


def inventory_script() -> str:
    """The one shell call that reads every non-probe fact; sections start with a marker line."""
    policies = f"{_CPU}/cpufreq/policy* {_CPU}/cpu[0-9]*/cpufreq"
    return (
        f"echo {_MARK}meminfo; grep MemTotal /proc/meminfo 2>&1; "
        f"echo {_MARK}cpufreq; for d in {policies}; do "
        '[ -r "$d/related_cpus" ] && '
        'echo "$(cat "$d/related_cpus")|$(cat "$d/cpuinfo_max_freq" 2>/dev/null)"; done; '
        f"echo {_MARK}thermal; for z in /sys/class/thermal/thermal_zone*; do "
        '[ -r "$z/type" ] && echo "${z##*/}|$(cat "$z/type" 2>&1)"; done; '
        f"echo {_MARK}gles; dumpsys SurfaceFlinger 2>/dev/null | grep 'GLES:'; "
        f"echo {_MARK}end"
    )


def split_sections(output: str) -> dict[str, list[str]]:
    """The script's output as {section: lines}; a section cut off by a deadline is absent."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in output.splitlines():
        line = raw.rstrip("\r")
        if line.startswith(_MARK):
            name = line[len(_MARK) :].strip()
            current = sections.setdefault(name, [])
        elif current is not None and line.strip():
            current.append(line)
    return sections


def facts_from_output(
    output: str, props: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The facts of the batched script's output and getprop values, and why any is None."""
    sections = split_sections(output)
    facts: dict[str, Any] = {}
    unknown: dict[str, str] = {}

    def missing(section: str, *facts_of_it: str) -> bool:
        if section in sections:
            return False
        for name in facts_of_it:
            unknown[name] = "the inventory script did not get that far (cut off)"
        return True

    if not missing("meminfo", "ram_kb"):
        facts["ram_kb"] = parse_meminfo("\n".join(sections["meminfo"]))
        if facts["ram_kb"] is None:
            said = " ".join(sections["meminfo"])[:200]
            unknown["ram_kb"] = f"/proc/meminfo has no MemTotal line ({said or 'no output'})"
    if not missing("cpufreq", "cpu_clusters"):
        clusters = parse_cpufreq(sections["cpufreq"])
        facts["cpu_clusters"] = clusters or None
        if not clusters:
            unknown["cpu_clusters"] = f"no readable cpufreq policy under {_CPU}/cpufreq"
    if not missing("thermal", "thermal_zones"):
        zones = parse_thermal(sections["thermal"])
        facts["thermal_zones"] = zones or None
        if not zones:
            unknown["thermal_zones"] = (
                "no readable /sys/class/thermal/thermal_zone*/type (none, or denied to the "
                "shell user)"
            )
    gles_prop = gles_from_prop(props.get(GLES_PROP, ""))
    if not missing("gles", "gpu"):
        gpu = next((g for line in sections["gles"] if (g := parse_gles_line(line))), None)
        facts["gpu"] = gpu
        if gpu is None:
            unknown["gpu"] = (
                "dumpsys SurfaceFlinger printed no GLES line (a Vulkan RenderEngine prints none)"
            )
        facts["gles_version"] = (gles_number(gpu.version) if gpu else None) or gles_prop
    else:
        facts["gles_version"] = gles_prop
    if facts["gles_version"] is None:
        unknown["gles_version"] = f"neither a GLES line nor getprop {GLES_PROP}"
    patch = props.get(SECURITY_PATCH_PROP, "").strip()
    facts["security_patch"] = patch or None
    if not patch:
        unknown["security_patch"] = f"getprop {SECURITY_PATCH_PROP} is empty"
    level = props.get(NNAPI_FEATURE_LEVEL_PROP, "").strip()
    facts["nnapi_feature_level"] = int(level) if level.isdigit() else None
    if not level.isdigit():
        unknown["nnapi_feature_level"] = (
            f"getprop {NNAPI_FEATURE_LEVEL_PROP} is not set (benchmark_model does not print it)"
        )
    return facts, unknown


def read_facts(
    device: Device, info: DeviceInfo, *, timeout: float = INVENTORY_TIMEOUT_S
) -> Inventory:
    """Every fact but NNAPI accelerators, from one shell call and discovery's getprop values."""
    try:
        output = device.shell(inventory_script(), timeout=timeout).output
        failed = None
    except DeviceError as exc:
        output, failed = "", exc.message
    facts, unknown = facts_from_output(output, info.props)
    if failed is not None:
        for name in ("ram_kb", "cpu_clusters", "thermal_zones", "gpu"):
            unknown[name] = f"the inventory shell call failed: {failed}"
    sdk_reason = {} if info.sdk is not None else {"sdk": "getprop ro.build.version.sdk is empty"}
    return Inventory(sdk=info.sdk, unknown={**unknown, **sdk_reason}, **facts)


def probe_command(binary: str) -> str:
    """The probe: benchmark_model logs its NNAPI parameters, then fails to load a missing graph.

    `exec` makes the tool the shell's own process, so the end of the stream (our deadline)
    hangs it up directly.
    """
    return "exec " + join_command([binary, f"--graph={PROBE_GRAPH}", "--use_nnapi=true"]) + " 2>&1"


def probe_nnapi(
    device: Device, binary: str, *, sdk: int | None, timeout: float = PROBE_TIMEOUT_S
) -> NnapiProbe | None:
    """Run the probe with `binary` (a device path); None when the device did not answer."""
    try:
        result = device.shell(
            f"rm -f {sh_quote(PROBE_GRAPH)}; {probe_command(binary)}", timeout=timeout
        )
    except DeviceError as exc:
        log.info("[%s] NNAPI probe failed: %s", device.serial, exc)
        return None
    return parse_nnapi_probe(result.output, sdk)


# ---------------------------------------------------------------------------- the probe cache


def probe_cache_key(info: DeviceInfo, binary_sha256: str) -> str:
    """The cache key of a probe answer: device serial, build fingerprint and binary."""
    text = "\0".join((info.serial, info.fingerprint, binary_sha256))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def cached_probe(cache_dir: Path, key: str) -> NnapiProbe | None:
    """A probe answer from the host cache, or None."""
    try:
        data = json.loads((cache_dir / f"{key}.json").read_text(encoding="utf-8"))
        names = data["accelerators"]
        return NnapiProbe(
            None if names is None else tuple(str(n) for n in names),
            _opt_str(data.get("reason")),
            _opt_str(data.get("line")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_probe(cache_dir: Path, key: str, probe: NnapiProbe, **about: str) -> None:
    """Keep a probe answer in the host cache (best effort: a cache that cannot be written is
    only slower)."""
    data = {
        "accelerators": None if probe.accelerators is None else list(probe.accelerators),
        "reason": probe.reason,
        "line": probe.line,
        **about,
    }
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".{key}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, cache_dir / f"{key}.json")
        _prune(cache_dir)
    except OSError as exc:
        log.debug("cannot write the NNAPI probe cache %s: %s", cache_dir, exc)


def _prune(cache_dir: Path, keep: int = PROBE_CACHE_ENTRIES) -> None:
    """Drop the oldest answers beyond `keep` (serials of network devices change often)."""
    entries = sorted(cache_dir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


def with_probe(inventory: Inventory, probe: NnapiProbe) -> Inventory:
    """The inventory with the probe's NNAPI accelerators (or why there are none known)."""
    unknown = {k: v for k, v in inventory.unknown.items() if k != "nnapi_accelerators"}
    if probe.accelerators is None:
        unknown["nnapi_accelerators"] = probe.reason or "unknown"
    return replace(inventory, nnapi_accelerators=probe.accelerators, unknown=unknown)


def without_probe(inventory: Inventory, reason: str) -> Inventory:
    """The inventory with NNAPI accelerators unknown for `reason`."""
    return with_probe(inventory, NnapiProbe(None, reason))

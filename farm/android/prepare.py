"""Device preparation for a run, and its undoing: keep the screen awake while plugged in, pin
the CPU governor (root only), and pick the CPUs the benchmark is pinned to with `taskset`.

Every change is undone by a restore script written on the device *before* the change is made
(`paths.RESTORE`): `restore()` runs it at the end of the run (Ctrl-C included), and the next
run's `prepare()` runs one a killed run left behind, so a device never keeps farm's settings.
Only what the `shell` user may do on a stock phone, plus the governor where adbd runs as root.
"""

from __future__ import annotations

from dataclasses import dataclass

from farm.android import paths
from farm.android.adb import Device, sh_quote
from farm.results.provenance import Cluster

STAY_ON = "stay_on_while_plugged_in"
STAY_ON_ALL = 7  # AC | USB | wireless


@dataclass(frozen=True)
class Prepared:
    """What `prepare` found and changed."""

    leftover: bool = False  # a killed run's settings were restored first
    stay_on_was: str | None = None  # the setting before farm changed it
    stay_on_set: bool = False
    governor_set: bool = False
    governor_note: str | None = None  # why the governor was left alone
    taskset_ok: bool = True  # `taskset MASK true` worked (when a mask was given)


def prepare_script(*, stay_awake: bool, governor: str | None, mask: str | None) -> str:
    """Script: run a leftover restore script, write the new one, then change the settings."""
    r = sh_quote(paths.RESTORE)
    new = sh_quote(paths.RESTORE + ".new")
    parts = [
        f"if [ -f {r} ]; then sh {r} >/dev/null 2>&1; rm -f {r}; echo leftover:yes; fi",
        f"mkdir -p {sh_quote(paths.ROOT)}; : > {new}",
    ]
    if stay_awake:
        parts += [
            f"o=$(settings get global {STAY_ON} 2>/dev/null); echo stay_on_was:$o",
            f'case "$o" in ""|null) echo "settings delete global {STAY_ON}" >> {new};; '
            f'*[!0-9]*) ;; *) echo "settings put global {STAY_ON} $o" >> {new};; esac',
        ]
    if governor:
        g = "$f/scaling_governor"
        parts += [
            'if [ "$(id -u)" = 0 ]; then '
            "for f in /sys/devices/system/cpu/cpufreq/policy*; do [ -f $f/scaling_governor ] && "
            f'echo "echo $(cat {g}) > {g}" >> {new}; done; gov=1; else echo governor:not-root; fi'
        ]
    parts.append(f"mv {new} {r}")
    if stay_awake:
        parts.append(f"settings put global {STAY_ON} {STAY_ON_ALL} && echo stay_on:set")
    if governor:
        parts.append(
            '[ -n "$gov" ] && for f in /sys/devices/system/cpu/cpufreq/policy*; do '
            f"echo {sh_quote(governor)} > $f/scaling_governor; done && echo governor:set"
        )
    if mask:
        parts.append(f"taskset {sh_quote(mask)} true >/dev/null 2>&1 && echo taskset:ok")
    return "; ".join(parts)


def prepare(
    device: Device, *, stay_awake: bool, governor: str | None, mask: str | None, timeout: float
) -> Prepared:
    """Prepare the device for benchmarking (one shell call); what was found and changed."""
    out = device.shell(
        prepare_script(stay_awake=stay_awake, governor=governor, mask=mask), timeout=timeout
    ).output
    lines = [line.strip() for line in out.splitlines()]
    was = next((x.partition(":")[2] for x in lines if x.startswith("stay_on_was:")), None)
    return Prepared(
        leftover="leftover:yes" in lines,
        stay_on_was=was,
        stay_on_set="stay_on:set" in lines,
        governor_set="governor:set" in lines,
        governor_note=(
            f"governor: {governor} needs root (adb root); left as it was"
            if "governor:not-root" in lines
            else None
        ),
        taskset_ok=mask is None or "taskset:ok" in lines,
    )


def restore(device: Device, *, timeout: float) -> bool:
    """Undo what `prepare` changed (its restore script); True when there was one to run."""
    r = sh_quote(paths.RESTORE)
    out = device.shell(
        f"if [ -f {r} ]; then sh {r} >/dev/null 2>&1; rm -f {r}; echo restored; fi",
        timeout=timeout,
    ).output
    return "restored" in out


def _cpus(text: str) -> list[int]:
    """CPU numbers from related_cpus ("4 5") or a kernel list ("4-5,7")."""
    cpus: list[int] = []
    for part in text.replace(",", " ").split():
        low, sep, high = part.partition("-")
        if low.isdigit() and (not sep or high.isdigit()):
            cpus.extend(range(int(low), int(high if sep else low) + 1))
    return cpus


def big_mask(clusters: tuple[Cluster, ...] | list[Cluster]) -> str | None:
    """The hex mask of the CPUs faster than the slowest cluster (by their own cpufreq
    maxima); every CPU when all are alike; None when the maxima are unknown."""
    known = [c for c in clusters if c.max_khz is not None and _cpus(c.cpus)]
    if not known:
        return None
    slowest = min(c.max_khz or 0 for c in known)
    big = [c for c in known if (c.max_khz or 0) > slowest] or known
    mask = sum(1 << cpu for c in big for cpu in _cpus(c.cpus))
    return f"{mask:x}"


def affinity_mask(setting: str, clusters: tuple[Cluster, ...] | list[Cluster]) -> str | None:
    """The taskset mask for `cpu_affinity` (all: None, no pinning; big; a hex mask)."""
    if setting == "all":
        return None
    if setting == "big":
        return big_mask(clusters)
    return setting.lower().removeprefix("0x")

"""Around each cell: the cool-down gate, thermal snapshots before, during and after the run,
and the `Thermal` provenance that says whether it started hot or ran throttled. Around each
device's run: preparation (battery check, screen awake, governor, taskset mask) and restore.

Snapshots are provenance, never a failure: one that cannot be taken is None, and what a device
cannot show is said once per device (`CellHost.note`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from farm.android import prepare, thermal
from farm.errors import FarmError
from farm.results.provenance import Snapshot, Thermal

if TYPE_CHECKING:
    from farm.bench.cell import CellHost


def snapshot(host: CellHost) -> Snapshot | None:
    """The device's thermal state now (one shell call), None when it cannot be read."""
    try:
        reading = thermal.read(host.device, timeout=host.options.command_timeout_s)
    except FarmError as exc:
        host.log.info("thermal snapshot failed: %s", exc)
        return None
    for reason in reading.unreadable:
        host.note(f"{reason}; recorded as null")
    return reading.snapshot


def cool_down(host: CellHost) -> tuple[Snapshot | None, float, str | None]:
    """Wait until the hottest zone is at or below `cooldown.max_temp_c` (or its timeout).

    Returns the snapshot the cell starts from, the seconds waited and how the gate ended
    ("cool", "timeout"; None when there is no gate or no temperature to judge by).
    """
    gate = host.config.cooldown
    snap = snapshot(host)
    if gate is None or snap is None or snap.hottest_c is None:
        return snap, 0.0, None
    t0 = time.monotonic()
    while (snap.hottest_c or 0.0) > gate.max_temp_c:
        waited = time.monotonic() - t0
        if waited >= gate.timeout_s:
            return snap, round(waited, 3), "timeout"
        host.status(f"cooling down: {snap.hottest_c:.1f} °C > {gate.max_temp_c:g} °C")
        host.sleep(min(gate.poll_s, gate.timeout_s - waited))
        fresh = snapshot(host)
        if fresh is None or fresh.hottest_c is None:
            break
        snap = fresh
    return snap, round(time.monotonic() - t0, 3), "cool"


class Sampler:
    """Snapshots while the benchmark runs, every `thermal_sample_s`: the highest thermal
    status and whether a cluster was capped."""

    def __init__(self, host: CellHost) -> None:
        self.host = host
        self.every = host.config.thermal_sample_s
        self.due = time.monotonic() + self.every
        self.samples = 0
        self.max_status: int | None = None
        self.capped = False

    def poll(self) -> None:
        """Take a sample when one is due."""
        if time.monotonic() < self.due:
            return
        self.due = time.monotonic() + self.every
        snap = snapshot(self.host)
        if snap is None:
            return
        self.samples += 1
        self.capped = self.capped or snap.capped
        if snap.thermal_status is not None:
            self.max_status = max(self.max_status or 0, snap.thermal_status)

    def thermal(
        self, before: Snapshot | None, waited_s: float, gate: str | None, after: Snapshot | None
    ) -> Thermal:
        """The cell's provenance with what the samples saw."""
        return Thermal(
            before=before,
            after=after,
            limit_c=self.host.config.hot_limit_c,
            waited_s=waited_s,
            gate=gate,
            samples=self.samples,
            max_status=self.max_status,
            capped=self.capped,
        )


def battery_block(host: CellHost) -> str | None:
    """Wait while the battery is below `min_battery` and charging (up to `battery_wait_s`);
    the reason to skip the device, or None when it may run."""
    config = host.config
    if not config.min_battery:
        return None
    t0 = time.monotonic()
    while True:
        snap = snapshot(host)
        battery = snap.battery if snap is not None else None
        if battery is None or battery.level is None:
            host.note("min_battery: the battery level cannot be read; not checked")
            return None
        if battery.level >= config.min_battery:
            return None
        below = f"battery {battery.level} % is below min_battery {config.min_battery} %"
        if battery.charging is False:
            return f"{below} and not charging: device skipped"
        waited = time.monotonic() - t0
        if waited >= config.battery_wait_s:
            return f"{below} after {waited:.0f} s of charging: device skipped"
        host.status(f"charging: {battery.level} % < {config.min_battery} %")
        poll = config.cooldown.poll_s if config.cooldown else 5.0
        host.sleep(min(poll, config.battery_wait_s - waited))


def prepare_device(host: CellHost) -> str | None:
    """Prepare the device for the run (after the battery check); the reason to skip it, or
    None. Sets `host.affinity` (the taskset mask, None: not pinned)."""
    config = host.config
    skip = battery_block(host)
    if skip:
        return skip
    mask = None
    if config.cpu_affinity != "all":
        snap = snapshot(host)
        mask = prepare.affinity_mask(config.cpu_affinity, snap.clusters if snap else ())
        if mask is None:
            host.note("cpu_affinity big: the cpufreq maxima cannot be read; not pinned")
    done = host.retry(
        "prepare",
        lambda: prepare.prepare(
            host.device,
            stay_awake=config.stay_awake,
            governor=config.governor,
            mask=mask,
            timeout=host.options.command_timeout_s,
        ),
    )
    host.prepared = True
    if done.leftover:
        host.note("restored the device settings an earlier run left changed (it was killed)")
    if done.governor_note:
        host.note(done.governor_note)
    if mask is not None and not done.taskset_ok:
        host.note(f"taskset {mask} failed on the device; benchmarks run unpinned")
        mask = None
    host.affinity = mask
    return None


def restore_device(host: CellHost) -> None:
    """Undo the preparation (one try with a deadline: the run may be stopping, the device
    gone; a restore left undone is done by the next run's preparation)."""
    if not host.prepared:
        return
    try:
        prepare.restore(host.device, timeout=host.options.command_timeout_s)
        host.prepared = False
    except FarmError as exc:
        host.note(f"could not restore the device settings ({exc}); the next run will")

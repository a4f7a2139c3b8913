"""The devices service: what discovery found, with each online device's own inventory.

The inventory's NNAPI answer comes from the benchmark_model the device would run (chosen as for
a run: configured, the device's own, then the host cache), probed once per device, build and
binary and kept in `$FARM_CACHE/inventory`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from farm.android.adb import Device
from farm.android.discovery import Discovery, discover
from farm.android.info import DeviceInfo
from farm.android.inventory import (
    Inventory,
    cached_probe,
    probe_cache_key,
    probe_nnapi,
    read_facts,
    store_probe,
    with_probe,
    without_probe,
)
from farm.bench.binaries import Unsupported, binary_for, farm_cache_dir
from farm.errors import DeviceError

log = logging.getLogger("farm.devices")

WORKERS = 16


def probe_cache_dir() -> Path:
    """Where NNAPI probe answers are kept: $FARM_CACHE/inventory."""
    return farm_cache_dir() / "inventory"


def read_inventory(
    device: Device,
    info: DeviceInfo,
    *,
    binaries: Mapping[str, str] | None = None,
    probe: bool = True,
    cache_dir: Path | None = None,
    no_probe_reason: str = "not probed (--no-probe)",
) -> Inventory:
    """One online device's inventory; facts it cannot read are None with their reason.

    Without `probe`, NNAPI accelerators are None for `no_probe_reason`.
    """
    inventory = read_facts(device, info)
    if not probe:
        return without_probe(inventory, no_probe_reason)
    try:
        choice = binary_for(device, binaries=dict(binaries or {}))
    except DeviceError as exc:
        return without_probe(inventory, f"no benchmark_model to probe with: {exc.message}")
    if isinstance(choice, Unsupported):
        return without_probe(inventory, f"no benchmark_model to probe with: {choice}")
    folder = cache_dir if cache_dir is not None else probe_cache_dir()
    key = probe_cache_key(info, choice.sha256)
    answer = cached_probe(folder, key)
    if answer is None:
        answer = probe_nnapi(device, choice.remote_path, sdk=info.sdk)
        if answer is None:
            return without_probe(inventory, "the NNAPI probe run got no answer from the device")
        store_probe(
            folder,
            key,
            answer,
            serial=info.serial,
            fingerprint=info.fingerprint,
            binary_sha256=choice.sha256,
        )
    return with_probe(inventory, answer)


def read_inventories(
    found: Discovery,
    devices: list[DeviceInfo],
    *,
    binaries: Mapping[str, str] | None = None,
    probe: bool = True,
    cache_dir: Path | None = None,
    no_probe_reason: str = "not probed (--no-probe)",
) -> dict[str, Inventory]:
    """The inventory of each online device of `devices`, by serial (read in parallel)."""
    online = [d for d in devices if d.online and d.props]
    if not online:
        return {}

    def one(info: DeviceInfo) -> Inventory:
        return read_inventory(
            found.device(info),
            info,
            binaries=binaries,
            probe=probe,
            cache_dir=cache_dir,
            no_probe_reason=no_probe_reason,
        )

    with ThreadPoolExecutor(max_workers=min(WORKERS, len(online))) as pool:
        return dict(zip([d.serial for d in online], pool.map(one, online), strict=True))


@dataclass
class Survey:
    """Discovery's answer and the inventory of each online device."""

    found: Discovery
    inventories: dict[str, Inventory] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """`farm devices --json`: each device with its inventory (null when not online)."""
        devices = []
        for info in self.found.devices:
            data = info.to_dict()
            inventory = self.inventories.get(info.serial)
            data["inventory"] = inventory.to_json() if inventory is not None else None
            devices.append(data)
        return {"devices": devices, "warnings": list(self.found.warnings)}


def survey(
    servers: list[str],
    *,
    binaries: Mapping[str, str] | None = None,
    probe: bool = True,
    cache_dir: Path | None = None,
) -> Survey:
    """Every device on these adb servers, and each online one's inventory."""
    found = discover(servers)
    inventories = read_inventories(
        found, found.devices, binaries=binaries, probe=probe, cache_dir=cache_dir
    )
    return Survey(found=found, inventories=inventories)

"""Discovery: every device on every configured adb server, as DeviceInfo records."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from farm.android.adb import AdbServer, Device, DeviceEntry
from farm.android.info import ONLINE, DeviceInfo
from farm.errors import AdbServerError, DeviceError
from farm.profiles import match_profile

log = logging.getLogger("farm.discovery")

LIST_TIMEOUT_S = 5.0
GETPROP_TIMEOUT_S = 15.0
WORKERS = 16

_EMULATOR_HARDWARE = ("ranchu", "goldfish", "cutf_cvm", "vsoc_x86_64", "vsoc_arm64")

_servers: dict[str, AdbServer] = {}
_servers_lock = threading.Lock()


def get_server(address: str) -> AdbServer:
    """The shared AdbServer for "host:port" (one client per server per process)."""
    server = AdbServer.parse(address)
    with _servers_lock:
        return _servers.setdefault(server.address, server)


@dataclass
class Discovery:
    """What discovery found: the devices (any state) and one warning line per problem."""

    devices: list[DeviceInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    handles: dict[tuple[str, str], Device] = field(default_factory=dict, repr=False)

    @property
    def online(self) -> list[DeviceInfo]:
        return [d for d in self.devices if d.online]

    def device(self, info: DeviceInfo) -> Device:
        """The Device handle for a discovered device (its getprop already cached)."""
        handle = self.handles.get((info.server, info.serial))
        return handle if handle is not None else device_for(info)

    def to_dict(self) -> dict[str, object]:
        return {"devices": [d.to_dict() for d in self.devices], "warnings": list(self.warnings)}


def device_for(info: DeviceInfo) -> Device:
    """A Device handle for a DeviceInfo, on the shared client of its server."""
    return get_server(info.server).device(info.serial)


def soc_name(props: dict[str, str]) -> str:
    """The SoC as getprop names it: ro.soc.manufacturer + ro.soc.model, else the platform."""
    maker = props.get("ro.soc.manufacturer", "").strip()
    model = props.get("ro.soc.model", "").strip()
    if model:
        return f"{maker} {model}".strip()
    return props.get("ro.board.platform", "").strip() or props.get("ro.hardware", "").strip()


def abi_list(props: dict[str, str]) -> tuple[str, ...]:
    """The ABIs the device runs, preferred first."""
    text = props.get("ro.product.cpu.abilist", "") or props.get("ro.system.product.cpu.abilist", "")
    abis = [a.strip() for a in text.split(",") if a.strip()]
    if not abis:
        abis = [
            props[k].strip()
            for k in ("ro.product.cpu.abi", "ro.product.cpu.abi2")
            if props.get(k, "").strip()
        ]
    return tuple(dict.fromkeys(abis))


def is_emulator(props: dict[str, str]) -> bool:
    """True for the Android emulator and other virtual devices that say so in getprop."""
    return (
        props.get("ro.kernel.qemu") == "1"
        or props.get("ro.boot.qemu") == "1"
        or props.get("ro.hardware", "") in _EMULATOR_HARDWARE
    )


def make_info(entry: DeviceEntry, server: str, props: dict[str, str] | None) -> DeviceInfo:
    """A DeviceInfo from a device-list entry and, for online devices, its getprop values."""
    if not props:
        return DeviceInfo(
            serial=entry.serial,
            server=server,
            state=entry.state,
            model=entry.tags.get("model", ""),
        )

    profile = match_profile(props)
    sdk_text = props.get("ro.build.version.sdk") or props.get("ro.product.build.version.sdk", "")
    return DeviceInfo(
        serial=entry.serial,
        server=server,
        state=entry.state,
        manufacturer=props.get("ro.product.manufacturer", ""),
        model=props.get("ro.product.model", "") or entry.tags.get("model", ""),
        soc=soc_name(props),
        sdk=int(sdk_text) if sdk_text.strip().isdigit() else None,
        release=props.get("ro.build.version.release", ""),
        abis=abi_list(props),
        emulator=is_emulator(props) or bool(profile and profile.emulator),
        profile=profile.name if profile else None,
        fingerprint=props.get("ro.build.fingerprint", ""),
        props=dict(props),
    )


def _probe(
    server: AdbServer, entry: DeviceEntry, timeout: float
) -> tuple[DeviceInfo, Device | None, str | None]:
    if entry.state != ONLINE:
        return make_info(entry, server.address, None), None, None
    device = server.device(entry.serial)
    try:
        props = device.getprops(timeout=timeout)
    except DeviceError as exc:
        return make_info(entry, server.address, None), None, f"{exc} (properties unreadable)"
    return make_info(entry, server.address, props), device, None


def discover(servers: list[str], *, timeout: float = GETPROP_TIMEOUT_S) -> Discovery:
    """Every device on these adb servers ("host:port"), offline and unauthorized included.

    An unreachable server or an unreadable device becomes a warning line, not an error.
    """
    found = Discovery()
    listed: list[tuple[AdbServer, DeviceEntry]] = []
    unique = list(dict.fromkeys(servers))

    def list_one(address: str) -> tuple[AdbServer | None, list[DeviceEntry], str | None]:
        try:
            server = get_server(address)
        except AdbServerError as exc:
            return None, [], str(exc)
        if not server.reachable(timeout=min(LIST_TIMEOUT_S, 2.0)):
            return server, [], f"adb server {server.address} unreachable (nothing listens there)"
        try:
            return server, server.devices(timeout=LIST_TIMEOUT_S), None
        except AdbServerError as exc:
            return server, [], str(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(unique)))) as pool:
        for server, entries, warning in pool.map(list_one, unique):
            if warning:
                found.warnings.append(warning)
            listed.extend((server, e) for e in entries if server is not None)

    if listed:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(listed))) as pool:
            results = list(pool.map(lambda item: _probe(item[0], item[1], timeout), listed))
        for info, handle, warning in results:
            found.devices.append(info)
            if handle is not None:
                found.handles[(info.server, info.serial)] = handle
            if warning:
                found.warnings.append(warning)
    log.debug(
        "discovered %d devices on %d servers (%d warnings)",
        len(found.devices),
        len(unique),
        len(found.warnings),
    )
    return found

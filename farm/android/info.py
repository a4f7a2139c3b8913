"""DeviceInfo: what discovery knows about one device an adb server sees."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# adb states as `adb devices` prints them.
ONLINE = "device"


@dataclass(frozen=True)
class DeviceInfo:
    """One device on one adb server; ML-relevant facts come from one batched getprop."""

    serial: str
    server: str  # "host:port" of the adb server that sees it
    state: str  # device, offline, unauthorized, recovery, ...
    manufacturer: str = ""
    model: str = ""
    soc: str = ""  # ro.soc.manufacturer + ro.soc.model, else ro.board.platform / ro.hardware
    sdk: int | None = None
    release: str = ""
    abis: tuple[str, ...] = ()
    emulator: bool = False
    profile: str | None = None  # matched device profile name
    fingerprint: str = ""
    props: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def online(self) -> bool:
        return self.state == ONLINE

    @property
    def abi(self) -> str:
        """The primary ABI, or "" when unknown."""
        return self.abis[0] if self.abis else ""

    def to_dict(self) -> dict[str, Any]:
        """Everything but the raw props, for `farm devices --json`."""
        data = asdict(self)
        data.pop("props")
        data["abis"] = list(self.abis)
        return data

"""Faults a virtual phone can be told to show, at start or while running.

Each kind takes a few options, given as strings on the command line (`rate=1M`) or as values
from Python (`rate=1_000_000`):

- drop: cut the connection; the adb server reconnects by itself.
- die_after bytes=N [offline=SECONDS]: cut it after N more bytes of file transfer.
- hang [seconds=T]: stop acknowledging anything (T=0: until cleared).
- offline [seconds=T]: port closed for T seconds (default 5; 0: until cleared), then back.
- reboot [seconds=T]: processes die, offline for T seconds (default 2), then back.
- disk_full [free=BYTES]: pushes beyond that fail with "No space left on device".
- slow rate=BYTES_PER_S: bandwidth cap on the link, each way.
- benchmark_crash [signal=N]: the benchmark binary dies by that signal (default 11).
- unauthorized: the phone forgets the host keys it trusted ("Revoke USB debugging
  authorizations"), so adb shows it `unauthorized` until `authorize` or `clear`.
- hot temp_c=T: the hottest thermal zone at T °C now (the others as far above their idle); the
  phone then cools or heats from there as the heat model says (`clear` leaves it so).
- slowdown factor=F [delegate=KIND] [model=GLOB]: every inference of the matching benchmarks
  takes F times as long (model and litert engines). KIND is cpu (no delegate asked for), gpu,
  nnapi, hexagon, xnnpack or external; GLOB is matched against the model's file name on the
  phone, which is its content hash (`3fa2*.tflite`: the first hex digits of model_sha256).
- clear: every fault above removed; a phone offline or rebooting is back at once.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from farm.errors import ConfigError

if TYPE_CHECKING:
    from farm.sim.adbd import VirtualPhone

# kind -> {option: (parser, default)}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """Bytes from an int or a string such as "512", "64K", "20M", "1G" (powers of 1024)."""
    if isinstance(value, (int, float)):
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit])


def parse_seconds(value: Any) -> float:
    """Seconds from a number or a string such as "3", "2.5", "1.5s"."""
    if isinstance(value, (int, float)):
        return float(value)
    return float(str(value).strip().removesuffix("s"))


SLOWDOWN_DELEGATES = ("*", "cpu", "gpu", "nnapi", "hexagon", "xnnpack", "external")


def parse_factor(value: Any) -> float:
    """A slowdown factor: a number above 0 (1.12 is 12 % slower)."""
    factor = float(value)
    if not 0 < factor <= 1000:
        raise ValueError(f"factor {factor} is out of range (0, 1000]")
    return factor


def parse_delegate_kind(value: Any) -> str:
    """A delegate kind a slowdown applies to."""
    kind = str(value).strip().lower()
    if kind not in SLOWDOWN_DELEGATES:
        raise ValueError(f"unknown delegate kind {kind!r}")
    return kind


FAULTS: dict[str, dict[str, tuple[Any, Any]]] = {
    "drop": {},
    "die_after": {"bytes": (parse_size, None), "offline": (parse_seconds, 0.0)},
    "hang": {"seconds": (parse_seconds, 0.0)},
    "offline": {"seconds": (parse_seconds, 5.0)},
    "reboot": {"seconds": (parse_seconds, 2.0)},
    "disk_full": {"free": (parse_size, 0)},
    "slow": {"rate": (parse_size, None)},
    "benchmark_crash": {"signal": (int, 11)},
    "unauthorized": {},
    "hot": {"temp_c": (float, None)},
    "slowdown": {
        "factor": (parse_factor, None),
        "delegate": (parse_delegate_kind, "*"),
        "model": (str, "*"),
    },
    "clear": {},
}


def parse_fault(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validate a fault kind and its options; a ConfigError naming the problem otherwise."""
    if kind not in FAULTS:
        raise ConfigError(f"unknown fault {kind!r} (known: {', '.join(FAULTS)})")
    spec = FAULTS[kind]
    unknown = set(options) - set(spec)
    if unknown:
        allowed = ", ".join(spec) or "none"
        raise ConfigError(
            f"fault {kind}: unknown option {sorted(unknown)[0]!r} (allowed: {allowed})"
        )
    values: dict[str, Any] = {}
    for name, (parser, default) in spec.items():
        if name in options:
            try:
                values[name] = parser(options[name])
            except (TypeError, ValueError):
                raise ConfigError(
                    f"fault {kind}: bad value for {name}: {options[name]!r}"
                ) from None
        elif default is None:
            raise ConfigError(f"fault {kind}: option {name}=... is required")
        else:
            values[name] = default
    return values


def parse_option_args(args: list[str]) -> dict[str, str]:
    """`["bytes=1M", "offline=3"]` -> {"bytes": "1M", "offline": "3"}."""
    options: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not name:
            raise ConfigError(f"fault option {arg!r} is not NAME=VALUE")
        options[name.strip()] = value.strip()
    return options


async def apply_fault(phone: VirtualPhone, kind: str, **options: Any) -> None:
    """Make `phone` show fault `kind` now (returns once it is in force)."""
    values = parse_fault(kind, options)
    faults = phone.faults
    if kind == "drop":
        phone.drop()
    elif kind == "die_after":
        phone.arm_die_after(values["bytes"], values["offline"])
    elif kind == "hang":
        faults.hang.clear()
        if values["seconds"] > 0:
            phone.spawn_task(_resume_after(phone, values["seconds"]))
    elif kind == "offline":
        phone.go_away(values["seconds"])
        await asyncio.sleep(0)
    elif kind == "reboot":
        phone.go_away(values["seconds"], reboot=True)
        await asyncio.sleep(0)
    elif kind == "disk_full":
        faults.disk_full_free = values["free"]
        phone.os.set_storage_free(values["free"])
    elif kind == "slow":
        faults.rate = float(values["rate"])
    elif kind == "benchmark_crash":
        phone.os.set_fault("benchmark_crash", signal=values["signal"])
    elif kind == "hot":
        phone.os.set_temperature(values["temp_c"])
    elif kind == "slowdown":
        phone.os.set_fault("slowdown", **values)
    elif kind == "unauthorized":
        faults.unauthorized = True
        phone.revoke_keys()
        phone.drop()  # the server reconnects and meets the AUTH challenge
    elif kind == "clear":
        was_unauthorized = faults.unauthorized
        faults.unauthorized = False
        phone.restore_keys()
        faults.rate = 0.0
        faults.die_after = None
        faults.disk_full_free = None
        phone.os.set_storage_free(None)
        faults.hang.set()
        phone.os.clear_faults()
        await phone.come_back()
        if was_unauthorized:
            phone.drop()


async def _resume_after(phone: VirtualPhone, seconds: float) -> None:
    await asyncio.sleep(seconds)
    phone.faults.hang.set()

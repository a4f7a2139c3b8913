"""The plan: devices × models × delegates × threads × repeats, and what a device cannot run.

What a device cannot run is judged from what the device reports about itself (DeviceInfo: SDK
level, ABI, SoC, emulator), never from device profiles: whether it really has a GPU, an NNAPI
accelerator of a given name or the Hexagon libraries is left to the tool, whose output the
run records (a delegate that fails, or one that takes nothing).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from farm.android.info import DeviceInfo
from farm.bench.deploy import sha256_file
from farm.config import Config, DelegateSpec
from farm.errors import InputError
from farm.results.model import PlannedCell, PlanRecord

# NNAPI arrived in Android 8.1; choosing an accelerator by name in Android 10.
NNAPI_MIN_SDK = 27
NNAPI_ACCELERATOR_MIN_SDK = 29
_QUALCOMM = re.compile(
    r"qualcomm|\bqti\b|snapdragon|^(sm|sdm|msm|qcs|qcm|apq)\d|"
    r"^(kalama|taro|lahaina|kona|msmnile|pineapple|sun|parrot|crow|bengal|holi|lito|atoll)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ModelRef:
    """A model file on the host, by display name and content hash."""

    path: Path
    name: str
    sha256: str

    @classmethod
    def from_path(cls, path: Path, name: str | None = None) -> ModelRef:
        """Hash the file; its stem is the default display name."""
        return cls(path=Path(path), name=name or Path(path).stem, sha256=sha256_file(path))


@dataclass(frozen=True)
class Cell:
    """One benchmark run: a model with a delegate and thread count on one device, one repeat."""

    serial: str
    server: str
    model: str  # display name
    model_path: Path  # on the host
    model_sha256: str
    delegate: str  # the delegate's label: cpu, gpu, ..., external:<name>
    spec: DelegateSpec = field(compare=False, repr=False)
    threads: int = 1
    repeat: int = 0

    @property
    def key(self) -> str:
        """Stable identity of the cell across runs (what --resume matches on)."""
        return (
            f"{self.serial}|{self.model_sha256[:16]}|{self.delegate}|t{self.threads}|r{self.repeat}"
        )

    def planned(self, reason: str | None = None) -> PlannedCell:
        """The cell as the run header lists it."""
        return PlannedCell(
            key=self.key,
            serial=self.serial,
            server=self.server,
            model=self.model,
            model_sha256=self.model_sha256,
            delegate=self.delegate,
            threads=self.threads,
            repeat=self.repeat,
            reason=reason,
        )


@dataclass
class Plan:
    """What a run will do: cells in run order, and the cells set aside with a reason."""

    devices: list[DeviceInfo]
    models: list[ModelRef]
    delegates: list[DelegateSpec]
    threads: list[int]
    repeats: int
    cells: list[Cell] = field(default_factory=list)
    # A device cannot run it (recorded as `unsupported`, never dropped).
    unsupported: list[tuple[Cell, str]] = field(default_factory=list)
    # The device was not online at planning time (the runner records these as `device_lost`).
    unavailable: list[tuple[Cell, str]] = field(default_factory=list)

    def all_cells(self) -> list[Cell]:
        """Every planned cell: runnable, unsupported and unavailable."""
        return self.cells + [c for c, _ in self.unsupported] + [c for c, _ in self.unavailable]

    def cells_for(self, serial: str) -> list[Cell]:
        """The runnable cells of one device, in run order."""
        return [c for c in self.cells if c.serial == serial]

    @property
    def total(self) -> int:
        """Every planned cell, runnable or not."""
        return len(self.cells) + len(self.unsupported) + len(self.unavailable)

    def record(self) -> PlanRecord:
        """The whole plan, for the run header."""
        return PlanRecord(
            devices=tuple(d.to_dict() for d in self.devices),
            models=tuple(
                {"name": m.name, "path": str(m.path), "sha256": m.sha256} for m in self.models
            ),
            delegates=tuple(d.options_dict() | {"label": d.label} for d in self.delegates),
            threads=tuple(self.threads),
            repeats=self.repeats,
            cells=tuple(c.planned() for c in self.cells),
            unsupported=tuple(c.planned(r) for c, r in self.unsupported),
            unavailable=tuple(c.planned(r) for c, r in self.unavailable),
        )


def make_plan(
    devices: list[DeviceInfo],
    models: list[ModelRef],
    config: Config,
    *,
    accelerators: Mapping[str, tuple[str, ...] | None] | None = None,
) -> Plan:
    """Cross the devices with models, delegate variants, threads and repeats, interleaving
    repeats.

    Run order is repeat-major: every cell of repeat 0, then of repeat 1, ..., so slow drift
    spreads over all cells; within a round, each device's cells are shuffled with the config's
    seed (`order: shuffled`, see `shuffle_rounds`). Each variant runs its own thread counts
    (`DelegateSpec.thread_counts`). `{kind: nnapi, accelerator_name: "*"}` becomes one variant
    per NNAPI accelerator the device reported (`accelerators`, by serial; None: unknown). Cells a
    device cannot run go to `unsupported` with a reason.
    """
    models = _unique_names(models)
    plan = Plan(
        devices=list(devices),
        models=models,
        delegates=list(config.delegates),
        threads=list(config.threads),
        repeats=config.repeats,
    )
    variants = {
        d.serial: device_variants(d, config, (accelerators or {}).get(d.serial)) for d in devices
    }
    for repeat in range(config.repeats):
        for device in devices:
            for model in models:
                for spec, reason in variants[device.serial]:
                    for threads in spec.thread_counts(config.threads):
                        cell = Cell(
                            serial=device.serial,
                            server=device.server,
                            model=model.name,
                            model_path=model.path,
                            model_sha256=model.sha256,
                            delegate=spec.label,
                            spec=spec,
                            threads=threads,
                            repeat=repeat,
                        )
                        if not device.online:
                            plan.unavailable.append((cell, f"device is {device.state}"))
                        elif reason:
                            plan.unsupported.append((cell, reason))
                        else:
                            plan.cells.append(cell)
    if config.order == "shuffled":
        plan.cells = shuffle_rounds(plan.cells, config.seed or 0)
    servers: dict[str, set[str]] = {}
    for device in devices:
        servers.setdefault(device.serial, set()).add(device.server)
    for serial, seen in servers.items():
        if len(seen) > 1:
            raise InputError(
                f"device {serial} is seen by several adb servers ({', '.join(sorted(seen))}); "
                "list only one of them in adb_servers"
            )
    return plan


def device_variants(
    device: DeviceInfo, config: Config, accelerators: tuple[str, ...] | None
) -> list[tuple[DelegateSpec, str | None]]:
    """The delegate variants one device runs, each with the reason it cannot (None: it can).

    An "all accelerators" NNAPI entry becomes one variant per accelerator the device reported;
    with none known it stays one variant, unsupported, saying why.
    """
    out: list[tuple[DelegateSpec, str | None]] = []
    labels = {s.label for s in config.delegates}
    for spec in config.delegates:
        if not spec.all_accelerators:
            reason = unsupported_reason(device, spec)
            if reason is None and spec.accelerator_name and accelerators is not None:
                if spec.accelerator_name not in accelerators:
                    listed = ", ".join(accelerators) or "none"
                    reason = (
                        f"NNAPI accelerator {spec.accelerator_name!r} is not on this device "
                        f"(benchmark_model lists: {listed})"
                    )
            out.append((spec, reason))
            continue
        if not accelerators:
            why = (
                "the device reported no NNAPI accelerator"
                if accelerators is not None
                else "the device's NNAPI accelerators are unknown (the tool did not list them)"
            )
            out.append((spec, unsupported_reason(device, spec) or why))
            continue
        for name in accelerators:
            narrowed = spec.for_accelerator(name)
            if narrowed.label in labels:  # also listed on its own
                continue
            out.append((narrowed, unsupported_reason(device, narrowed)))
    return out


def shuffle_rounds(cells: list[Cell], seed: int) -> list[Cell]:
    """Each device's cells of each repeat round in an order drawn from `seed` (the same seed,
    the same order, on any host); rounds stay in order."""
    groups: dict[tuple[int, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.repeat, cell.serial), []).append(cell)
    for (repeat, serial), group in groups.items():
        random.Random(f"{seed}|{serial}|{repeat}").shuffle(group)
    queues = {key: iter(group) for key, group in groups.items()}
    return [next(queues[(cell.repeat, cell.serial)]) for cell in cells]


def unsupported_reason(device: DeviceInfo, spec: DelegateSpec) -> str | None:
    """Why this device cannot run this delegate, in one line; None when it may.

    Judged from the DeviceInfo alone (what the device reports): the SDK level for NNAPI and
    NNAPI accelerator names; emulator, ABI and SoC maker for Hexagon. An unknown fact lets the
    cell run, and the tool's output says what happened.
    """
    if spec.kind == "nnapi":
        if device.sdk is not None and device.sdk < NNAPI_MIN_SDK:
            return f"NNAPI needs SDK {NNAPI_MIN_SDK} (Android 8.1); device has SDK {device.sdk}"
        if (
            spec.accelerator_name
            and device.sdk is not None
            and device.sdk < NNAPI_ACCELERATOR_MIN_SDK
        ):
            return (
                f"NNAPI accelerator names need SDK {NNAPI_ACCELERATOR_MIN_SDK} "
                f"(Android 10); device has SDK {device.sdk}"
            )
    elif spec.kind == "hexagon":
        if device.emulator:
            return "Hexagon needs a Qualcomm SoC; this is an emulator"
        if device.abi and not device.abi.startswith("arm"):
            return f"the Hexagon delegate is built for ARM only; device ABI is {device.abi}"
        if device.soc and not is_qualcomm(device):
            return f"Hexagon needs a Qualcomm SoC; device has {device.soc}"
    return None


def is_qualcomm(device: DeviceInfo) -> bool:
    """True when the SoC name or platform props say Qualcomm."""
    props = device.props or {}
    candidates = [
        device.soc,
        props.get("ro.soc.manufacturer", ""),
        props.get("ro.soc.model", ""),
        props.get("ro.board.platform", ""),
        props.get("ro.hardware", ""),
    ]
    return any(_QUALCOMM.search(c.strip()) for c in candidates if c)


def _unique_names(models: Iterable[ModelRef]) -> list[ModelRef]:
    """Drop repeated files (same hash); tell apart different files with the same name."""
    by_hash: dict[str, ModelRef] = {}
    for model in models:
        by_hash.setdefault(model.sha256, model)
    refs = list(by_hash.values())
    names = [m.name for m in refs]
    return [
        replace(m, name=f"{m.name}@{m.sha256[:8]}") if names.count(m.name) > 1 else m for m in refs
    ]

"""farm.yaml: the run configuration, its validation with file/line errors, and CLI overrides."""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from farm.android.adb import parse_server  # one parser for adb server addresses
from farm.errors import ConfigError

DEFAULT_CONFIG_NAME = "farm.yaml"
DELEGATE_KINDS = ("cpu", "xnnpack", "gpu", "nnapi", "hexagon", "external")
KNOWN_ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64", "x86")
# A config is a few hundred bytes; refuse what clearly is not one (/dev/zero, a model file).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 100_000

_OPTIONS_BY_KIND: dict[str, tuple[str, ...]] = {
    "cpu": ("xnnpack",),
    "xnnpack": (),
    "gpu": ("precision_loss_allowed", "backend"),
    "nnapi": ("accelerator_name", "allow_fp16"),
    "hexagon": (),
    "external": ("name", "path", "options"),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+*-]*$")
_FLAG_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# Flags farm sets itself from the config: passing them as tool flags would contradict it.
OWNED_FLAGS = {
    "graph": "the model list",
    "num_threads": "threads:",
    "use_gpu": "delegates:",
    "use_nnapi": "delegates:",
    "use_hexagon": "delegates:",
    "use_xnnpack": "delegates: (xnnpack, or cpu with xnnpack: true/false)",
    "external_delegate_path": "an external delegate's path:",
    "external_delegate_options": "an external delegate's options:",
    "nnapi_accelerator_name": "accelerator_name:",
    "require_full_delegation": "require_full_delegation: on the delegate",
    "input_layer_value_files": "accuracy: {inputs: {name: file.npy}}",
    "output_filepath": "accuracy: true (farm writes, pulls and compares the outputs)",
}
# accelerator_name "*": one variant per NNAPI accelerator the device reports.
ALL_ACCELERATORS = "*"


def check_tool_flags(flags: Mapping[str, Any]) -> dict[str, str]:
    """Extra benchmark_model flags as name → text; ValueError naming a bad or owned flag."""
    out: dict[str, str] = {}
    for name, value in flags.items():
        key = str(name).removeprefix("--")
        if not _FLAG_NAME_RE.match(key):
            raise ValueError(f"tool flag {name!r}: not a benchmark_model flag name (a-z, 0-9, _)")
        if key in OWNED_FLAGS:
            raise ValueError(f"tool flag {key!r} is set by farm; use {OWNED_FLAGS[key]} instead")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "\n" in text or "\0" in text:
            raise ValueError(f"tool flag {key!r}: the value holds a newline or NUL byte")
        out[key] = text
    return out


def _server(text: str) -> str:
    parse_server(text)
    return text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tolerance(_Strict):
    """How far a delegate's outputs may be from the reference; unset limits are not checked.

    `max_rel`: max |error| over the larger of max |reference| and max |output|; `max_abs`:
    max |error|; `max_quanta`: max |error| in steps of a quantized output's scale;
    `min_cosine`: cosine similarity; `min_top1`: share of rows whose top-1 class agrees.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rel: float | None = Field(default=None, ge=0)
    max_abs: float | None = Field(default=None, ge=0)
    max_quanta: float | None = Field(default=None, ge=0)
    min_cosine: float | None = Field(default=None, ge=-1, le=1)
    min_top1: float | None = Field(default=None, ge=0, le=1)

    def over(self, other: Tolerance | None) -> Tolerance:
        """These limits where set, `other`'s for the rest."""
        if other is None:
            return self
        return other.model_copy(update=self.model_dump(exclude_none=True))


class AccuracySettings(_Strict):
    """`accuracy:`: compare each delegate's outputs with the CPU's on fixed inputs.

    `true`/`false`, or a mapping: `inputs` (input tensor name → .npy file; others are made
    from a seeded generator), `seed`, `tolerances` (delegate label or kind → limits).
    """

    enabled: bool = True
    inputs: dict[str, str] = Field(default_factory=dict)
    seed: int = Field(default=0, ge=0)
    tolerances: dict[str, Tolerance] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class DelegateSpec(_Strict):
    """One delegate to benchmark, with its options; a plain string like "gpu" is accepted too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    # cpu: force XNNPACK on or off (None: the tool's default).
    xnnpack: bool | None = None
    # gpu
    precision_loss_allowed: bool | None = None
    backend: Literal["opencl", "gl"] | None = None
    # nnapi
    accelerator_name: str | None = None
    allow_fp16: bool | None = None
    # external: a delegate library on the device, named for the report
    name: str | None = None
    path: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    # every kind
    label: str = ""  # the report's delegate column; derived from kind and options when empty
    threads: list[int] | None = None  # None: the sweep for cpu/xnnpack, the first count else
    require_full_delegation: bool | None = None
    benchmark_flags: dict[str, str] = Field(default_factory=dict)
    accuracy_tolerance: Tolerance | None = None  # limits for this variant's accuracy check

    @field_validator("benchmark_flags", mode="before")
    @classmethod
    def _flags(cls, value: Any) -> Any:
        return check_tool_flags(value) if isinstance(value, Mapping) else value

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("threads")
    @classmethod
    def _threads_in_range(cls, value: list[int] | None) -> list[int] | None:
        return _check_threads(value) if value is not None else None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            kind, _, name = value.strip().partition(":")
            if kind == "external" and name:
                return {"kind": kind, "name": name}
            return {"kind": value.strip()}
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in DELEGATE_KINDS:
            hint = _did_you_mean(value, DELEGATE_KINDS)
            raise ValueError(
                f"unknown delegate {value!r} (known: {', '.join(DELEGATE_KINDS)}){hint}"
            )
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _options_as_text(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[str, str] = {}
        for key, item in value.items():
            text = str(item).lower() if isinstance(item, bool) else str(item)
            for part in (str(key), text):
                # benchmark_model splits 'k1:v1;k2:v2' without any escaping.
                if not part or any(c in part for c in ":;\n"):
                    raise ValueError(
                        f"external delegate option {key!r}: {item!r}: keys and values must be "
                        "non-empty and contain no ':', ';' or newline"
                    )
            out[str(key)] = text
        return out

    @model_validator(mode="after")
    def _options_fit_kind(self) -> DelegateSpec:
        allowed = _OPTIONS_BY_KIND[self.kind]
        for option in (
            "xnnpack",
            "precision_loss_allowed",
            "backend",
            "accelerator_name",
            "allow_fp16",
            "name",
            "path",
        ):
            if getattr(self, option) is not None and option not in allowed:
                raise ValueError(f"option {option!r} does not apply to delegate {self.kind!r}")
        if self.options and "options" not in allowed:
            raise ValueError(f"option 'options' does not apply to delegate {self.kind!r}")
        if self.kind == "external":
            if not self.name or not _NAME_RE.match(self.name):
                raise ValueError(
                    "an external delegate needs a 'name' (letters, digits, '.', '_', '-'), "
                    "used in the report as external:<name>"
                )
            if not self.path:
                raise ValueError(f"external delegate {self.name!r} needs a 'path' on the device")
        if self.accelerator_name is not None and not self.accelerator_name.strip():
            raise ValueError("'accelerator_name' is empty")
        if self.label and not _LABEL_RE.match(self.label):
            raise ValueError(
                f"label {self.label!r}: use letters, digits and '.', '_', '-', '+', ':' only"
            )
        if not self.label:
            object.__setattr__(self, "label", self._derived_label())
        return self

    def _derived_label(self) -> str:
        """cpu, gpu, external:<name>, nnapi:<accelerator>, and a word per option set:
        cpu-no-xnnpack, gpu-fp16-opencl, gpu-gl, nnapi:edgetpu-fp32."""
        base = f"external:{self.name}" if self.kind == "external" else self.kind
        if self.accelerator_name:
            base += f":{self.accelerator_name}"
        words = []
        if self.xnnpack is not None:
            words.append("xnnpack" if self.xnnpack else "no-xnnpack")
        for fp16 in (self.precision_loss_allowed, self.allow_fp16):
            if fp16 is not None:
                words.append("fp16" if fp16 else "fp32")
        if self.backend is not None:
            words.append(self.backend)
        return "-".join([base, *words])

    @property
    def all_accelerators(self) -> bool:
        """True for `{kind: nnapi, accelerator_name: "*"}`: one variant per accelerator."""
        return self.kind == "nnapi" and self.accelerator_name == ALL_ACCELERATORS

    def for_accelerator(self, accelerator: str) -> DelegateSpec:
        """This "*" spec narrowed to one accelerator, labelled `<label>:<accelerator>`."""
        narrowed = self.model_copy(update={"accelerator_name": accelerator})
        if self.label == self._derived_label():
            label = narrowed._derived_label()
        else:
            label = f"{self.label.removesuffix(':' + ALL_ACCELERATORS)}:{accelerator}"
        return narrowed.model_copy(update={"label": label})

    def thread_counts(self, sweep: list[int]) -> list[int]:
        """The thread counts this delegate runs: its own, the sweep for CPU kinds, else the
        sweep's first count (a GPU, NNAPI, Hexagon or external delegate ignores threads)."""
        if self.threads is not None:
            return list(self.threads)
        return list(sweep) if self.kind in ("cpu", "xnnpack") else list(sweep[:1])

    def options_dict(self) -> dict[str, Any]:
        """Only the options that were set, for the run header (the label apart)."""
        return self.model_dump(exclude_defaults=True, exclude={"label"}) | {"kind": self.kind}


class DeviceSelection(_Strict):
    """Which devices take part; every non-empty list must match (an empty selection takes all)."""

    serials: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)  # globs on ro.product.model
    socs: list[str] = Field(default_factory=list)  # globs on the SoC name
    profiles: list[str] = Field(default_factory=list)  # device profile names

    @field_validator("serials", "models", "socs", "profiles", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def matches(self, info: Any) -> bool:
        """True when a DeviceInfo passes every selector that is set."""
        if self.serials and info.serial not in self.serials:
            return False
        if self.models and not _glob_any(info.model, self.models):
            return False
        if self.socs and not _glob_any(info.soc, self.socs):
            return False
        return not self.profiles or info.profile in self.profiles

    def describe(self) -> str:
        """A short text of the selection, for the "no device matched" error."""
        parts = [
            f"{name}={','.join(values)}"
            for name, values in (
                ("serials", self.serials),
                ("models", self.models),
                ("socs", self.socs),
                ("profiles", self.profiles),
            )
            if values
        ]
        return " ".join(parts) or "all devices"


class Cooldown(_Strict):
    """The cool-down gate: before each cell, wait until the hottest zone is at or below
    `max_temp_c`, checking every `poll_s`; after `timeout_s` the cell runs anyway, flagged hot."""

    max_temp_c: float = Field(default=40.0, gt=0, le=150)
    timeout_s: float = Field(default=300.0, ge=0)
    poll_s: float = Field(default=5.0, gt=0)


_HEX_MASK = re.compile(r"^(0x)?[0-9a-fA-F]{1,16}$")


class Config(_Strict):
    """The whole farm.yaml."""

    models: list[str] = Field(default_factory=list)  # paths and globs
    delegates: list[DelegateSpec] = Field(default_factory=lambda: [DelegateSpec(kind="cpu")])
    threads: list[int] = Field(default_factory=lambda: [1])
    repeats: int = Field(default=1, ge=1, le=1000)
    warmup_runs: int = Field(default=1, ge=0)
    warmup_min_secs: float = Field(default=0.5, ge=0)
    num_runs: int = Field(default=50, ge=1)
    min_secs: float = Field(default=1.0, ge=0)
    max_secs: float = Field(default=150.0, gt=0)
    run_deadline_s: float = Field(default=600.0, gt=0)  # wall-clock limit of one benchmark run
    report_peak_memory: bool = False
    devices: DeviceSelection = Field(default_factory=DeviceSelection)
    adb_servers: list[Annotated[str, AfterValidator(_server)]] = Field(
        default_factory=lambda: default_adb_servers()
    )
    binaries: dict[str, str] = Field(default_factory=dict)  # ABI -> host path
    # binaries.allow_translation: true lets a device run a build for an ABI it only translates
    allow_translation: bool = False
    benchmark_flags: dict[str, str] = Field(default_factory=dict)  # passed to every run
    op_profiling: bool = False  # --enable_op_profiling=true on every run
    output: str = "farm-runs"
    # Stability: the cool-down gate (None: no wait; cells are still flagged hot above 40 °C),
    # a pause between cells, the order of cells in a repeat round and its seed (None: a new
    # one per run, recorded in the header), device preparation (restored at the end).
    cooldown: Cooldown | None = None
    run_delay_s: float = Field(default=0.0, ge=0)
    order: Literal["shuffled", "fixed"] = "shuffled"
    seed: int | None = Field(default=None, ge=0)
    min_battery: int = Field(default=0, ge=0, le=100)  # %; below it a device waits or is skipped
    battery_wait_s: float = Field(default=600.0, ge=0)  # how long a charging device may wait
    stay_awake: bool = True  # keep the screen on while plugged in (settings global ...)
    cpu_affinity: str = "all"  # all | big | a hex mask: taskset for the benchmark
    governor: Literal["performance"] | None = None  # needs root (adb root); restored after
    thermal_sample_s: float = Field(default=10.0, gt=0)  # between snapshots during a run

    @field_validator("cpu_affinity")
    @classmethod
    def _affinity(cls, value: str) -> str:
        value = value.strip()
        if value in ("all", "big") or (_HEX_MASK.match(value) and int(value, 16) > 0):
            return value
        raise ValueError(
            f"cpu_affinity {value!r} is not all, big or a hexadecimal CPU mask such as f0"
        )

    @property
    def hot_limit_c(self) -> float:
        """Above this hottest-zone temperature a cell starts hot (cooldown.max_temp_c)."""
        return (self.cooldown or Cooldown()).max_temp_c

    accuracy: AccuracySettings = Field(
        default_factory=lambda: AccuracySettings(enabled=False)
    )  # outputs compared with the CPU's

    @model_validator(mode="before")
    @classmethod
    def _translation_under_binaries(cls, value: Any) -> Any:
        binaries = value.get("binaries") if isinstance(value, dict) else None
        if isinstance(binaries, dict) and "allow_translation" in binaries:
            binaries = dict(binaries)
            allow = binaries.pop("allow_translation")
            value = dict(value) | {"binaries": binaries, "allow_translation": allow}
        return value

    @field_validator("benchmark_flags", mode="before")
    @classmethod
    def _flags(cls, value: Any) -> Any:
        return check_tool_flags(value) if isinstance(value, Mapping) else value

    labels: dict[str, str] = Field(default_factory=dict)  # stored in the run header

    @field_validator("labels", mode="before")
    @classmethod
    def _label_values(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                k: str(v).lower() if isinstance(v, bool) else str(v) if v is not None else ""
                for k, v in value.items()
            }
        return value

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            check_label_name(name)
        return value

    @field_validator("models", "threads", "adb_servers", "delegates", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value

    @field_validator("models")
    @classmethod
    def _models_not_blank(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.strip():
                raise ValueError("a model path is empty")
        return value

    @field_validator("threads")
    @classmethod
    def _threads_range(cls, value: list[int]) -> list[int]:
        return _check_threads(value)

    @field_validator("delegates")
    @classmethod
    def _labels_unique(cls, value: list[DelegateSpec]) -> list[DelegateSpec]:
        if not value:
            raise ValueError("at least one delegate is needed")
        seen: set[str] = set()
        for spec in value:
            if spec.label in seen:
                raise ValueError(
                    f"delegate {spec.label!r} is listed twice"
                    + (
                        " (give each external delegate its own name)"
                        if spec.kind == "external"
                        else " (give each variant its own label:)"
                    )
                )
            seen.add(spec.label)
        return value

    @field_validator("adb_servers")
    @classmethod
    def _servers_unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("binaries")
    @classmethod
    def _abis(cls, value: dict[str, str]) -> dict[str, str]:
        for abi in value:
            if abi not in KNOWN_ABIS:
                raise ValueError(
                    f"unknown ABI {abi!r} (known: {', '.join(KNOWN_ABIS)})"
                    + _did_you_mean(abi, KNOWN_ABIS)
                )
        return value

    @model_validator(mode="after")
    def _secs_order(self) -> Config:
        if self.max_secs < self.min_secs:
            raise ValueError(f"max_secs ({self.max_secs:g}) is below min_secs ({self.min_secs:g})")
        return self

    def delegate(self, label: str) -> DelegateSpec:
        """The configured delegate with this label (KeyError when absent)."""
        for spec in self.delegates:
            if spec.label == label:
                return spec
        raise KeyError(label)


def _check_threads(value: list[int]) -> list[int]:
    if not value:
        raise ValueError("at least one thread count is needed")
    for n in value:
        if not 1 <= n <= 64:
            raise ValueError(f"thread count {n} is out of range 1..64")
    return list(dict.fromkeys(value))


def default_adb_servers() -> list[str]:
    """adb's own convention: ANDROID_ADB_SERVER_HOST / _PORT, else 127.0.0.1:5037."""
    host = os.environ.get("ANDROID_ADB_SERVER_HOST") or "127.0.0.1"
    port = os.environ.get("ANDROID_ADB_SERVER_PORT") or "5037"
    server = f"{host}:{port}"
    try:
        parse_server(server)
    except ValueError:
        raise ConfigError(
            f"ANDROID_ADB_SERVER_PORT={port!r}: not a port number (1..65535)"
        ) from None
    return [server]


def load_config(path: Path | None, *, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate farm.yaml (None: defaults only), then apply CLI overrides.

    Overrides (None values are ignored): model (list of paths), delegate ("cpu,gpu" or list),
    threads ("1,2,4" or list), repeats, serial (str or list), out, flag (list of NAME=VALUE),
    seed, accuracy (True turns the accuracy check on). ANDROID_SERIAL selects a device when no
    serial is configured. Errors are ConfigError naming file, line and key.
    """
    data: dict[str, Any] = {}
    root: yaml.Node | None = None
    where = ""
    if path is not None:
        where = str(path)
        text = _read_config_text(path)
        root, data = _parse_yaml(text, where)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, root, where or "config")) from None
    if path is not None:
        config = _relative_to(config, path.parent)
    return apply_overrides(config, overrides or {})


def apply_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """CLI flags win over the file; ANDROID_SERIAL fills in when no serial is set."""
    update: dict[str, Any] = {}
    if overrides.get("model"):
        update["models"] = [str(m) for m in _as_list(overrides["model"])]
    if overrides.get("delegate"):
        update["delegates"] = [
            spec
            for label in _split(overrides["delegate"])
            for spec in _delegate_from_flag(config, label)
        ]
    if overrides.get("threads"):
        update["threads"] = [_int_flag("--threads", t) for t in _split(overrides["threads"])]
    if overrides.get("repeats") is not None:
        update["repeats"] = _int_flag("--repeats", overrides["repeats"])
    if overrides.get("out"):
        update["output"] = str(overrides["out"])
    if overrides.get("accuracy"):
        update["accuracy"] = config.accuracy.model_copy(update={"enabled": True}).model_dump()
    if overrides.get("flag"):
        update["benchmark_flags"] = config.benchmark_flags | _tool_flags_from_cli(
            _as_list(overrides["flag"])
        )
    if overrides.get("seed") is not None:
        update["seed"] = _int_flag("--seed", overrides["seed"])
    if overrides.get("label"):
        update["labels"] = dict(config.labels) | parse_labels(_as_list(overrides["label"]))
    serials = [s for s in _split(overrides.get("serial") or []) if s]
    if not serials and not config.devices.serials and os.environ.get("ANDROID_SERIAL"):
        serials = [os.environ["ANDROID_SERIAL"]]
    if serials:
        update["devices"] = config.devices.model_copy(update={"serials": serials}).model_dump()
    if not update:
        return config
    data = config.model_dump() | update
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = {"models": "--model", "delegates": "--delegate", "threads": "--threads"}.get(
            str(err["loc"][0]), f"--{err['loc'][0]}"
        )
        raise ConfigError(f"{flag}: {_message(err)}") from None


def _delegate_from_flag(config: Config, label: str) -> list[dict[str, Any]]:
    """A --delegate name picks the file's variant with that label, else every variant of that
    kind in the file, else a new delegate of that kind with the tool's defaults."""
    try:
        return [config.delegate(label).model_dump(exclude_defaults=True)]
    except KeyError:
        pass
    of_kind = [d.model_dump(exclude_defaults=True) for d in config.delegates if d.kind == label]
    if of_kind:
        return of_kind
    if label.startswith("external:"):
        name = label.split(":", 1)[1]
        raise ConfigError(
            f"--delegate: external delegate {name!r} is not in the config "
            "(its path and options must be given in farm.yaml)"
        )
    try:
        return [DelegateSpec.model_validate(label).model_dump(exclude_defaults=True)]
    except ValidationError as exc:
        raise ConfigError(f"--delegate: {_message(exc.errors()[0])}") from None


def _tool_flags_from_cli(items: list[Any]) -> dict[str, str]:
    """`--flag NAME=VALUE` items as checked tool flags; ConfigError naming the bad one."""
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep:
            raise ConfigError(f"--flag {item!r}: expected NAME=VALUE, e.g. use_caching=true")
        pairs[name.strip()] = value
    try:
        return check_tool_flags(pairs)
    except ValueError as exc:
        raise ConfigError(f"--flag: {exc}") from None


_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def check_label_name(name: str) -> str:
    """A run label's name as given; ValueError unless it is a short identifier."""
    if not _LABEL_NAME.match(name):
        raise ValueError(
            f"label name {name!r} must start with a letter or _ and hold only letters, "
            "digits, _, . and - (at most 64)"
        )
    return name


def parse_labels(items: list[str]) -> dict[str, str]:
    """`["commit=abc123", "build=4711"]` -> {"commit": "abc123", "build": "4711"}."""
    labels: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep:
            raise ConfigError(f"--label {item!r}: expected NAME=VALUE, e.g. commit=abc123")
        try:
            labels[check_label_name(name.strip())] = value.strip()
        except ValueError as exc:
            raise ConfigError(f"--label {item!r}: {exc}") from None
    return labels


def _int_flag(flag: str, value: Any) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{flag}: {value!r} is not a whole number") from None


def _split(value: Any) -> list[str]:
    items: list[str] = []
    for item in _as_list(value):
        items.extend(part.strip() for part in str(item).split(",") if part.strip())
    return items


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _relative_to(config: Config, base: Path) -> Config:
    """Relative model and binary paths in a config file are relative to the file's folder."""

    def fix(p: str) -> str:
        p = os.path.expanduser(p)
        return p if os.path.isabs(p) or base == Path(".") else str(base / p)

    return config.model_copy(
        update={
            "models": [fix(m) for m in config.models],
            "binaries": {abi: fix(p) for abi, p in config.binaries.items()},
            "accuracy": config.accuracy.model_copy(
                update={"inputs": {k: fix(p) for k, p in config.accuracy.inputs.items()}}
            ),
        }
    )


def _read_config_text(path: Path) -> str:
    try:
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        if not path.is_file():
            raise ConfigError(f"{path}: not a regular file")
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: too large for a config file (over {MAX_CONFIG_BYTES} bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None


def _parse_yaml(text: str, where: str) -> tuple[yaml.Node | None, dict[str, Any]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{where}{line}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: YAML error: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a farm config") from None
    if root is not None:
        _check_duplicate_keys(root, where)
    if data is None:
        return root, {}
    data = _joined_surrogates(data)
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1 if root is not None else 1
        raise ConfigError(f"{where}:{line}: the config must be a mapping of keys (models:, ...)")
    return root, data


def _check_duplicate_keys(root: yaml.Node, where: str) -> None:
    """Refuse a key given twice in one mapping, and alias bombs (a node budget)."""
    budget = MAX_CONFIG_NODES
    stack = [root]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(
                f"{where}: too many values (over {MAX_CONFIG_NODES}, aliases counted)"
            )
        if isinstance(node, yaml.ScalarNode) and _SURROGATE.search(node.value):
            try:
                _join_surrogates(node.value)
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{where}:{node.start_mark.line + 1}: {node.value!r} holds a lone UTF-16 "
                    "surrogate escape, not text"
                ) from None
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise ConfigError(
                            f"{where}:{key.start_mark.line + 1}: key {key.value!r} appears twice"
                        )
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _join_surrogates(text: str) -> str:
    """'\\ud83d\\ude80' escapes (as JSON writes them) joined into the one character they mean."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


def _joined_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _join_surrogates(value)
    if isinstance(value, dict):
        return {_joined_surrogates(k): _joined_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_joined_surrogates(v) for v in value]
    return value


def _first_error(exc: ValidationError, root: yaml.Node | None, where: str) -> str:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    node, used = _node_at(root, loc)
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    if err["type"] == "extra_forbidden":
        shown = loc[:-1]
    elif err["type"] == "missing":
        shown = loc
    else:
        shown = loc[: max(used, 1)]
    key = _format_loc(shown)
    return f"{where}{line}: {key}: {_message(err)}" if key else f"{where}{line}: {_message(err)}"


def _message(err: Mapping[str, Any]) -> str:
    loc = list(err["loc"])
    if err["type"] == "extra_forbidden":
        name = str(loc[-1])
        return f"unknown key {name!r}{_did_you_mean(name, _fields_at(loc[:-1]))}"
    if err["type"] == "missing":
        return f"required key {str(loc[-1])!r} is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "literal_error" or "Input should be" in msg:
        msg = f"{msg}, got {err.get('input')!r}"
    return msg


def _node_at(root: yaml.Node | None, loc: list[Any]) -> tuple[yaml.Node | None, int]:
    """The deepest YAML node along a pydantic error location, and how many parts it used."""
    node, used = root, 0
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            found = next(
                (
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == part
                ),
                None,
            )
            if found is None:
                break
            # An unknown key is best shown at the key itself.
            node = found[0] if i == len(loc) - 1 else found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
        used += 1
    return node, used


def _format_loc(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _fields_at(loc: list[Any]) -> list[str]:
    """Field names of the model found at this location of Config (for 'did you mean')."""
    cls: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int) or cls is None:
            continue
        field = cls.model_fields.get(str(part))
        cls = _model_in(field.annotation) if field is not None else None
    return list(cls.model_fields) if cls is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    close = close or [c for c in choices if len(str(word)) >= 3 and str(word) in c][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def _glob_any(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in patterns)

"""Device profiles (`device_profiles/*.yaml`): device families and the virtual lab's phones.

A profile holds what identifies a device family: its name, the getprop patterns that recognise
it (`match`), the getprop values a device of the family reports (`props`) and whether it is an
emulator. Discovery uses that much to name the family of a device it found; what a device is and
can do is read from the device itself and from the tool's own output, never from a profile.

Everything else belongs to the virtual lab and lives under `sim:` (`SimSettings`): the CPU as
/proc/cpuinfo and cpufreq show it and how fast it runs, thermal zones, battery, free storage,
the ADB features a virtual phone advertises, and how each delegate behaves on it. Only
`farm/sim` reads `sim:`. Unknown keys are errors; a lab setting at the top level (a profile
written before `sim:` existed) is named with the file and told where it goes.
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from farm.errors import ConfigError

PROFILE_DIR = Path(__file__).resolve().parent.parent / "device_profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Match(_Strict):
    """Glob patterns on getprop values; a device matches when every listed key matches one."""

    props: dict[str, list[str]] = Field(default_factory=dict)


class CpuCluster(_Strict):
    """A group of identical cores."""

    cpus: list[int]
    core: str  # e.g. "Cortex-X3"
    max_freq_khz: int
    min_freq_khz: int = 300000


class Cpu(_Strict):
    """The CPU as /proc/cpuinfo and cpufreq show it."""

    hardware: str = ""  # the "Hardware" line of /proc/cpuinfo
    clusters: list[CpuCluster]
    # Relative single-thread speed against the host (model engine) and how well
    # additional threads scale (1.0 = perfectly).
    speed: float = 1.0
    thread_scaling: float = 0.8
    # Above this hottest-zone temperature the big cores throttle: their frequency cap falls by
    # `throttle_per_c` of the maximum per degree, down to `throttle_floor` (None: never).
    throttle_c: float | None = None
    throttle_per_c: float = 0.03
    throttle_floor: float = 0.5


class ThermalZone(_Strict):
    """One /sys/class/thermal/thermal_zoneN."""

    type: str
    idle_c: float
    # Degrees gained per second of benchmark load, lost per second idle, and the ceiling.
    heat_per_s: float = 0.5
    cool_per_s: float = 0.3
    max_c: float = 80.0


class Battery(_Strict):
    """What `dumpsys battery` reports."""

    level: int = 80
    temperature_c: float = 28.0
    status: Literal["charging", "discharging", "full", "not charging"] = "charging"
    plugged: Literal["usb", "ac", "none"] = "usb"


class Failure(_Strict):
    """A way a delegate fails on this device: when the model matches, the run fails so (or,
    for `wrong_results`, silently computes garbage).

    `when`: always, quantized, float, has_op (the model holds op `op`, e.g. CUMSUM: models reach
    a phone named by content hash, so this is how a profile singles out a model) or model_glob
    (the model's file name or device path matches `model_glob`).
    """

    when: Literal["always", "quantized", "float", "has_op", "model_glob"] = "always"
    model_glob: str = ""
    op: str = ""  # a TFLite builtin (or custom) op name, for `when: has_op`
    kind: Literal["init_error", "prepare_error", "crash", "wrong_results"] = "prepare_error"
    # Tool lines the stand-in prints (e.g. the NNAPI error); `crash` dies by `signal`;
    # `wrong_results` runs without a word and writes outputs far from the CPU's.
    message: str = ""
    signal: int = 11

    @model_validator(mode="after")
    def _trigger_given(self) -> Failure:
        if self.when == "has_op" and not self.op:
            raise ValueError("when: has_op needs op (e.g. op: CUMSUM)")
        if self.when == "model_glob" and not self.model_glob:
            raise ValueError("when: model_glob needs model_glob (e.g. model_glob: '*tiny*')")
        return self

    @property
    def fails_run(self) -> bool:
        """True when the tool reports this failure while applying the delegate."""
        return self.kind not in ("crash", "wrong_results")


class Accelerator(_Strict):
    """A delegate target: the GPU, one NNAPI accelerator or the Hexagon DSP."""

    name: str = ""
    ops: list[str] = Field(default_factory=list)  # TFLite builtin op names it takes
    takes_quantized: bool = True  # accepts int8/uint8 models
    takes_float: bool = True  # accepts float32 models
    speedup: float = 2.0  # delegated part runs this much faster than CPU with 1 thread
    init_ms: float = 50.0  # extra initialisation time
    failures: list[Failure] = Field(default_factory=list)


class Gpu(Accelerator):
    """The GPU delegate: OpenCL or OpenGL backend."""

    backend: Literal["opencl", "gl"] = "opencl"
    renderer: str = ""  # GL_RENDERER, e.g. "Adreno (TM) 740"


class Nnapi(_Strict):
    """NNAPI: its accelerators in the order the runtime prefers them."""

    accelerators: list[Accelerator] = Field(default_factory=list)


class Delegates(_Strict):
    """What each delegate finds on a virtual phone.

    None means the phone lacks what the delegate needs, and the stand-in prints what the real
    tool prints then: `gpu: null`, no OpenCL library and OpenGL ES below 3.1 (the GPU delegate
    fails to initialise); `nnapi: null`, no NNAPI runtime (the delegate takes nothing);
    `hexagon: null`, no Hexagon libraries (the delegate is not created).
    """

    gpu: Gpu | None = None
    nnapi: Nnapi | None = None
    hexagon: Accelerator | None = None


class Gles(_Strict):
    """The `GLES: vendor, renderer, version` line `dumpsys SurfaceFlinger` prints."""

    vendor: str
    renderer: str = ""  # empty: the GPU delegate's `renderer`
    version: str  # GL_VERSION, e.g. "OpenGL ES 3.2 v1.r38p1"


class SimSettings(_Strict):
    """How the virtual lab simulates a phone of this family (read by farm/sim only)."""

    # ADB features the virtual phone's adbd announces in its CNXN banner.
    features: list[str] = Field(
        default_factory=lambda: ["shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir"]
    )
    cpu: Cpu
    thermal: list[ThermalZone] = Field(default_factory=list)
    battery: Battery = Field(default_factory=Battery)
    storage_free_mb: int = 8192
    delegates: Delegates = Field(default_factory=Delegates)
    # MemTotal of /proc/meminfo; the RenderEngine's GLES line (null: it prints none, as a
    # Vulkan RenderEngine does).
    mem_total_kb: int = 7_864_320
    gles: Gles | None = None


# Keys a profile kept at the top level before the lab's settings moved under `sim:`.
SIM_KEYS = tuple(SimSettings.model_fields)


class Profile(_Strict):
    """One device family: identity and matching; the lab's settings under `sim`."""

    name: str
    description: str = ""
    emulator: bool = False
    match: Match = Field(default_factory=Match)
    props: dict[str, str]  # getprop values a device of the family reports, as strings
    sim: SimSettings

    @property
    def model(self) -> str:
        return self.props.get("ro.product.model", "")

    @property
    def abis(self) -> list[str]:
        abilist = self.props.get("ro.product.cpu.abilist") or self.props.get(
            "ro.product.cpu.abi", ""
        )
        return [a for a in abilist.split(",") if a]

    def matches(self, props: dict[str, str]) -> bool:
        """True when a device's getprop values fit this profile's match patterns."""
        if not self.match.props:
            return False
        return all(
            any(fnmatch.fnmatchcase(props.get(key, ""), pat) for pat in pats)
            for key, pats in self.match.props.items()
        )


def load_profile(path: Path) -> Profile:
    """Load and validate one profile file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read device profile: {exc}") from None
    misplaced = [key for key in SIM_KEYS if isinstance(data, dict) and key in data]
    if misplaced:
        keys = ", ".join(f"`{key}`" for key in misplaced)
        verb = "belongs" if len(misplaced) == 1 else "belong"
        raise ConfigError(
            f"{path}: {keys} {verb} under `sim:` (the virtual lab's settings; "
            "move them into a `sim:` section)"
        )
    try:
        return Profile.model_validate(data)
    except Exception as exc:  # pydantic.ValidationError
        first = str(exc).splitlines()
        raise ConfigError(f"{path}: invalid device profile: {' '.join(first[:3])}") from None


def _folder_key(directory: Path) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """The folder's resolved path and each profile file's (name, mtime, size)."""
    folder = Path(directory).resolve()
    files = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            st = path.stat()
        except OSError:
            continue
        files.append((path.name, st.st_mtime_ns, st.st_size))
    return str(folder), tuple(files)


@lru_cache(maxsize=8)
def _load_folder(key: tuple[str, tuple[tuple[str, int, int], ...]]) -> dict[str, Profile]:
    folder = Path(key[0])
    profiles: dict[str, Profile] = {}
    for name, _mtime, _size in key[1]:
        profile = load_profile(folder / name)
        profiles[profile.name] = profile
    return profiles


def all_profiles(directory: Path = PROFILE_DIR) -> dict[str, Profile]:
    """Every profile in the folder, by name (reloaded when a file of it changes)."""
    if not Path(directory).is_dir():
        raise ConfigError(f"{directory}: no such folder of device profiles")
    return dict(_load_folder(_folder_key(directory)))


def get_profile(name: str, directory: Path = PROFILE_DIR) -> Profile:
    """The profile called `name`; a ConfigError listing the known ones otherwise."""
    profiles = all_profiles(directory)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"unknown device profile {name!r} (known: {known})")
    return profiles[name]


def match_profile(props: dict[str, str], directory: Path = PROFILE_DIR) -> Profile | None:
    """The first profile whose match patterns fit these getprop values."""
    for profile in all_profiles(directory).values():
        if profile.matches(props):
            return profile
    return None

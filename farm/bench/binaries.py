"""benchmark_model builds per ABI: the host cache, ELF checks, fetching, and the choice per device.

The cache lives in `$FARM_CACHE/binaries` (default `~/.cache/farm/binaries`), one build per ABI
with its sha256 and where it came from. A binary is checked against its ABI before it is used:
its ELF machine and word size, and for a dynamically linked build the Android loader as its
interpreter, so a Linux or x86 build is refused for an arm64 phone with the reason.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from farm.android.adb import Device
from farm.android.discovery import abi_list
from farm.bench.deploy import deploy_binary, remote_sha256, sha256_file
from farm.errors import BinaryError, DeviceCommandFailed
from farm.results.model import BinaryInfo

log = logging.getLogger("farm.binaries")

ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64", "x86")
# Device property naming a benchmark_model already on the device (virtual phones set it).
DEVICE_BINARY_PROP = "debug.farm.benchmark_model"

# TensorFlow's documented nightly prebuilt binaries (tflite/g3doc/performance/measurement.md).
OFFICIAL_BASE_URL = (
    "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
    "tools/nightly/latest"
)
BASE_URL_ENV = "FARM_BINARIES_URL"
OFFICIAL_NAMES = {
    "arm64-v8a": "android_aarch64_benchmark_model",
    "armeabi-v7a": "android_arm_benchmark_model",
}
FETCH_TIMEOUT_S = 120.0

EM_386, EM_ARM, EM_X86_64, EM_AARCH64 = 3, 40, 62, 183
_MACHINES = {EM_386: "x86", EM_ARM: "arm", EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}
# ABI → (ELF machine, word size, Android loader)
_ABI_ELF = {
    "arm64-v8a": (EM_AARCH64, 64, "/system/bin/linker64"),
    "armeabi-v7a": (EM_ARM, 32, "/system/bin/linker"),
    "armeabi": (EM_ARM, 32, "/system/bin/linker"),
    "x86_64": (EM_X86_64, 64, "/system/bin/linker64"),
    "x86": (EM_386, 32, "/system/bin/linker"),
}
_ELF_READ = 1 << 20  # program headers and the interpreter path sit near the start
PT_INTERP = 3


# ---------------------------------------------------------------------------- ELF


@dataclass(frozen=True)
class ElfInfo:
    """What the ELF header says about a binary."""

    bits: int
    machine: int
    interpreter: str | None  # None: statically linked

    @property
    def machine_name(self) -> str:
        return _MACHINES.get(self.machine, f"machine {self.machine}")

    def describe(self) -> str:
        link = f"interpreter {self.interpreter}" if self.interpreter else "static"
        return f"ELF {self.bits}-bit {self.machine_name}, {link}"


def parse_elf(data: bytes) -> ElfInfo:
    """Parse the ELF identification, machine and PT_INTERP; ValueError when not a usable ELF."""
    if len(data) < 52 or data[:4] != b"\x7fELF":
        raise ValueError("not an ELF executable")
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2):
        raise ValueError(f"unknown ELF class {ei_class}")
    if ei_data != 1:
        raise ValueError("big-endian ELF (Android is little-endian)")
    bits = 32 if ei_class == 1 else 64
    (machine,) = struct.unpack_from("<H", data, 18)
    if bits == 64:
        if len(data) < 64:
            raise ValueError("truncated ELF header")
        (phoff,) = struct.unpack_from("<Q", data, 32)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
    else:
        (phoff,) = struct.unpack_from("<I", data, 28)
        phentsize, phnum = struct.unpack_from("<HH", data, 42)
    interpreter = None
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + phentsize > len(data) or phentsize < (56 if bits == 64 else 32):
            raise ValueError("truncated ELF program headers")
        (p_type,) = struct.unpack_from("<I", data, at)
        if p_type != PT_INTERP:
            continue
        if bits == 64:
            (offset,) = struct.unpack_from("<Q", data, at + 8)
            (size,) = struct.unpack_from("<Q", data, at + 32)
        else:
            (offset,) = struct.unpack_from("<I", data, at + 4)
            (size,) = struct.unpack_from("<I", data, at + 16)
        raw = data[offset : offset + size]
        if len(raw) != size:
            raise ValueError("truncated ELF interpreter path")
        interpreter = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return ElfInfo(bits=bits, machine=machine, interpreter=interpreter)


def elf_problem(info: ElfInfo, abi: str) -> str | None:
    """Why a binary with this ELF header cannot run on `abi`, or None when it fits."""
    if abi not in _ABI_ELF:
        return f"unknown ABI {abi!r} (known: {', '.join(ABIS)})"
    machine, bits, loader = _ABI_ELF[abi]
    if info.machine != machine or info.bits != bits:
        return f"built for {info.bits}-bit {info.machine_name}, not {abi}"
    if info.interpreter is not None and info.interpreter != loader:
        return (
            f"a Linux build (interpreter {info.interpreter}), "
            f"not an Android one ({loader}); use an android_* build"
        )
    return None


def check_binary(path: str | os.PathLike[str], abi: str) -> ElfInfo:
    """The ELF facts of a binary that fits `abi`; BinaryError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(_ELF_READ)
    except OSError as exc:
        raise BinaryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        info = parse_elf(data)
    except ValueError as exc:
        raise BinaryError(f"{path}: {exc}, not a benchmark_model for {abi}") from None
    problem = elf_problem(info, abi)
    if problem:
        raise BinaryError(f"{path}: {problem}")
    return info


def check_binaries(binaries: dict[str, str]) -> None:
    """Check configured binaries (ABI → path) against their ABIs; BinaryError on a misfit."""
    for abi, path in binaries.items():
        check_binary(Path(path).expanduser(), abi)


# ---------------------------------------------------------------------------- cache


def farm_cache_dir() -> Path:
    """farm's host cache folder: $FARM_CACHE, else ~/.cache/farm."""
    base = os.environ.get("FARM_CACHE")
    return Path(base).expanduser() if base else Path.home() / ".cache" / "farm"


def cache_root() -> Path:
    """The binaries cache folder: $FARM_CACHE/binaries, else ~/.cache/farm/binaries."""
    return farm_cache_dir() / "binaries"


@dataclass(frozen=True)
class CachedBinary:
    """One cached build: its ABI, file, sha256, size, where it came from and when."""

    abi: str
    path: str
    sha256: str
    size: int
    source: str
    added_at: str
    elf: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class BinaryCache:
    """The host cache of benchmark_model builds, one per ABI."""

    FILE = "benchmark_model"
    META = "meta.json"

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()

    def get(self, abi: str) -> CachedBinary | None:
        """The cached build for `abi`, or None (also when its file has gone)."""
        meta = self.root / abi / self.META
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            entry = CachedBinary(**data)
        except (OSError, ValueError, TypeError):
            return None
        binary = Path(entry.path)
        if not binary.is_file() or binary.stat().st_size != entry.size:
            return None
        return entry

    def list(self) -> list[CachedBinary]:
        """Every cached build, in ABI order."""
        return [entry for abi in ABIS if (entry := self.get(abi)) is not None]

    def add(
        self, abi: str, path: str | os.PathLike[str], *, source: str | None = None
    ) -> CachedBinary:
        """Copy a checked binary into the cache for `abi` (replacing what was there)."""

        if abi not in ABIS:
            raise BinaryError(f"unknown ABI {abi!r} (known: {', '.join(ABIS)})")
        src = Path(path).expanduser()
        if not src.is_file():
            raise BinaryError(f"{src}: {'not a regular file' if src.exists() else 'no such file'}")
        info = check_binary(src, abi)
        folder = self.root / abi
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.FILE
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".add-")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        entry = CachedBinary(
            abi=abi,
            path=str(target),
            sha256=sha256_file(target),
            size=target.stat().st_size,
            source=source or str(src.resolve()),
            added_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            elf=info.describe(),
        )
        _write_atomic(folder / self.META, json.dumps(entry.to_dict(), indent=2) + "\n")
        return entry

    def fetch(
        self,
        abis: builtins.list[str] | None = None,
        *,
        base_url: str | None = None,
        flex: bool = False,
        timeout: float = FETCH_TIMEOUT_S,
    ) -> builtins.list[CachedBinary]:
        """Download official prebuilt builds into the cache (all published ABIs by default)."""
        wanted = abis or list(OFFICIAL_NAMES)
        for abi in wanted:
            if abi not in ABIS:
                raise BinaryError(f"unknown ABI {abi!r} (known: {', '.join(ABIS)})")
            if abi not in OFFICIAL_NAMES:
                raise BinaryError(
                    f"no official prebuilt benchmark_model for {abi}: build "
                    f"//tensorflow/lite/tools/benchmark:benchmark_model for Android {abi}, "
                    f"then `farm binaries add {abi} PATH`"
                )
        base = (base_url or os.environ.get(BASE_URL_ENV) or OFFICIAL_BASE_URL).rstrip("/")
        fetched = []
        for abi in wanted:
            name = OFFICIAL_NAMES[abi] + ("_plus_flex" if flex else "")
            url = f"{base}/{name}"
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".fetch-{abi}-")
            os.close(fd)
            try:
                _download(url, Path(tmp), timeout=timeout)
                fetched.append(self.add(abi, tmp, source=url))
            finally:
                Path(tmp).unlink(missing_ok=True)
        return fetched


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _download(url: str, target: Path, *, timeout: float) -> None:

    deadline = time.monotonic() + timeout
    try:
        with (
            urllib.request.urlopen(url, timeout=min(timeout, 30.0)) as resp,
            target.open("wb") as out,
        ):
            while block := resp.read(1 << 16):
                out.write(block)
                if time.monotonic() > deadline:
                    raise BinaryError(f"fetch {url}: not finished within {timeout:g} s")
    except urllib.error.HTTPError as exc:
        raise BinaryError(f"fetch {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise BinaryError(f"fetch {url}: {reason}") from None


# ---------------------------------------------------------------------------- per device


@dataclass(frozen=True)
class BinaryChoice:
    """The benchmark_model a device runs: where it is on the device and what it is."""

    remote_path: str
    sha256: str
    source: str  # "device" (the device's own), "config:<path>" or "cache:<abi>"
    abi: str
    pushed_bytes: int = 0
    translated: bool = False  # an ABI the device runs only through a translator

    def info(self) -> BinaryInfo:
        """What a cell records about its binary."""
        return BinaryInfo(
            abi=self.abi,
            source=self.source.split(":", 1)[0],
            sha256=self.sha256,
            translated=self.translated,
        )


@dataclass(frozen=True)
class Unsupported:
    """No usable binary for a device: the reason and a one-line hint."""

    reason: str
    hint: str

    def __str__(self) -> str:
        return f"{self.reason} (hint: {self.hint})"


# ABIs a CPU runs natively, by the device's primary ABI; the rest of ro.product.cpu.abilist
# (arm64 on an x86_64 emulator) runs through a binary translator, slower and unlike a phone.
_NATIVE = {
    "arm64-v8a": ("arm64-v8a", "armeabi-v7a", "armeabi"),
    "armeabi-v7a": ("armeabi-v7a", "armeabi"),
    "x86_64": ("x86_64", "x86"),
    "x86": ("x86",),
}


def native_abis(abis: list[str]) -> list[str]:
    """The ABIs of `abis` the device's CPU runs without translation, in preference order."""
    if not abis:
        return []
    native = _NATIVE.get(abis[0], (abis[0],))
    return [a for a in abis if a in native]


def binary_for(
    device: Device,
    *,
    binaries: dict[str, str] | None = None,
    cache: BinaryCache | None = None,
    push: bool = True,
    allow_translation: bool = False,
) -> BinaryChoice | Unsupported:
    """The benchmark binary for this device, pushed when needed; Unsupported with a hint if none.

    Order: a configured binary (`binaries`, ABI → host path) for the device's ABIs in preference
    order, then the device's own (getprop debug.farm.benchmark_model, used in place), then the
    cache. A candidate whose ELF header does not fit its ABI is refused and the refusal reported.
    Only ABIs the CPU runs natively are used unless `allow_translation`.
    """

    props = device.getprops()
    listed = list(abi_list(props))
    native = native_abis(listed)
    abis = listed if allow_translation else native
    cache = cache or BinaryCache()
    configured = [
        (f"config:{binaries[abi]}", Path(binaries[abi]).expanduser(), abi)
        for abi in abis
        if binaries and abi in binaries
    ]
    cached = [
        (f"cache:{abi}", Path(entry.path), abi)
        for abi in abis
        if (entry := cache.get(abi)) is not None
    ]
    own = props.get(DEVICE_BINARY_PROP, "").strip()
    refused: list[str] = []
    for index, (source, path, abi) in enumerate([*configured, *cached]):
        if own and index == len(configured):
            return _device_binary(device, own, abis)
        try:
            check_binary(path, abi)
        except BinaryError as exc:
            refused.append(str(exc))
            continue
        digest = sha256_file(path)
        translated = abi not in native
        if not push:
            return BinaryChoice("", digest, source, abi, translated=translated)
        deployed = deploy_binary(device, path, digest)
        return BinaryChoice(
            deployed.remote_path, digest, source, abi, deployed.pushed_bytes, translated
        )
    if own:
        return _device_binary(device, own, abis)
    if not abis:
        return Unsupported("the device reports no ABI (ro.product.cpu.abilist)", "check getprop")
    reason = f"no benchmark_model for {'/'.join(abis)}"
    if refused:
        reason += " (refused: " + "; ".join(refused) + ")"
    first = abis[0]
    hint = (
        f"farm binaries fetch {first}"
        if first in OFFICIAL_NAMES
        else f"build benchmark_model for Android {first}, then farm binaries add {first} PATH"
    )
    foreign = [
        a for a in listed if a not in native and (cache.get(a) or (binaries and a in binaries))
    ]
    if foreign and not allow_translation:
        reason += f"; a {foreign[0]} build exists but would run only under translation"
        hint += " (or set binaries.allow_translation: true)"
    return Unsupported(reason, hint)


def _device_binary(device: Device, own: str, abis: list[str]) -> BinaryChoice | Unsupported:
    """The device's own benchmark_model, hashed on the device; nothing is pushed."""

    st = device.stat(own)
    if st is None or not st.is_file:
        return Unsupported(
            f"{DEVICE_BINARY_PROP}={own} names no file on the device",
            f"put a benchmark_model there or clear the property on {device.serial}",
        )
    try:
        digest = remote_sha256(device, own)
    except DeviceCommandFailed as exc:
        return Unsupported(
            f"cannot hash {own} on the device: {exc.message}", "check that sha256sum runs there"
        )
    return BinaryChoice(own, digest, "device", abis[0] if abis else "")

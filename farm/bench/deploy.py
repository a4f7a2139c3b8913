"""Content-addressed deploy: files go to /data/local/tmp/farm/{bin,models} named by their hash.

A file already on the device under its hash name with the right size is not pushed again. The
number of bytes pushed is returned with each file and summed per device in `Device.bytes_pushed`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

from farm.android import paths
from farm.android.adb import Device, join_command
from farm.errors import DeviceCommandFailed, InputError

log = logging.getLogger("farm.deploy")

# Push deadline: a floor plus a slow-link rate (USB 2 manages ~20-40 MB/s).
PUSH_FLOOR_S = 30.0
PUSH_MIN_RATE = 2 * 1024 * 1024
SHELL_TIMEOUT_S = 20.0

_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()
# Device files hashed on the host: (serial, path, size, mtime) -> sha256.
_remote_hash_cache: dict[tuple[str, str, int, int], str] = {}
NO_SHA256SUM = 127  # the shell's "not found": the device has no sha256sum (Android 6, 7.x)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a host file (remembered while its size and mtime stay)."""
    p = Path(path)
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        with _hash_lock:
            if key in _hash_cache:
                return _hash_cache[key]
        digest = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    value = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = value
    return value


def push_timeout(size: int) -> float:
    """The deadline for pushing `size` bytes."""
    return PUSH_FLOOR_S + size / PUSH_MIN_RATE


class Deployed(NamedTuple):
    """A file on the device and how many bytes it took to get it there (0: already there)."""

    remote_path: str
    pushed_bytes: int


def prepare(device: Device) -> None:
    """Create the farm folders on the device."""
    device.shell(
        join_command(["mkdir", "-p", paths.BIN, paths.MODELS, paths.LOGS]),
        timeout=SHELL_TIMEOUT_S,
        check=True,
    )


def ensure_file(
    device: Device,
    local: str | os.PathLike[str],
    remote: str,
    *,
    size: int | None = None,
    mode: int = 0o644,
    timeout: float | None = None,
) -> Deployed:
    """Put `local` at `remote` unless a file of the same size is there already.

    Names are content hashes, so the size tells a complete copy from an interrupted one (which
    the next call pushes again); the push creates missing folders itself.
    """
    if size is None:
        try:
            size = Path(local).stat().st_size
        except OSError as exc:
            raise InputError(f"{os.fspath(local)}: cannot read: {exc.strerror or exc}") from None
    present = device.stat(remote)
    if present is not None and present.is_file and present.size == size:
        log.debug("[%s] %s already there", device.serial, remote)
        return Deployed(remote, 0)
    sent = device.push(local, remote, timeout=timeout or push_timeout(size), mode=mode)
    log.debug("[%s] pushed %s (%d bytes)", device.serial, remote, sent)
    return Deployed(remote, sent)


def ensure_model(device: Device, path: str | os.PathLike[str], sha256: str) -> Deployed:
    """The model on the device (pushed when missing): its device path and the bytes pushed."""
    return ensure_file(device, path, paths.model_path(sha256))


def deploy_binary(device: Device, path: str | os.PathLike[str], sha256: str) -> Deployed:
    """The benchmark binary on the device under its hash name, executable."""
    return ensure_file(device, path, paths.binary_path(sha256), mode=0o755)


def remote_sha256(device: Device, remote: str, *, timeout: float = 60.0) -> str:
    """The sha256 of a device file: computed on the device, or on the host after a pull where
    the device has no sha256sum (Android 7.x and older; remembered by size and mtime)."""
    q = join_command([remote])
    result = device.shell(
        f"if command -v sha256sum >/dev/null; then sha256sum {q}; else exit {NO_SHA256SUM}; fi",
        timeout=timeout,
    )
    if result.exit_code == NO_SHA256SUM:
        return _sha256_on_host(device, remote, timeout=timeout)
    if not result.ok:
        raise device.command_error(result)
    digest = result.output.split()[0] if result.output.split() else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
        raise DeviceCommandFailed(
            device.serial,
            f"sha256 of {remote}: unexpected output",
            command=result.command,
            output_tail=result.output[-200:],
        )
    return digest.lower()


def _sha256_on_host(device: Device, remote: str, *, timeout: float) -> str:
    """The sha256 of a device file pulled to the host, cached by its size and mtime."""
    st = device.stat(remote, timeout=timeout)
    if st is None:
        raise DeviceCommandFailed(device.serial, f"sha256 of {remote}: no such file")
    key = (device.serial, remote, st.size, st.mtime)
    with _hash_lock:
        if key in _remote_hash_cache:
            return _remote_hash_cache[key]
    with tempfile.TemporaryDirectory(prefix="farm-hash-") as folder:
        local = Path(folder) / "file"
        device.pull(remote, local, timeout=max(timeout, push_timeout(st.size)))
        digest = sha256_file(local)
    log.debug("[%s] %s hashed on the host (no sha256sum on the device)", device.serial, remote)
    with _hash_lock:
        _remote_hash_cache[key] = digest
    return digest


def clean(device: Device, *, timeout: float = SHELL_TIMEOUT_S) -> None:
    """Remove everything farm put on the device."""
    device.shell(join_command(["rm", "-rf", paths.ROOT]), timeout=timeout, check=True)

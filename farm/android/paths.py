"""Where farm keeps things on a device: one place for every device path."""

from __future__ import annotations

import posixpath

ROOT = "/data/local/tmp/farm"
BIN = f"{ROOT}/bin"
MODELS = f"{ROOT}/models"
LOGS = f"{ROOT}/logs"
# Undoes the settings a run changed (written before it changes them; farm/android/prepare.py).
RESTORE = f"{ROOT}/restore.sh"
INPUTS = f"{ROOT}/inputs"  # fixed input tensors of accuracy runs, by content hash

# Length of the content-hash prefix in device file names (64 bits).
HASH_CHARS = 16


def binary_path(sha256: str) -> str:
    """The device path of the benchmark binary with this content hash."""
    return posixpath.join(BIN, f"benchmark_model-{sha256[:HASH_CHARS]}")


def model_path(sha256: str) -> str:
    """The device path of the model with this content hash."""
    return posixpath.join(MODELS, f"{sha256[:HASH_CHARS]}.tflite")


def log_path(name: str) -> str:
    """The device path of a log file called `name` (a plain file name, no folders)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a plain log file name: {name!r}")
    return posixpath.join(LOGS, name)


def input_path(sha256: str) -> str:
    """The device path of the input tensor file with this content hash."""
    return posixpath.join(INPUTS, f"{sha256[:HASH_CHARS]}.bin")


def launcher_path(sha256: str) -> str:
    """The device path of farm's launch script with this content hash."""
    return posixpath.join(BIN, f"launch-{sha256[:HASH_CHARS]}.sh")

"""ADB's RSA authentication as adbd does it: a phone trusts the host keys in its `adb_keys`.

A host key is ADB's own public key format (what `adbkey.pub` and `adb_keys` hold, one per line):
base64 of `len, n0inv, n[len], rr[len], e` (little-endian 32-bit words), then ` user@host`. The
host signs adbd's 20-byte token as a SHA-1 digest (PKCS#1 v1.5); adbd checks the signature
against every key it trusts.
"""

from __future__ import annotations

import base64
import os
import struct
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

TOKEN_SIZE = 20


def decode_key(line: str) -> rsa.RSAPublicKey | None:
    """The RSA key of one `adb_keys` line; None when the line is not an ADB public key."""
    blob = line.strip().split(" ", 1)[0]
    try:
        raw = base64.b64decode(blob, validate=True)
        (words,) = struct.unpack_from("<I", raw)
        size = 4 * words
        if words == 0 or len(raw) != 12 + 2 * size:
            return None
        n = int.from_bytes(raw[8 : 8 + size], "little")
        (e,) = struct.unpack_from("<I", raw, 8 + 2 * size)
        return rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, struct.error, TypeError):
        return None


def signed_by(token: bytes, signature: bytes, keys: list[str]) -> bool:
    """True when `signature` is `token` signed by the private half of one of `keys`."""
    for line in keys:
        key = decode_key(line)
        if key is None:
            continue
        try:
            key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
        except (InvalidSignature, ValueError):
            continue
        return True
    return False


class TrustedKeys:
    """A phone's `adb_keys`: the host keys it lets in without asking."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[str]:
        """The keys, one line each (none when the file is missing)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [line.strip() for line in text.splitlines() if line.strip()]

    def write(self, keys: list[str]) -> None:
        """Replace the keys (duplicates dropped, order kept)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        unique = list(dict.fromkeys(k.strip() for k in keys if k.strip()))
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(f"{k}\n" for k in unique), encoding="utf-8")
        os.replace(tmp, self.path)

    def add(self, key: str) -> None:
        """Trust one more key (as tapping "Always allow from this computer" does)."""
        self.write([*self.read(), key])


def host_key_files(env: dict[str, str]) -> list[Path]:
    """Where an adb server with this environment keeps its public key (`adbkey.pub`)."""
    homes = []
    if value := env.get("ANDROID_USER_HOME"):
        homes.append(Path(value))
    if value := env.get("ANDROID_SDK_HOME"):
        homes.append(Path(value) / ".android")
    if value := env.get("HOME"):
        homes.append(Path(value) / ".android")
    return [home / "adbkey.pub" for home in dict.fromkeys(homes)]


def host_keys(env: dict[str, str]) -> list[str]:
    """The public keys of the adb server with this environment (empty when it has none yet)."""
    keys = []
    for path in host_key_files(env):
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        if text and decode_key(text) is not None:
            keys.append(text)
    return keys

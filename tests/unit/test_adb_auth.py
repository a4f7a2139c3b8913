"""ADB's RSA key format and token signatures, and the checksum old hosts want."""

from __future__ import annotations

import os
from pathlib import Path

from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_cryptography import CryptographySigner

from farm.sim.adb_auth import TrustedKeys, decode_key, host_keys, signed_by
from farm.sim.adbd import A_WRTE, HEADER, pack_message


def test_a_token_signed_by_a_trusted_key_and_no_other(tmp_path: Path) -> None:
    keygen(str(tmp_path / "mine"))
    keygen(str(tmp_path / "other"))
    mine = (tmp_path / "mine.pub").read_text()
    token = os.urandom(20)
    signature = CryptographySigner(str(tmp_path / "mine")).Sign(token)
    other = (tmp_path / "other.pub").read_text()
    assert decode_key(mine) is not None
    assert signed_by(token, signature, ["not a key", other, mine])
    assert not signed_by(token, signature, [other])
    assert not signed_by(os.urandom(20), signature, [mine])
    assert decode_key("AAAA user@host") is None and decode_key("") is None


def test_trusted_keys_file_and_the_servers_key(tmp_path: Path) -> None:
    (tmp_path / ".android").mkdir()
    keygen(str(tmp_path / ".android" / "adbkey"))
    key = (tmp_path / ".android" / "adbkey.pub").read_text().strip()
    assert host_keys({"HOME": str(tmp_path)}) == [key]
    assert host_keys({"HOME": str(tmp_path / "nowhere")}) == []
    keys = TrustedKeys(tmp_path / "phone" / "adb_keys")
    assert keys.read() == []
    keys.add(key)
    keys.add(key)
    assert keys.read() == [key]


def test_checksum_only_for_old_hosts() -> None:
    data = b"\x01\x02\xff"
    assert HEADER.unpack(pack_message(A_WRTE, 1, 2, data))[4] == 0
    assert HEADER.unpack(pack_message(A_WRTE, 1, 2, data, checksum=True))[4] == 0x102

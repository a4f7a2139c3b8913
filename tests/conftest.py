"""Fixtures shared by every test folder: a private adb server, real adb output samples."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from farm.sim.testing import AdbServer, adb_binaries, bundled_adb

ADB_OUTPUTS = Path(__file__).resolve().parent / "corpus" / "adb_outputs"


@pytest.fixture
def adb_server() -> Iterator[AdbServer]:
    """A private adb server (bundled adb 36) on a free port; killed at teardown."""
    server = AdbServer(bundled_adb()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["bundled", "debian"])
def adb_server_any(request: pytest.FixtureRequest) -> Iterator[AdbServer]:
    """The same, once with each adb build present (36 from adbutils, 29 from Debian)."""
    binaries = adb_binaries()
    if request.param not in binaries:
        pytest.skip(f"no {request.param} adb on this machine")
    server = AdbServer(binaries[request.param]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def adb_output() -> Callable[[str], str]:
    """adb_output(name) -> the text of a real adb output sample in tests/corpus/adb_outputs/.

    A sample that is missing fails the test; it never turns a check into a skip.
    """

    def read(name: str) -> str:
        path = ADB_OUTPUTS / name
        if not path.is_file():
            pytest.fail(f"adb output sample {path} is missing from the repository")
        return path.read_text(encoding="utf-8")

    return read

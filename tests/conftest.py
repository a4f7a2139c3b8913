"""Fixtures shared by every test folder: a private adb server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from farm.sim.testing import AdbServer, adb_binaries, bundled_adb


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

"""Fixtures for tests that cross the real adb server to virtual phones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.sim.lab import DEFAULT_PHONE_OS, Lab
from farm.sim.testing import AdbServer

# The phone OS the lab tests run on (kept as a name other test modules import).
PHONE_OS = DEFAULT_PHONE_OS


def lab_starter(server: AdbServer, tmp_path: Path) -> tuple[Callable[..., Lab], list[Lab]]:
    labs: list[Lab] = []

    def start(
        profiles: list[str], *, engine: str = "model", per_process: bool = False, **kw: Any
    ) -> Lab:
        lab = Lab.start(
            profiles,
            engine=engine,
            per_process=per_process,
            adb_port=server.port,
            adb_path=server.adb_path,
            env=server.env,
            directory=tmp_path / f"lab{len(labs)}",
            phone_os=kw.pop("phone_os", PHONE_OS),
            **kw,
        )
        labs.append(lab)
        return lab

    return start, labs


@pytest.fixture
def start_lab(adb_server: AdbServer, tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """start_lab(["pixel_7", ...], engine="model", per_process=False) -> a running Lab."""
    start, labs = lab_starter(adb_server, tmp_path)
    yield start
    for lab in labs:
        lab.down()


@pytest.fixture
def start_lab_any(adb_server_any: AdbServer, tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """start_lab on a server of each adb build."""
    start, labs = lab_starter(adb_server_any, tmp_path)
    yield start
    for lab in labs:
        lab.down()

"""Fixtures shared by every test folder: a private adb server, real adb output samples.

And what the host must have. A test that needs something of the host (bubblewrap for the
virtual phones' sandbox, Debian's adb, mount namespaces) says so with
`@pytest.mark.needs("bubblewrap")` (or calls `require_env`). Without it the test is skipped, and
the run ends with one line saying what did not run and why; in strict mode (FARM_STRICT_ENV=1,
`make test STRICT=1`, `.ci/run`; also when CI=true and FARM_STRICT_ENV is not 0) it fails
instead, so a host that lacks them cannot pass with part of the suite unrun.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from farm.profiles import get_profile
from farm.sim.phone_os import PhoneOS, bubblewrap_available
from farm.sim.testing import DEBIAN_ADB, AdbServer, adb_binaries, bundled_adb

ADB_OUTPUTS = Path(__file__).resolve().parent / "corpus" / "adb_outputs"
STRICT_VAR = "FARM_STRICT_ENV"
ENV_PREFIX = "environment: "


# -- what the host has ---------------------------------------------------------------------------


def strict_env() -> bool:
    """True when a missing host requirement must fail the run instead of skipping tests."""
    value = os.environ.get(STRICT_VAR, "").strip().lower()
    if value:
        return value not in ("0", "false", "no")
    return os.environ.get("CI", "").strip().lower() in ("1", "true")


def _bubblewrap() -> str | None:
    """The virtual phones' sandbox: bubblewrap installed, and able to start one here."""
    if not bubblewrap_available():
        return (
            "bubblewrap (bwrap, nsenter, setpriv) or Android's userland (mksh, toybox, busybox) "
            "is not installed (scripts/setup-system.sh)"
        )

    async def start(phone: PhoneOS) -> None:
        proc = await phone.spawn("true")
        await asyncio.wait_for(proc.wait(), 30)

    quiet = logging.getLogger("farm.sim.phone_os")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the probe's own "running unconfined" warning
    try:
        with tempfile.TemporaryDirectory(prefix="farm-env-") as folder:
            phone = PhoneOS("ENVPROBE", get_profile("pixel_7"), Path(folder) / "phone")
            try:
                asyncio.run(start(phone))
                confined = phone.confined
            finally:
                phone.kill_all()
    finally:
        quiet.setLevel(level)
    if not confined:
        return "bubblewrap cannot start a sandbox here (unprivileged user namespaces disabled?)"
    return None


def _debian_adb() -> str | None:
    if "debian" not in adb_binaries():
        return f"Debian's adb ({DEBIAN_ADB}) is not installed (apt-get install adb)"
    return None


def _mount_namespace() -> str | None:
    """A private mount namespace where a tmpfs can be mounted (unshare, user namespaces)."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        [*_unshare(), "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}"
    return None


def _unshare() -> list[str]:
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]


CHROMIUM = "/usr/bin/chromium"


def _chromium() -> str | None:
    """Debian's chromium, the browser the HTML report is checked in."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"Debian's chromium ({CHROMIUM}) is not installed (apt-get install chromium)"
    return None


def pg_tool(name: str) -> str | None:
    """A PostgreSQL server program (initdb, pg_ctl): on PATH or in Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


def _postgresql() -> str | None:
    """A PostgreSQL server the tests can start (as the `postgres` user when run as root)."""
    if pg_tool("initdb") is None or pg_tool("pg_ctl") is None:
        return (
            "the PostgreSQL server (initdb, pg_ctl) is not installed (apt-get install postgresql)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to start PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and runuser (util-linux) is missing"
    return None


PROBES: dict[str, Callable[[], str | None]] = {
    "bubblewrap": _bubblewrap,
    "debian-adb": _debian_adb,
    "mount-namespace": _mount_namespace,
    "chromium": _chromium,
    "postgresql": _postgresql,
}


@functools.cache
def missing(what: str) -> str | None:
    """Why the host lacks `what` (a key of PROBES); None when it has it."""
    if what not in PROBES:
        raise ValueError(f"unknown host requirement {what!r} (known: {', '.join(PROBES)})")
    return PROBES[what]()


_not_run: Counter[str] = Counter()


def environment_missing(reason: str) -> NoReturn:
    """Skip the current test for a missing host requirement (fail it in strict mode)."""
    _not_run[reason] += 1
    if strict_env():
        pytest.fail(f"{ENV_PREFIX}{reason} [strict: {STRICT_VAR}]", pytrace=False)
    pytest.skip(f"{ENV_PREFIX}{reason}")


def require_env(what: str) -> None:
    """Go on only when the host has `what` (see PROBES); else environment_missing."""
    reason = missing(what)
    if reason is not None:
        environment_missing(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        for what in mark.args:
            require_env(what)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _not_run:
        return
    total = sum(_not_run.values())
    why = "; ".join(f"{n} × {reason}" for reason, n in _not_run.most_common())
    if strict_env():
        line = f"environment: {total} test(s) FAILED for want of the host's tools: {why}"
    else:
        line = (
            f"environment: {total} test(s) did not run: {why} "
            f"(`make system` installs; {STRICT_VAR}=1 makes this a failure)"
        )
    terminalreporter.write_line(line, yellow=True, bold=True)


# -- fixtures ------------------------------------------------------------------------------------


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
    """The same, once with each adb build (36 from adbutils, 29 from Debian's package)."""
    if request.param == "debian":
        require_env("debian-adb")
    server = AdbServer(adb_binaries()[request.param]).start()
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A private PostgreSQL server for the whole session (initdb in a temp folder, trust auth on
    127.0.0.1 and a free port): its URL without a database name. Started as `postgres` when the
    tests run as root (initdb refuses root); stopped and removed at the end."""
    require_env("postgresql")
    folder = Path(tempfile.mkdtemp(prefix="farm-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = folder / "data"

    def pg(*args: str, timeout: float = 120) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=timeout)

    initdb, pg_ctl = pg_tool("initdb"), pg_tool("pg_ctl")
    assert initdb and pg_ctl
    pg(initdb, "-D", str(data), "-A", "trust", "-U", "farm", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -F"
    pg(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "-t", "60", "start")
    try:
        yield f"postgresql://farm@127.0.0.1:{port}"
    finally:
        try:
            pg(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server: its URL."""
    import psycopg

    name = f"farm_{os.getpid()}_{next(_DB_NUMBERS)}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True, connect_timeout=10) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


_DB_NUMBERS = itertools.count()

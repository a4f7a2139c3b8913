"""Helpers for tests and benchmarks: a private adb server on a free port, and adb binaries."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from farm.errors import AdbServerError

if TYPE_CHECKING:
    from farm.sim.lab import Lab

DEBIAN_ADB = "/usr/bin/adb"


def bundled_adb() -> str:
    """The adb inside the adbutils wheel (platform-tools 36)."""
    import adbutils

    return str(Path(adbutils.__file__).parent / "binaries" / "adb")


def adb_binaries() -> dict[str, str]:
    """The adb builds present on this machine: "bundled" (36) and "debian" (29)."""
    found = {}
    if os.access(bundled_adb(), os.X_OK):
        found["bundled"] = bundled_adb()
    if os.access(DEBIAN_ADB, os.X_OK):
        found["debian"] = DEBIAN_ADB
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now, outside adb's emulator range."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not 5554 <= port <= 5585:
            return port


@dataclass
class AdbServer:
    """A private adb server: own port, own HOME and TMPDIR, pinned binary.

    `emulator_scan`: the server looks for emulators on ports 5555-5585 as it starts (as a
    developer's or CI's adb server does); otherwise it sees only the phones attached to it.
    """

    adb_path: str
    port: int = 0
    host: str = "127.0.0.1"
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="farm-adb-")))
    env: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None
    _own_home: bool = True
    emulator_scan: bool = False

    def start(self, timeout: float = 20.0) -> AdbServer:
        """Start the server in the foreground of a child process and wait until it answers.

        The server dies with the thread that starts it (even when that process is SIGKILLed).
        """
        from farm.sim.lab import die_with_parent

        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            self.port = self.port or free_port()
            self.env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self.home),
                "TMPDIR": str(self.home / "tmp"),
                "ANDROID_ADB_SERVER_PORT": str(self.port),
                "ANDROID_USER_HOME": str(self.home / ".android"),
                "ADBUTILS_ADB_PATH": self.adb_path,
                # No mDNS, USB or emulator-port scanning: only the phones we attach.
                "ADB_MDNS": "0",
                "ADB_USB": "0",
                "ADB_EMU": "0",
                "LANG": "C.UTF-8",
            }
            if self.emulator_scan:
                del self.env["ADB_EMU"]
            log = open(self.home / "adb-server.log", "ab")  # noqa: SIM115
            self._proc = subprocess.Popen(
                [self.adb_path, "-P", str(self.port), "nodaemon", "server"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._proc.poll() is None:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((self.host, self.port), timeout=0.5),
                ):
                    result = self.adb("version", timeout=10)
                    if result.returncode == 0:
                        return self
                time.sleep(0.05)
            self._kill()
            self.port = 0  # port taken meanwhile: try another
        raise AdbServerError(f"adb server {self.adb_path} did not start (see {self.home})")

    @property
    def address(self) -> str:
        """HOST:PORT, as `farm --server` and `adb_servers` take it."""
        return f"{self.host}:{self.port}"

    def adb(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run this adb build against this server."""
        return subprocess.run(
            [self.adb_path, "-P", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )

    def client(self):  # -> adbutils.AdbClient
        """An adbutils client for this server."""
        import adbutils

        return adbutils.AdbClient(host=self.host, port=self.port, socket_timeout=30)

    def stop(self) -> None:
        """Kill the server and remove its HOME."""
        self._kill()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, 9)
                self._proc.wait(5)
            self._proc = None


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> Path:
    """A file of `size` random bytes."""
    path.write_bytes(os.urandom(size))
    return path


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until_gone(marker: str, timeout: float = 10.0) -> list[int]:
    """Wait for every process carrying `marker` to end; the survivors after `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def wait_until_present(marker: str, timeout: float = 10.0) -> list[int]:
    """Wait for a process carrying `marker` to appear; their pids."""
    deadline = time.monotonic() + timeout
    while not (found := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` until it is true; an AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def benchmarks_on(serial: str) -> list[int]:
    """Host pids of the benchmark_model stand-ins running on the virtual phone `serial`."""
    found = []
    for pid in processes_with("farm.sim.benchmark_model"):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"FARM_SIM_SERIAL={serial}".encode() in environ:
            found.append(pid)
    return found


def set_time_scale(lab: Lab, scale: float) -> Lab:
    """Make the phones' benchmark stand-in sleep `scale` × the simulated time (0: not at all).

    The numbers it prints stay the same; only the wall time of a run changes. Each benchmark
    reads it as it starts.
    """
    for phone in lab.phones:
        (Path(phone.root) / "state" / "time_scale").write_text(f"{scale}\n")
    return lab

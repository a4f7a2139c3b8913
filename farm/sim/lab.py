"""The virtual lab: start virtual phones, attach them to an adb server, inject faults, stop them.

Phones run in host processes (`python -m farm.sim.lab host ...`): either one process for all
phones (one asyncio loop) or one process per phone, so that a phone can be killed for real. The
lab's state lives in a folder (`lab.json`), so `Lab.load(dir).down()` works from another shell.
Each host process takes fault requests on a small control channel (TCP on 127.0.0.1, with a
token from the state folder). A phone killed for real can be restarted on the same port, serial
and folder (`Lab.restart`), as a phone that rebooted. All phones of a lab share one host CPU
lock file (`cpu.lock` in the state folder), which the litert engine holds while it times
inferences. Host processes of a lab that is not detached die with the process that started it.
`down` returns only once every process of the lab is gone: what does not stop when asked is
killed with SIGKILL after a grace period, and `down` says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from farm.errors import ConfigError, FarmError, LabError
from farm.profiles import PROFILE_DIR, get_profile
from farm.sim.adb_auth import TrustedKeys, host_key_files, host_keys
from farm.sim.adbd import VirtualPhone
from farm.sim.faults import apply_fault, parse_fault

STATE_FILE = "lab.json"
CPU_LOCK_FILE = "cpu.lock"
HOST_KEYS_FILE = "adb_keys"
HOST_KEY_WAIT_S = 10.0  # the adb server's public keys, trusted by every new phone
KILL_WAIT_S = 5.0  # how long a process killed with SIGKILL may take to be gone
ADB_ANSWER_S = 3.0  # adb disconnect / kill-server on a server that answers take milliseconds
PR_SET_PDEATHSIG = 1
DEFAULT_PHONE_OS = "farm.sim.phone_os:PhoneOS"
EMULATOR_PORTS = range(5554, 5586)  # adb servers scan these by themselves
EMULATOR_ADB_PORTS = range(5555, 5586, 2)  # an emulator's adbd: emulator-(PORT-1)
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
log = logging.getLogger("farm.sim.lab")


def default_lab_dir() -> Path:
    """Where `farm lab` keeps its state unless told otherwise."""
    if env := os.environ.get("FARM_LAB_DIR"):
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "farm" / "lab"


def default_adb_port() -> int:
    """adb's own convention: $ANDROID_ADB_SERVER_PORT, else 5037."""
    value = os.environ.get("ANDROID_ADB_SERVER_PORT", "5037")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"ANDROID_ADB_SERVER_PORT={value!r} is not a port number") from None


def default_adb_path() -> str:
    """The adb binary the lab uses: $ADBUTILS_ADB_PATH, else the one in the adbutils wheel."""
    if env := os.environ.get("ADBUTILS_ADB_PATH"):
        return env
    import adbutils

    bundled = Path(adbutils.__file__).parent / "binaries" / "adb"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("adb")
    if not found:
        raise LabError("no adb binary found (install adbutils or set ADBUTILS_ADB_PATH)")
    return found


def die_with_parent(sig: int = signal.SIGKILL) -> Any:
    """A `preexec_fn` making the child get `sig` when the thread that started it ends.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere the child is left as it is. Start such
    children from a thread that lives as long as they should (the main thread).
    """

    parent = os.getpid()
    try:  # looked up here: the child between fork and exec only calls it
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def parse_profile_specs(specs: list[str], profile_dir: Path | None = None) -> list[str]:
    """`["pixel_7:2", "emulator_x86_64"]` -> ["pixel_7", "pixel_7", "emulator_x86_64"]."""

    names: list[str] = []
    for spec in specs:
        name, sep, count_text = spec.partition(":")
        count = 1
        if sep:
            try:
                count = int(count_text)
            except ValueError:
                raise ConfigError(f"--profile {spec!r}: count must be a number") from None
            if count < 1:
                raise ConfigError(f"--profile {spec!r}: count must be at least 1")
        get_profile(name, profile_dir or PROFILE_DIR)  # unknown names fail, listing known ones
        names.extend([name] * count)
    return names


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _bind_phone_socket(
    host: str = "127.0.0.1", port: int = 0, *, emulator: bool = False
) -> socket.socket:
    """A listening socket on `port`, else on a free port outside the emulator range (inside
    it, on the first free emulator adbd port, with `emulator`)."""
    if emulator and not port:
        for candidate in EMULATOR_ADB_PORTS:
            if _port_in_use(candidate - 1, host):  # an emulator's console: the pair is taken
                continue
            with contextlib.suppress(LabError):
                return _bind_phone_socket(host, candidate)
        raise LabError("no free port pair in the adb emulator range 5554-5585")
    if port:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise LabError(f"cannot listen on {host}:{port}: {exc}") from None
        sock.listen(16)
        sock.setblocking(False)
        return sock
    for _ in range(50):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        if sock.getsockname()[1] not in EMULATOR_PORTS:
            sock.listen(16)
            sock.setblocking(False)
            return sock
        sock.close()
    raise LabError("no free port outside the adb emulator range")


def _atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _pid_is_host(pid: int) -> bool:
    """True when pid is alive and is a lab host process (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if status.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return b"farm.sim.lab" in cmdline


def phone_processes(serials: set[str]) -> list[int]:
    """Live host pids of processes started for phones with these serials (by environment)."""
    needles = {f"FARM_SIM_SERIAL={serial}".encode() for serial in serials}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid() or not _pid_alive(int(entry)):
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needles.intersection(environ):
            found.append(int(entry))
    return found


def end_phone_processes(serials: set[str], timeout: float = 10.0) -> list[int]:
    """SIGKILL every process of these phones until none is left; the survivors after timeout."""
    if not serials:
        return []
    deadline = time.monotonic() + timeout
    while (pids := phone_processes(serials)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    return pids


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of `pids` is alive (a zombie counts as gone); those alive after timeout."""
    deadline = time.monotonic() + timeout
    while (alive := [pid for pid in pids if _pid_alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


def _adb_server_args(port: int) -> list[str]:
    """What the command line of an adb server listening on `port` holds (adb 29 to 36)."""
    return ["fork-server", f"tcp:{port}"]


def adb_server_pid(port: int) -> int:
    """The pid of the adb server process listening on `port` (adb start-server), else 0."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _is_adb_server(int(entry), port):
            return int(entry)
    return 0


def _is_adb_server(pid: int, port: int) -> bool:
    """True when `pid` is alive and is the adb server of `port` (not a recycled pid)."""
    if pid <= 0 or not _pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return all(arg in args for arg in _adb_server_args(port))


@dataclass
class LabPhone:
    """One phone of a lab as its state file records it."""

    serial: str
    profile: str
    port: int
    pid: int
    adb_port: int
    host: int  # index of the host process
    root: str = ""


@dataclass
class _Host:
    index: int
    pid: int
    control_port: int
    token: str
    log: str


@dataclass
class Lab:
    """A running virtual lab (see module docstring)."""

    dir: Path
    adb_port: int
    adb_path: str
    engine: str = "model"
    phones: list[LabPhone] = field(default_factory=list)
    hosts: list[_Host] = field(default_factory=list)
    started_adb_server: bool = False
    adb_server_pid: int = 0  # the server's pid when the lab started it
    profile_dir: str = ""  # "" for the shipped device_profiles/
    detached: bool = False
    phone_os: str = DEFAULT_PHONE_OS
    env: dict[str, str] = field(default_factory=dict, repr=False)
    emulator: bool = False  # phones on emulator ports, named emulator-NNNN by the adb server

    # Starting.
    @classmethod
    def start(
        cls,
        profiles: list[str],
        *,
        engine: str = "model",
        per_process: bool = False,
        adb_port: int | None = None,
        adb_path: str | None = None,
        directory: Path | None = None,
        env: dict[str, str] | None = None,
        faults: dict[int, list[tuple[str, dict[str, Any]]]] | None = None,
        detach: bool = False,
        phone_os: str = DEFAULT_PHONE_OS,
        timeout: float = 60.0,
        profile_dir: Path | None = None,
        emulator: bool = False,
    ) -> Lab:
        """Start phones of the given profile names and attach them to the adb server.

        `faults` maps a phone's index in `profiles` to faults in force from its start.
        `detach` lets the phones outlive this process (the CLI); otherwise they stop with it.
        `profile_dir` takes the profiles from that folder instead of device_profiles/.
        `emulator` puts the phones on the emulator ports (5555, 5557, ...), where the adb
        server finds them as `emulator-5554`, ... as it finds a local emulator.
        Every phone trusts the adb server's key (`adbkey.pub` of its environment), as a phone
        whose owner allowed this computer; see `authorize` for other hosts.
        """
        if engine not in ("litert", "model"):
            raise ConfigError(f"unknown engine {engine!r} (known: litert, model)")
        if not profiles:
            raise ConfigError("no phones asked for (give at least one profile)")
        if profile_dir is not None:
            profile_dir = Path(profile_dir).resolve()
            if not profile_dir.is_dir():
                raise ConfigError(f"--profile-dir {profile_dir}: no such folder")
        parse_profile_specs(profiles, profile_dir)
        directory = Path(directory or default_lab_dir()).resolve()
        if (directory / STATE_FILE).exists():
            stale = cls.load(directory)
            if any(_pid_is_host(h.pid) for h in stale.hosts):
                raise LabError(f"a lab is already up in {directory} (run `farm lab down` first)")
            stale.down()  # left behind by a lab whose processes are gone
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts").mkdir(exist_ok=True)
        env = dict(env if env is not None else os.environ)
        lab = cls(
            dir=directory,
            adb_port=adb_port if adb_port is not None else default_adb_port(),
            adb_path=adb_path or default_adb_path(),
            engine=engine,
            env=env,
            profile_dir=str(profile_dir or ""),
            detached=detach,
            phone_os=phone_os,
            emulator=emulator,
        )
        (directory / CPU_LOCK_FILE).touch(mode=0o644, exist_ok=True)
        groups = (
            [[i] for i in range(len(profiles))] if per_process else [list(range(len(profiles)))]
        )
        deadline = time.monotonic() + timeout
        procs: list[subprocess.Popen[bytes]] = []
        try:
            lab._ensure_server()
            lab._write_host_keys()
            for index, members in enumerate(groups):
                procs.append(
                    lab._spawn_host(
                        index,
                        [profiles[i] for i in members],
                        {
                            str(k): faults[i]
                            for k, i in enumerate(members)
                            if faults and i in faults
                        },
                        detach=detach,
                        phone_os=phone_os,
                    )
                )
            for index, proc in enumerate(procs):
                lab._await_host(index, proc, deadline)
            lab._save()
            lab._attach(deadline, expect_unauthorized=_unauthorized_indexes(faults))
        except BaseException:
            with contextlib.suppress(LabError):  # the error that stopped the start comes first
                lab.down()
            raise
        return lab

    def _spawn_host(
        self,
        index: int,
        profiles: list[str],
        faults: dict[str, Any],
        *,
        detach: bool,
        phone_os: str,
        ports: list[int] | None = None,
    ) -> subprocess.Popen[bytes]:
        token = secrets.token_hex(16)
        logfile = self.dir / "hosts" / f"host-{index}.log"
        args = [
            sys.executable,
            "-m",
            "farm.sim.lab",
            "host",
            "--dir",
            str(self.dir),
            "--index",
            str(index),
            "--engine",
            self.engine,
            "--phone-os",
            phone_os,
            "--faults",
            json.dumps(faults),
            "--cpu-lock",
            str(self.dir / CPU_LOCK_FILE),
            "--adb-keys",
            str(self.dir / HOST_KEYS_FILE),
        ]
        if self.emulator:
            args.append("--emulator")
        if self.profile_dir:
            args += ["--profile-dir", self.profile_dir]
        if ports:
            args += ["--ports", ",".join(str(p) for p in ports)]
        if not detach:
            args += ["--watch-pid", str(os.getpid())]
        args += profiles
        env = dict(self.env)
        env["FARM_LAB_TOKEN"] = token
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.dir),
                start_new_session=True,
                preexec_fn=None if detach else die_with_parent(),
            )
        host = _Host(index, proc.pid, 0, token, str(logfile))
        if index < len(self.hosts):
            self.hosts[index] = host
        else:
            self.hosts.append(host)
        return proc

    def _await_host(self, index: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
        ready = self.dir / "hosts" / f"host-{index}.json"
        while not ready.exists():
            if proc.poll() is not None:
                tail = Path(self.hosts[index].log).read_text(errors="replace").strip()
                last = tail.splitlines()[-1] if tail else f"exit code {proc.returncode}"
                raise LabError(f"lab host {index} failed to start: {last}")
            if time.monotonic() > deadline:
                raise LabError(f"lab host {index} did not start in time (see {ready.parent})")
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        self.hosts[index].control_port = info["control_port"]
        self.phones = [p for p in self.phones if p.host != index]
        for phone in info["phones"]:
            self.phones.append(
                LabPhone(
                    serial=f"emulator-{phone['port'] - 1}" if self.emulator else phone["serial"],
                    profile=phone["profile"],
                    port=phone["port"],
                    pid=proc.pid,
                    adb_port=self.adb_port,
                    host=index,
                    root=phone["root"],
                )
            )
        self.phones.sort(key=lambda p: p.host)  # stable: a restarted phone keeps its place

    # The adb side.
    def adb(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the lab's adb against its server."""
        env = dict(self.env)
        env["ANDROID_ADB_SERVER_PORT"] = str(self.adb_port)
        try:
            return subprocess.run(
                [self.adb_path, "-P", str(self.adb_port), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"adb {' '.join(args)} did not answer in {timeout:.0f}s") from None
        except OSError as exc:
            raise LabError(f"cannot run adb at {self.adb_path}: {exc}") from None

    def _ensure_server(self) -> None:
        """Start an adb server on the lab's port when none answers there."""
        if _port_in_use(self.adb_port):
            return
        result = self.adb("start-server")
        if result.returncode != 0:
            raise LabError(f"cannot start adb server on port {self.adb_port}: {result.stderr}")
        self.started_adb_server = True
        self.adb_server_pid = adb_server_pid(self.adb_port)
        self._save()

    def _write_host_keys(self) -> None:
        """Note the adb server's public keys, for new phones to trust."""
        deadline = time.monotonic() + HOST_KEY_WAIT_S  # a new server writes its key soon after
        while not (keys := host_keys(self.env)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not keys:
            where = ", ".join(str(p) for p in host_key_files(self.env))
            raise LabError(
                f"no adb public key found ({where}): the phones could not trust the adb server"
            )
        TrustedKeys(self.dir / HOST_KEYS_FILE).write(keys)

    def connect(self, phone: LabPhone) -> None:
        """Ask the adb server to attach the phone: `adb connect`, or for a phone on an emulator
        port, the `host:emulator:PORT` request a starting emulator sends."""
        if not self.emulator:
            result = self.adb("connect", f"127.0.0.1:{phone.port}")
            if "cannot connect" in result.stdout or "failed to connect" in result.stdout:
                raise LabError(f"[{phone.serial}] adb connect failed: {result.stdout.strip()}")
            return
        service = f"host:emulator:{phone.port}".encode()
        try:
            with socket.create_connection(("127.0.0.1", self.adb_port), timeout=ADB_ANSWER_S) as s:
                s.sendall(b"%04x" % len(service) + service)
        except OSError as exc:
            raise LabError(f"[{phone.serial}] adb server not reachable: {exc}") from None

    def _attach(self, deadline: float, expect_unauthorized: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self._ensure_server()
        for phone in self.phones:
            self.connect(phone)
        wanted = {
            p.serial: ("unauthorized" if i in expect_unauthorized else "device")
            for i, p in enumerate(self.phones)
        }
        while True:
            states = self.adb_states()
            missing = [s for s, want in wanted.items() if states.get(s) != want]
            if not missing:
                return
            if time.monotonic() > deadline:
                shown = ", ".join(f"{s}={states.get(s, 'absent')}" for s in missing)
                raise LabError(f"phones not online in time: {shown}")
            time.sleep(0.05)

    def adb_states(self) -> dict[str, str]:
        """serial -> state as `adb devices` shows it, for the whole server."""
        result = self.adb("devices")
        states: dict[str, str] = {}
        for line in result.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2:
                states[parts[0]] = parts[1]
        return states

    def wait_state(self, serial: str, state: str, timeout: float = 30.0) -> None:
        """Wait until the adb server shows the phone in `state` ("absent" for gone)."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.adb_states().get(serial, "absent")
            if now == state:
                return
            if time.monotonic() > deadline:
                raise LabError(f"[{serial}] still {now}, not {state}, after {timeout:.0f}s")
            time.sleep(0.05)

    # Running.
    def phone(self, serial: str) -> LabPhone:
        for phone in self.phones:
            if phone.serial == serial or f"127.0.0.1:{phone.port}" == serial:
                return phone
        raise LabError(f"no phone {serial!r} in the lab at {self.dir}")

    def fault(self, serial: str, kind: str, **options: Any) -> None:
        """Make a phone show a fault now (see farm.sim.faults for kinds and options).

        After `clear`, waits until the adb server shows the phone as `device` again (attaching
        it anew when the server gave up on it while it was away).
        """

        parse_fault(kind, options)
        self._control(serial, {"kind": kind, "options": options})
        if kind == "clear" and _port_in_use(self.adb_port):  # adb would start a server
            self.reattach(serial)

    def authorize(self, serial: str) -> int:
        """Accept the host keys waiting on a phone, as its owner tapping "Allow" does.

        The phone trusts them from then on; returns how many were accepted. A LabError when no
        host is waiting.
        """
        answer = self._control(serial, {"kind": "authorize", "options": {}})
        return int(answer.get("accepted", 0))

    def reattach(self, serial: str, timeout: float = 30.0) -> None:
        """Wait until the adb server shows the phone as `device`; attach it again if absent."""
        phone = self.phone(serial)
        deadline = time.monotonic() + timeout
        while True:
            state = self.adb_states().get(phone.serial, "absent")
            if state == "device":
                return
            if state == "absent":
                self.connect(phone)
            if time.monotonic() > deadline:
                raise LabError(f"[{serial}] still {state}, not device, after {timeout:.0f}s")
            time.sleep(0.1)

    def _control(self, serial: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send a request to the host process of a phone; its answer (a LabError if refused)."""
        phone = self.phone(serial)
        host = self.hosts[phone.host]
        kind = request["kind"]
        request = {**request, "token": host.token, "serial": f"127.0.0.1:{phone.port}"}
        try:
            with socket.create_connection(("127.0.0.1", host.control_port), timeout=10) as sock:
                sock.sendall(json.dumps(request).encode() + b"\n")
                reply = sock.makefile("rb").readline()
        except OSError as exc:
            raise LabError(f"[{serial}] lab host not reachable: {exc}") from None
        if not reply:
            raise LabError(f"[{serial}] lab host closed the control channel")
        answer: dict[str, Any] = json.loads(reply)
        if not answer.get("ok"):
            what = "authorize" if kind == "authorize" else f"fault {kind}"
            raise LabError(f"[{serial}] {what} refused: {answer.get('error')}")
        return answer

    def kill(self, serial: str) -> None:
        """Kill a phone's process for real (needs one process per phone)."""
        phone = self.phone(serial)
        sharing = [p.serial for p in self.phones if p.host == phone.host]
        if len(sharing) > 1:
            raise LabError(
                f"[{serial}] shares its process with {len(sharing) - 1} phone(s); "
                "start the lab with one process per phone"
            )
        with contextlib.suppress(ProcessLookupError):
            os.kill(phone.pid, signal.SIGKILL)
        for _ in range(200):
            if not _pid_alive(phone.pid):
                break
            time.sleep(0.01)

    def restart(self, serial: str, timeout: float = 60.0) -> LabPhone:
        """Start a phone again (killed first if it still runs), as a phone that rebooted.

        Same port, serial and folder: files pushed before are still there; faults are cleared.
        Needs one process per phone. The adb server reconnects it; returns the phone once online.
        """
        phone = self.phone(serial)
        sharing = [p for p in self.phones if p.host == phone.host]
        if len(sharing) > 1:
            raise LabError(
                f"[{serial}] shares its process with {len(sharing) - 1} phone(s); "
                "start the lab with one process per phone"
            )
        if _pid_is_host(phone.pid):
            self.kill(phone.serial)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(phone.pid, os.WNOHANG)
        (self.dir / "hosts" / f"host-{phone.host}.json").unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        proc = self._spawn_host(
            phone.host,
            [phone.profile],
            {},
            detach=self.detached,
            phone_os=self.phone_os,
            ports=[phone.port],
        )
        try:
            self._await_host(phone.host, proc, deadline)
        finally:
            self._save()
        restarted = self.phone(serial)
        self.connect(restarted)
        self.wait_state(restarted.serial, "device", timeout=max(deadline - time.monotonic(), 1.0))
        return restarted

    def status(self) -> list[dict[str, Any]]:
        """Every phone with its adb state and whether its process is alive."""
        states = self.adb_states() if _port_in_use(self.adb_port) else {}
        return [
            {**asdict(p), "state": states.get(p.serial, "absent"), "alive": _pid_alive(p.pid)}
            for p in self.phones
        ]

    # Stopping.
    def down(self, timeout: float = 10.0) -> list[str]:
        """Detach the phones, stop every process the lab started and clear its state.

        Hosts get SIGTERM and `timeout` seconds to stop their phones; a host still running then,
        a process of a phone that outlived its host and an adb server the lab started that does
        not stop on `adb kill-server` are killed with SIGKILL. Returns one line for each such
        kill (empty when everything stopped when asked), once none of them is left; a LabError
        names the processes that even SIGKILL did not end (the state is kept: run it again).
        """
        said: list[str] = []
        if self.phones and _port_in_use(self.adb_port) and not self.emulator:
            for phone in self.phones:
                try:
                    self.adb("disconnect", phone.serial, timeout=ADB_ANSWER_S)
                except LabError:
                    break  # the server does not answer; the phones' ends close with their hosts
        hosts = [h.pid for h in self.hosts if _pid_is_host(h.pid)]
        for pid in hosts:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        late = _wait_gone(hosts, timeout)
        for pid in late:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # the host leads its process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if late:
            said.append(
                f"lab host(s) {', '.join(map(str, late))} did not stop within {timeout:g} s "
                "of SIGTERM: killed with SIGKILL"
            )
        left = _wait_gone(late, KILL_WAIT_S)
        for pid in {h.pid for h in self.hosts}:  # reap our own children
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        # A host that had to be killed could not end its phones' sandboxes: end them here.
        # (A phone's processes name it as its host named it, 127.0.0.1:PORT.)
        serials = {f"127.0.0.1:{p.port}" for p in self.phones}
        if strays := phone_processes(serials):
            left += end_phone_processes(serials, timeout=KILL_WAIT_S)
            said.append(
                f"{len(strays)} process(es) of the lab's phones outlived their host: "
                "killed with SIGKILL"
            )
        if self.started_adb_server:
            left += self._stop_adb_server(said)
        for line in said:
            log.warning("%s", line)
        if left:
            raise LabError(
                f"processes of the lab in {self.dir} did not end even with SIGKILL: "
                f"{', '.join(map(str, sorted(set(left))))} (run `farm lab down` again)"
            )
        _remove_tree(self.dir / "phones")
        shutil.rmtree(self.dir / "hosts", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.dir / CPU_LOCK_FILE).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / STATE_FILE).unlink()
        self.phones.clear()
        self.hosts.clear()
        return said

    def _stop_adb_server(self, said: list[str]) -> list[int]:
        """Stop the adb server the lab started: kill-server, then SIGKILL; the pids left."""
        pid = self.adb_server_pid if _is_adb_server(self.adb_server_pid, self.adb_port) else 0
        answered = True
        if _port_in_use(self.adb_port):
            try:
                self.adb("kill-server", timeout=ADB_ANSWER_S)
            except LabError:
                answered = False
        if not pid or not _wait_gone([pid], KILL_WAIT_S if answered else 0.0):
            return []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        said.append(
            f"adb server {pid} (port {self.adb_port}) did not stop on adb kill-server: "
            "killed with SIGKILL"
        )
        return _wait_gone([pid], KILL_WAIT_S)

    # State.
    def _save(self) -> None:
        data = {
            "adb_port": self.adb_port,
            "adb_path": self.adb_path,
            "engine": self.engine,
            "started_adb_server": self.started_adb_server,
            "adb_server_pid": self.adb_server_pid,
            "profile_dir": self.profile_dir,
            "detached": self.detached,
            "phone_os": self.phone_os,
            "emulator": self.emulator,
            "phones": [asdict(p) for p in self.phones],
            "hosts": [asdict(h) for h in self.hosts],
        }
        path = self.dir / STATE_FILE
        _atomic_write_json(path, data)
        path.chmod(0o600)

    @classmethod
    def load(cls, directory: Path | None = None) -> Lab:
        """The lab whose state is in `directory`; a LabError when none is up there."""
        directory = Path(directory or default_lab_dir()).resolve()
        path = directory / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LabError(f"no lab is up in {directory}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise LabError(f"{path}: unreadable lab state: {exc}") from None
        return cls(
            dir=directory,
            adb_port=data["adb_port"],
            adb_path=data["adb_path"],
            engine=data.get("engine", "model"),
            phones=[LabPhone(**p) for p in data["phones"]],
            hosts=[_Host(**h) for h in data["hosts"]],
            started_adb_server=data.get("started_adb_server", False),
            adb_server_pid=data.get("adb_server_pid", 0),
            profile_dir=data.get("profile_dir", ""),
            detached=data.get("detached", True),
            phone_os=data.get("phone_os", DEFAULT_PHONE_OS),
            emulator=data.get("emulator", False),
            env=dict(os.environ),
        )


def _remove_tree(path: Path) -> None:
    """Remove a folder of phone roots, the roots in parallel (unlinking is slow on some disks)."""
    try:
        parts = list(path.iterdir())
    except OSError:
        return
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda p: shutil.rmtree(p, ignore_errors=True), parts))
    shutil.rmtree(path, ignore_errors=True)


def _unauthorized_indexes(faults: dict[int, list[tuple[str, dict[str, Any]]]] | None) -> set[int]:
    return {i for i, items in (faults or {}).items() if any(k == "unauthorized" for k, _ in items)}


# The host process.
def _load_phone_os(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise LabError(f"cannot load the phone OS {spec!r}: {exc}") from None


async def _serve_control(
    phones: dict[str, Any], token: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:

    try:
        line = await asyncio.wait_for(reader.readline(), 10)
        request = json.loads(line)
        if not secrets.compare_digest(str(request.get("token", "")), token):
            answer = {"ok": False, "error": "bad token"}
        elif request.get("serial") not in phones:
            answer = {"ok": False, "error": f"no phone {request.get('serial')!r} here"}
        elif request["kind"] == "authorize":
            accepted = await phones[request["serial"]].authorize()
            answer = {"ok": bool(accepted), "accepted": accepted}
            if not accepted:
                answer["error"] = "no host is waiting for authorization"
        else:
            await apply_fault(phones[request["serial"]], request["kind"], **request["options"])
            answer = {"ok": True}
    except (FarmError, ValueError, KeyError, TypeError, asyncio.TimeoutError) as exc:
        answer = {"ok": False, "error": str(exc)}
    with contextlib.suppress(ConnectionError):
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()
        writer.close()


async def _host_main(args: argparse.Namespace) -> None:

    phone_os_class = _load_phone_os(args.phone_os)
    directory = Path(args.dir)
    token = os.environ.get("FARM_LAB_TOKEN", "")
    phones: list[VirtualPhone] = []
    background: list[asyncio.Task[Any]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        profile_dir = Path(args.profile_dir) if args.profile_dir else PROFILE_DIR
        ports = [int(p) for p in args.ports.split(",")] if args.ports else [0] * len(args.profiles)
        sockets = [_bind_phone_socket(port=port, emulator=args.emulator) for port in ports]
        extra = {"cpu_lock": Path(args.cpu_lock)} if args.cpu_lock else {}

        def make_os(index: int) -> Any:
            port = sockets[index].getsockname()[1]
            root = directory / "phones" / f"127.0.0.1_{port}"
            root.mkdir(parents=True, exist_ok=True)
            profile = get_profile(args.profiles[index], profile_dir)
            return phone_os_class(f"127.0.0.1:{port}", profile, root, engine=args.engine, **extra)

        # Phone roots are written in parallel: creating many small files is slow on some disks.
        with ThreadPoolExecutor(max_workers=8) as pool:
            systems = list(pool.map(make_os, range(len(args.profiles))))
        start_faults = json.loads(args.faults)
        for index, (sock, phone_os) in enumerate(zip(sockets, systems, strict=True)):
            profile = get_profile(args.profiles[index], profile_dir)
            port = sock.getsockname()[1]
            keys = Path(phone_os.root) / "data" / "misc" / "adb" / HOST_KEYS_FILE
            if args.adb_keys and not keys.exists():  # a phone restarted keeps what it trusts
                TrustedKeys(keys).write(TrustedKeys(Path(args.adb_keys)).read())
            phone = VirtualPhone(phone_os, profile, port, adb_keys=keys)
            await phone.start(sock)
            for kind, options in start_faults.get(str(index), []):
                await apply_fault(phone, kind, **options)
            phones.append(phone)
            background.append(asyncio.create_task(phone_os.background()))
        by_serial = {p.serial: p for p in phones}
        control = await asyncio.start_server(
            lambda r, w: _serve_control(by_serial, token, r, w), "127.0.0.1", 0
        )
        info = {
            "pid": os.getpid(),
            "control_port": control.sockets[0].getsockname()[1],
            "phones": [
                {
                    "serial": p.serial,
                    "profile": p.profile.name,
                    "port": p.port,
                    "root": str(p.os.root),
                }
                for p in phones
            ],
        }
        _atomic_write_json(directory / "hosts" / f"host-{args.index}.json", info)
        if args.watch_pid:
            while not stop.is_set():
                if not _pid_alive(args.watch_pid):
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        else:
            await stop.wait()
    finally:
        for task in background:
            task.cancel()
        for phone in phones:
            with contextlib.suppress(Exception):
                await phone.shutdown()


def host_main(argv: list[str] | None = None) -> None:
    """Entry point of a lab host process."""
    parser = argparse.ArgumentParser(prog="python -m farm.sim.lab host")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--engine", default="model")
    parser.add_argument("--phone-os", default=DEFAULT_PHONE_OS)
    parser.add_argument("--faults", default="{}")
    parser.add_argument("--watch-pid", type=int, default=0)
    parser.add_argument("--cpu-lock", default="")
    parser.add_argument("--profile-dir", default="")
    parser.add_argument("--ports", default="")
    parser.add_argument("--adb-keys", default="")
    parser.add_argument("--emulator", action="store_true")
    parser.add_argument("profiles", nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_host_main(args))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "host":
        host_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m farm.sim.lab host --dir DIR PROFILE...")

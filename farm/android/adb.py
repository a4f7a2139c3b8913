"""The one choke point for device I/O: shell, push, pull and stat over adbutils.

Every call takes a total deadline that we enforce ourselves (adbutils only has idle timeouts):
the sockets of an operation get a timeout no later than the deadline, and a watchdog shuts them
down when the deadline passes, which also ends the device-side shell process. Failures become
the typed errors of `farm.errors`, each carrying the serial, the command and the output tail.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import socket
import stat as stat_mod
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farm.errors import (
    AdbServerError,
    AdbServerUnreachable,
    ConnectionLost,
    DeviceCommandFailed,
    DeviceError,
    DeviceNotFound,
    DeviceOffline,
    DeviceStorageFull,
    DeviceTimeout,
    DeviceUnavailable,
    InputError,
    OutputError,
    RemoteFileMissing,
)

if TYPE_CHECKING:
    from adbutils import AdbClient, AdbConnection, AdbDevice

log = logging.getLogger("farm.adb")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5037
TAIL_CHARS = 600
SYNC_CHUNK = 64 * 1024  # the sync protocol's largest DATA chunk

# Marker appended to shell v1 commands to recover the exit code.
_EXIT_MARK = "\x1efarm-exit:"
_STORAGE_FULL = re.compile(r"No space left|ENOSPC|out of space", re.IGNORECASE)
# What the adb server's FAIL replies say (protocol text, read only here): the device is not
# known, is not ready, or the stream broke.
_NOT_FOUND = re.compile(r"not found|no devices", re.IGNORECASE)
_MISSING = re.compile(r"No such file or directory|ENOENT", re.IGNORECASE)
_EMULATOR_SERIAL = re.compile(r"^emulator-(\d+)$")
_OFFLINE = re.compile(r"device offline|unauthorized|authoriz|still connecting", re.IGNORECASE)
_BROKEN = re.compile(
    r"closed|connection reset|broken pipe|Invalid sync cmd|transport|read chunk missing",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------------- quoting


def sh_quote(arg: str | os.PathLike[str] | int | float) -> str:
    """One argument quoted for the device shell (POSIX quoting, as toybox sh/mksh read it)."""
    return shlex.quote(os.fspath(arg) if isinstance(arg, os.PathLike) else str(arg))


def join_command(args: Iterable[str | os.PathLike[str] | int | float]) -> str:
    """A device command line from separate arguments, every one quoted."""
    return " ".join(sh_quote(a) for a in args)


# ---------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class DeviceEntry:
    """One line of the adb server's device list."""

    serial: str
    state: str
    tags: dict[str, str]


# States as the adb server spells them; "no permissions" is the only one with a space.
_STATES = (
    "device",
    "offline",
    "unauthorized",
    "authorizing",
    "connecting",
    "recovery",
    "rescue",
    "sideload",
    "bootloader",
    "host",
    "unknown",
    "detached",
)


def parse_devices(text: str) -> list[DeviceEntry]:
    """Parse `host:devices-l` (or `adb devices -l`) output; headers and noise are skipped."""
    entries: list[DeviceEntry] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        serial, _, rest = line.replace("\t", " ").partition(" ")
        rest = rest.strip()
        if not serial or not rest:
            continue
        if rest.startswith("no permissions"):
            state = "no permissions"
            # "no permissions (reason); see [url]" then tags
            rest = rest.split("]", 1)[1] if "]" in rest else rest[len(state) :]
        else:
            state, _, rest = rest.partition(" ")
        tags: dict[str, str] = {}
        for part in rest.split():
            key, sep, value = part.partition(":")
            if sep and key:
                tags[key] = value
        entries.append(DeviceEntry(serial=serial, state=state, tags=tags))
    return entries


_PROP_LINE = re.compile(r"^\[([^\]]+)\]: \[(.*)$")


def parse_getprop(text: str) -> dict[str, str]:
    """Parse `getprop` output (`[key]: [value]` lines; a value may span lines)."""
    props: dict[str, str] = {}
    key: str | None = None
    value: list[str] = []
    for line in text.splitlines():
        if key is None:
            m = _PROP_LINE.match(line.rstrip("\r"))
            if not m:
                continue
            key, first = m.group(1), m.group(2)
            value = [first]
        else:
            value.append(line.rstrip("\r"))
        if value[-1].endswith("]"):
            value[-1] = value[-1][:-1]
            props[key] = "\n".join(value)
            key = None
    return props


def parse_server(spec: str) -> tuple[str, int]:
    """Split "host:port", "port" or "[v6]:port" into (host, port); ValueError when malformed."""
    text = spec.strip()
    if not text:
        raise ValueError("empty adb server address")
    if text.isdigit():
        host, port_text = DEFAULT_HOST, text
    elif text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad adb server address {spec!r} (expected [host]:port)")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad adb server address {spec!r} (expected host:port)")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in adb server address {spec!r}")
    return host, int(port_text)


def tail(text: str, chars: int = TAIL_CHARS) -> str:
    """The last `chars` characters of device output."""
    return text if len(text) <= chars else "…" + text[-chars:]


def map_error(
    exc: BaseException,
    serial: str,
    *,
    what: str,
    command: str | None = None,
    output: str = "",
    expired: bool = False,
) -> DeviceError:
    """The typed farm error for an exception raised while talking to a device."""
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    kw: dict[str, Any] = {"command": command, "output_tail": tail(output)}
    if isinstance(exc, DeviceError):
        return exc
    if expired:
        return DeviceTimeout(serial, f"{what}: deadline passed", **kw)
    if _STORAGE_FULL.search(detail) or _STORAGE_FULL.search(output):
        return DeviceStorageFull(serial, f"{what}: no space left on device ({detail})", **kw)
    name = type(exc).__name__
    if name == "AdbTimeout" or isinstance(exc, (socket.timeout, TimeoutError)):
        return DeviceTimeout(serial, f"{what}: no answer ({detail})", **kw)
    if name == "AdbConnectionError":
        return AdbServerUnreachable(serial, f"{what}: adb server unreachable ({detail})", **kw)
    if isinstance(exc, (EOFError, ConnectionError, OSError)):
        return ConnectionLost(serial, f"{what}: connection lost ({detail})", **kw)
    if _NOT_FOUND.search(detail):
        return DeviceNotFound(serial, f"{what}: {detail}", **kw)
    if _OFFLINE.search(detail):
        return DeviceOffline(serial, f"{what}: {detail}", **kw)
    if _BROKEN.search(detail) or not str(exc).strip():
        return ConnectionLost(serial, f"{what}: {detail or 'connection lost'}", **kw)
    # Any other adb error is the transport's, not the command's: possibly transient.
    return DeviceUnavailable(serial, f"{what}: adb error: {detail}", **kw)


# ---------------------------------------------------------------------------- deadlines


class _Deadline:
    """The total deadline of one operation: tracks its sockets and shuts them at expiry."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.end = time.monotonic() + timeout
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shut(sock)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# ---------------------------------------------------------------------------- server


@functools.cache
def _client_class() -> type[AdbClient]:
    """An adbutils client that never starts an adb server and obeys our deadlines."""
    from adbutils import AdbClient, AdbConnection
    from adbutils.errors import AdbConnectionError, AdbTimeout

    class _Connection(AdbConnection):
        def _safe_connect(self) -> socket.socket:  # adbutils would run `adb start-server`
            sock: socket.socket = self._create_socket()
            return sock

        def close(self) -> None:
            # adbutils sleeps 10 ms here on every call; the server needs no such pause.
            sock: socket.socket | None = getattr(self, "_AdbConnection__conn", None)
            if sock is None:
                return
            self._AdbConnection__conn = None
            _shut(sock)
            sock.close()

    class _Client(AdbClient):
        def __init__(self, host: str, port: int) -> None:
            super().__init__(host, port)
            self.local = threading.local()
            self._version: int | None = None

        def make_connection(self, timeout: float | None = None) -> AdbConnection:
            deadline: _Deadline | None = getattr(self.local, "deadline", None)
            try:
                conn = _Connection(self.host, self.port)
            except TimeoutError:
                raise AdbTimeout("connect to adb server timeout") from None
            except OSError as exc:
                raise AdbConnectionError(f"connect to adb server failed: {exc}") from None
            if deadline is not None:
                conn.conn.settimeout(max(deadline.remaining(), 0.001))
                deadline.track(conn.conn)
            elif timeout:
                conn.conn.settimeout(timeout)
            return conn

        def server_version(self) -> int:
            if self._version is None:
                self._version = super().server_version()
            return self._version

    return _Client


class AdbServer:
    """One adb server (host:port); hands out `Device`s and lists what it sees."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.host = host
        self.port = port
        self._client: AdbClient | None = None
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str) -> AdbServer:
        """An AdbServer from "host:port" or "port"; AdbServerError when malformed."""
        try:
            host, port = parse_server(spec)
        except ValueError as exc:
            raise AdbServerError(str(exc)) from None
        return cls(host, port)

    @property
    def address(self) -> str:
        """ "host:port", as results and warnings name the server."""
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"AdbServer({self.address})"

    @property
    def client(self) -> AdbClient:
        """The adbutils client (created on first use)."""
        with self._lock:
            if self._client is None:
                self._client = _client_class()(self.host, self.port)
            return self._client

    def reachable(self, timeout: float = 1.0) -> bool:
        """True when something accepts connections at the server address."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                return True
        except OSError:
            return False

    def _host_query(self, service: str, timeout: float) -> str:
        from adbutils.errors import AdbError

        start = time.monotonic()
        try:
            with _Deadline(timeout) as dl:
                self.client.local.deadline = dl
                try:
                    with self.client.make_connection() as conn:
                        conn.send_command(service)
                        conn.check_okay()
                        text = conn.read_string_block()
                finally:
                    self.client.local.deadline = None
        except (AdbError, OSError, EOFError, ValueError) as exc:
            reason = "no answer in time" if dl.expired else (str(exc) or type(exc).__name__)
            log.debug("%s %s failed after %.1f ms: %s", self.address, service, _ms(start), reason)
            raise AdbServerError(f"adb server {self.address}: {reason}") from None
        log.debug("%s %s in %.1f ms", self.address, service, _ms(start))
        return str(text)

    def version(self, timeout: float = 5.0) -> int:
        """The server's protocol version (41 for recent platform-tools)."""
        return int(self._host_query("host:version", timeout), 16)

    def devices(self, timeout: float = 5.0) -> list[DeviceEntry]:
        """Every device the server sees, offline and unauthorized ones included."""
        return parse_devices(self._host_query("host:devices-l", timeout))

    def device(self, serial: str) -> Device:
        """A handle on one device of this server (no I/O yet)."""
        return Device(serial, self)

    def attach(self, serial: str, timeout: float = 5.0) -> str | None:
        """Ask the server to attach a device it may have lost; what it answered.

        A network device (`HOST:PORT`) gets `adb connect`; an emulator (`emulator-NNNN`) the
        `host:emulator:PORT` request a booting emulator sends (its adbd is on NNNN+1). None for
        other serials (USB), which the server finds by itself.
        """
        if match := _EMULATOR_SERIAL.match(serial):
            service = f"host:emulator:{int(match.group(1)) + 1}"
            try:
                with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                    sock.sendall(b"%04x" % len(service) + service.encode())
            except OSError as exc:
                raise AdbServerError(f"adb server {self.address}: {exc}") from None
            return f"asked for the emulator on port {int(match.group(1)) + 1}"
        if ":" in serial:
            return str(self.client.connect(serial, timeout=timeout))
        return None


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000


# ---------------------------------------------------------------------------- device


@dataclass(frozen=True)
class ShellResult:
    """What a shell command left: its exit code and its output (stdout and stderr)."""

    exit_code: int
    output: str
    command: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class RemoteStat:
    """A device file's mode, size and modification time (seconds since the epoch)."""

    path: str
    mode: int
    size: int
    mtime: int

    @property
    def is_dir(self) -> bool:
        return stat_mod.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat_mod.S_ISREG(self.mode)


class Device:
    """One device on one adb server; every device operation of farm goes through here."""

    def __init__(self, serial: str, server: AdbServer) -> None:
        self.serial = serial
        self.server = server
        self._adb: AdbDevice | None = None
        self._features: frozenset[str] | None = None
        self._props: dict[str, str] | None = None
        self._lock = threading.Lock()
        self.bytes_pushed = 0

    def __repr__(self) -> str:
        return f"Device({self.serial!r} on {self.server.address})"

    @property
    def adb(self) -> AdbDevice:
        if self._adb is None:
            from adbutils import AdbDevice

            self._adb = AdbDevice(self.server.client, serial=self.serial)
        return self._adb

    @contextmanager
    def _operation(self, what: str, command: str | None, timeout: float) -> Iterator[_Deadline]:
        """Run one adb operation under a total deadline, mapping errors and logging it."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        client = self.server.client
        start = time.monotonic()
        outcome = "ok"
        dl = _Deadline(timeout)
        try:
            with dl:
                client.local.deadline = dl
                try:
                    yield dl
                finally:
                    client.local.deadline = None
            if dl.expired:
                raise DeviceTimeout(
                    self.serial, f"{what}: deadline of {timeout:.3g} s passed", command=command
                )
        except (DeviceError, OutputError) as exc:  # OutputError: the host side, not the device
            outcome = type(exc).__name__
            raise
        except Exception as exc:  # adbutils raises AdbError, EOFError, OSError, ...
            err = map_error(exc, self.serial, what=what, command=command, expired=dl.expired)
            outcome = f"{type(err).__name__}: {err.message}"
            raise err from None
        finally:
            log.debug(
                "[%s] %s %s -> %s in %.1f ms",
                self.serial,
                what,
                command if command is not None else "",
                outcome,
                _ms(start),
            )

    # -- facts

    def features(self, *, timeout: float = 10.0) -> frozenset[str]:
        """The features the device advertises (shell_v2, stat_v2, ...), cached."""
        if self._features is None:
            with self._operation("features", None, timeout):
                text = self.adb.get_features()
            self._features = frozenset(f for f in text.strip().split(",") if f)
        return self._features

    def state(self, *, timeout: float = 5.0) -> str:
        """The device state as the server sees it (device, offline, ...)."""
        with self._operation("get-state", None, timeout):
            return str(self.adb.get_state()).strip()

    def getprops(self, refresh: bool = False, *, timeout: float = 15.0) -> dict[str, str]:
        """All system properties from one `getprop` call, cached until `refresh`."""
        with self._lock:
            if self._props is None or refresh:
                result = self.shell("getprop", timeout=timeout, check=True)
                self._props = parse_getprop(result.output)
            return dict(self._props)

    def forget(self) -> None:
        """Drop cached facts (after a reboot or a reconnect)."""
        self._props = None
        self._features = None
        self._adb = None

    # -- shell

    def shell(self, cmd: str, *, timeout: float, check: bool = False) -> ShellResult:
        """Run `cmd` with the device shell; its exit code and output within `timeout` seconds.

        With `check`, a non-zero exit raises DeviceCommandFailed (DeviceStorageFull when the
        output says the disk is full).
        """
        end = time.monotonic() + timeout
        use_v2 = "shell_v2" in self.features(timeout=timeout)
        left = end - time.monotonic()
        if left <= 0:
            raise DeviceTimeout(self.serial, f"shell: {timeout:g} s passed", command=cmd)
        with self._operation("shell", cmd, left) as dl:
            if use_v2:
                ret = self.adb.shell2(cmd, timeout=max(dl.remaining(), 0.001), v2=True)
                result = ShellResult(ret.returncode, ret.output, cmd)
            else:
                result = self._shell_v1(cmd, dl)
        if check and not result.ok:
            raise self.command_error(result)
        return result

    def _shell_v1(self, cmd: str, dl: _Deadline) -> ShellResult:
        # A subshell keeps `exit N` in cmd from skipping the marker.
        wrapped = f"(\n{cmd}\n); echo {sh_quote(_EXIT_MARK)}$?"
        raw = self.adb.shell(wrapped, timeout=max(dl.remaining(), 0.001), encoding=None)
        text = raw.decode("utf-8", errors="replace")
        head, mark, code = text.rpartition(_EXIT_MARK)
        if not mark or not code.strip().isdigit():
            if dl.expired:
                raise DeviceTimeout(self.serial, "shell: deadline passed", command=cmd)
            raise ConnectionLost(
                self.serial, "shell: output ended early", command=cmd, output_tail=tail(text)
            )
        return ShellResult(int(code.strip()), head, cmd)

    def command_error(self, result: ShellResult) -> DeviceError:
        """The error for a shell command that exited non-zero."""
        cls = DeviceStorageFull if _STORAGE_FULL.search(result.output) else DeviceCommandFailed
        last = result.output.strip().splitlines()[-1:] or [""]
        return cls(
            self.serial,
            f"command failed with exit code {result.exit_code}: {last[0][:200]}".rstrip(": "),
            command=result.command,
            exit_code=result.exit_code,
            output_tail=tail(result.output),
        )

    # -- files (the sync protocol, spoken directly for real error messages and 64 KiB chunks)

    @contextmanager
    def _sync(self) -> Iterator[AdbConnection]:
        conn = self.adb.open_transport()
        try:
            conn.send_command("sync:")
            conn.check_okay()
            yield conn
        finally:
            conn.close()

    @staticmethod
    def _request(conn: AdbConnection, cmd: bytes, arg: str) -> None:
        data = arg.encode("utf-8")
        conn.conn.sendall(cmd + struct.pack("<I", len(data)) + data)

    @staticmethod
    def _fail_message(conn: AdbConnection, length: int) -> str:
        return conn.read_exact(length).decode("utf-8", errors="replace") if length else ""

    def stat(self, remote: str, *, timeout: float = 10.0) -> RemoteStat | None:
        """The device file's stat, or None when it does not exist."""
        with self._operation("stat", remote, timeout), self._sync() as conn:
            self._request(conn, b"STAT", remote)
            reply = conn.read_exact(16)
        ident, mode, size, mtime = struct.unpack("<4sIII", reply)
        if ident != b"STAT":
            raise DeviceUnavailable(self.serial, f"stat: unexpected reply {ident!r}")
        if mode == 0:
            return None
        return RemoteStat(remote, mode, size, mtime)

    def push(
        self,
        local: str | os.PathLike[str] | bytes,
        remote: str,
        *,
        timeout: float,
        mode: int = 0o644,
    ) -> int:
        """Copy a host file (or bytes) to the device path `remote`; the bytes sent."""
        if isinstance(local, bytes):
            chunks: Iterable[bytes] = (
                local[i : i + SYNC_CHUNK] for i in range(0, len(local), SYNC_CHUNK)
            )
            source = None
        else:
            try:
                source = open(local, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                reason = exc.strerror or exc
                raise InputError(f"{os.fspath(local)}: cannot read: {reason}") from None
            chunks = iter(lambda: source.read(SYNC_CHUNK), b"")
        sent = 0
        try:
            with self._operation("push", remote, timeout), self._sync() as conn:
                self._request(conn, b"SEND", f"{remote},{stat_mod.S_IFREG | mode}")
                for chunk in chunks:
                    conn.conn.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                    sent += len(chunk)
                conn.conn.sendall(b"DONE" + struct.pack("<I", int(time.time())))
                ident, length = struct.unpack("<4sI", conn.read_exact(8))
                if ident != b"OKAY":
                    message = self._fail_message(conn, length) if ident == b"FAIL" else ""
                    raise self._sync_failure("push", remote, message or repr(ident))
        finally:
            if source is not None:
                source.close()
        self.bytes_pushed += sent
        return sent

    def pull(self, remote: str, local: str | os.PathLike[str], *, timeout: float) -> int:
        """Copy the device file `remote` to the host path `local`; the bytes received.

        The host file appears only complete (written beside it, then renamed).
        """
        target = Path(local)
        part = target.with_name(f".{target.name}.part-{os.getpid()}-{threading.get_ident()}")
        received = 0
        try:
            # Unbuffered: a full host disk shows at the write that hits it, as OutputError.
            out = open(part, "wb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise OutputError(f"{target}: cannot write: {exc.strerror or exc}") from None
        try:
            with out, self._operation("pull", remote, timeout), self._sync() as conn:
                self._request(conn, b"RECV", remote)
                while True:
                    ident, length = struct.unpack("<4sI", conn.read_exact(8))
                    if ident == b"DATA":
                        view = memoryview(conn.read_exact(length))
                        try:
                            while view:
                                view = view[out.write(view) :]
                        except OSError as exc:
                            reason = exc.strerror or exc
                            raise OutputError(f"{target}: cannot write: {reason}") from None
                        received += length
                    elif ident == b"DONE":
                        break
                    elif ident == b"FAIL":
                        raise self._sync_failure("pull", remote, self._fail_message(conn, length))
                    else:
                        raise DeviceUnavailable(self.serial, f"pull: bad sync reply {ident!r}")
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return received

    def read_bytes(self, remote: str, *, timeout: float, limit: int = 64 << 20) -> bytes:
        """The content of a (small) device file."""
        data = bytearray()
        with self._operation("read", remote, timeout), self._sync() as conn:
            self._request(conn, b"RECV", remote)
            while True:
                ident, length = struct.unpack("<4sI", conn.read_exact(8))
                if ident == b"DATA":
                    data += conn.read_exact(length)
                    if len(data) > limit:
                        raise DeviceCommandFailed(self.serial, f"read: {remote} over {limit} bytes")
                elif ident == b"DONE":
                    return bytes(data)
                elif ident == b"FAIL":
                    raise self._sync_failure("read", remote, self._fail_message(conn, length))
                else:
                    raise DeviceUnavailable(self.serial, f"read: bad sync reply {ident!r}")

    def _sync_failure(self, what: str, path: str, message: str) -> DeviceError:
        cls: type[DeviceError] = DeviceCommandFailed
        if _STORAGE_FULL.search(message):
            cls = DeviceStorageFull
        elif _MISSING.search(message):
            cls = RemoteFileMissing
        return cls(self.serial, f"{what} {path}: {message}", command=f"{what} {path}")

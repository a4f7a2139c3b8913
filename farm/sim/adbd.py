"""The device side of the ADB protocol for virtual phones: transport, streams and services.

One `VirtualPhone` listens on a TCP port and speaks what adbd speaks to any ADB host: CNXN with
the version and max payload the host announced (payload checksums for hosts below 0x01000001),
RSA AUTH against the keys in the phone's `adb_keys` (an unknown key waits for `authorize`, as the
"Allow USB debugging?" dialog does), OPEN/OKAY/WRTE/CLSE with one WRTE in flight per stream, and
the services shell (v1 and v2), exec, sync (v1 and v2 stat/list) and reboot. A v2 shell whose
stream the host closes gets SIGHUP, as adbd sends it. Files and processes belong to the phone's
`PhoneOS`; faults (farm.sim.faults) act on the transport here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import stat as stat_mod
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farm.sim.adb_auth import TOKEN_SIZE, TrustedKeys, signed_by

if TYPE_CHECKING:
    from farm.profiles import Profile

log = logging.getLogger("farm.sim.adbd")

A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
ADB_VERSION = 0x01000001
ADB_VERSION_MIN = 0x01000000
ADB_VERSION_SKIP_CHECKSUM = 0x01000001  # from this version on, hosts and adbd send crc 0
HANGUP_WAIT_S = 10.0  # a shell that outlives SIGHUP this long has its process group killed
MAX_PAYLOAD = 1024 * 1024
MAX_BANNER = 4096
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
HEADER = struct.Struct("<6I")

# Shell protocol v2 packet ids.
SH_STDIN, SH_STDOUT, SH_STDERR, SH_EXIT, SH_CLOSE_STDIN, SH_WINDOW = 0, 1, 2, 3, 4, 5
SH_HEADER = struct.Struct("<BI")

SYNC_MAX_DATA = 64 * 1024
SYNC_HEADER = struct.Struct("<4sI")
STAT_V1 = struct.Struct("<4sIII")  # STAT mode size mtime
STAT_V2 = struct.Struct(
    "<4sIQQIIIIQqqq"
)  # STA2/LST2 error dev ino mode nlink uid gid size a/m/ctime
DENT_V1 = struct.Struct("<4sIIII")  # DENT mode size mtime namelen
DENT_V2 = struct.Struct("<4sIQQIIIIQqqqI")  # DNT2 ... namelen

SERVICES = ("shell", "exec:", "sync:", "reboot:")
# Features adb would start using if a profile advertised them; this adbd does not implement them.
UNIMPLEMENTED_FEATURES = frozenset(
    {
        "delayed_ack",
        "abb",
        "abb_exec",
        "sendrecv_v2",
        "sendrecv_v2_brotli",
        "sendrecv_v2_lz4",
        "sendrecv_v2_zstd",
        "sendrecv_v2_dry_run_send",
    }
)


def pack_message(
    command: int, arg0: int, arg1: int, data: bytes | memoryview = b"", *, checksum: bool = False
) -> bytes:
    """One ADB message header for `data`; the payload checksum only when asked (old hosts)."""
    crc = sum(data) & 0xFFFFFFFF if checksum else 0
    return HEADER.pack(command, arg0, arg1, len(data), crc, command ^ 0xFFFFFFFF)


def banner(profile: Profile) -> bytes:
    """The CNXN payload a phone of this profile announces itself with."""
    props = profile.props
    parts = [
        f"ro.product.name={props.get('ro.product.name', '')}",
        f"ro.product.model={props.get('ro.product.model', '')}",
        f"ro.product.device={props.get('ro.product.device', '')}",
        f"features={','.join(f for f in profile.sim.features if f not in UNIMPLEMENTED_FEATURES)}",
    ]
    data = ("device::" + ";".join(parts)).encode()
    return data[:MAX_BANNER]


def exit_status(returncode: int | None) -> int:
    """A shell exit status as a phone reports it: 128+signal for a killed process."""
    if returncode is None:
        return 255
    return 128 - returncode if returncode < 0 else returncode & 0xFF


@dataclass
class LinkFaults:
    """Transport faults in force on one phone (set by farm.sim.faults)."""

    unauthorized: bool = False
    rate: float = 0.0  # bytes per second each way; 0 = unlimited
    die_after: int | None = None  # drop the connection after this many more file bytes
    die_offline: float = 0.0  # and stay unreachable this long
    disk_full_free: int | None = None  # bytes a push may still write
    hang: asyncio.Event = field(default_factory=asyncio.Event)  # set = responsive

    def __post_init__(self) -> None:
        self.hang.set()


class StreamClosed(Exception):
    """The host closed the stream or the connection went away."""


class Stream:
    """One ADB stream (a service instance) with one WRTE in flight each way."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.closed = asyncio.Event()  # the host closed it, or the connection died
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._buf = bytearray()
        self._pos = 0  # read position in _buf
        self._acked = asyncio.Event()
        self._acked.set()
        self._write_lock = asyncio.Lock()
        self._sent_close = False
        self.task: asyncio.Task[None] | None = None

    # Events from the connection.
    def on_write(self, data: bytes) -> None:
        self._inbox.put_nowait(data)

    def on_okay(self) -> None:
        self._acked.set()

    def on_close(self) -> None:
        self.closed.set()
        self._inbox.put_nowait(None)
        self._acked.set()

    # Reading what the host writes.
    async def read_chunk(self) -> bytes:
        """The next chunk the host wrote (acknowledged on taking it); b"" once closed."""
        if self._pos < len(self._buf):
            data = bytes(self._buf[self._pos :])
            self._buf.clear()
            self._pos = 0
            return data
        data = await self._inbox.get()
        if data is None:
            self._inbox.put_nowait(None)
            return b""
        await self.conn.send(A_OKAY, self.local_id, self.remote_id)
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly n bytes from the host; StreamClosed when the stream ends first."""
        while len(self._buf) - self._pos < n:
            data = await self._inbox.get()
            if data is None:
                self._inbox.put_nowait(None)
                raise StreamClosed
            await self.conn.send(A_OKAY, self.local_id, self.remote_id)
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += data
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return out

    # Writing to the host.
    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send data in WRTE messages, each after the previous one was acknowledged."""
        view = memoryview(data)
        size = self.conn.max_payload
        async with self._write_lock:
            for offset in range(0, len(view), size):
                await self._acked.wait()
                if self.closed.is_set():
                    raise StreamClosed
                self._acked.clear()
                await self.conn.send(
                    A_WRTE, self.local_id, self.remote_id, view[offset : offset + size]
                )

    async def close(self) -> None:
        """Close from the device side (after the last WRTE is acknowledged)."""
        if self._sent_close:
            return
        self._sent_close = True
        if not self.closed.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._acked.wait(), 5.0)
            with contextlib.suppress(ConnectionError):
                await self.conn.send(A_CLSE, self.local_id, self.remote_id)
        self.closed.set()
        self.conn.streams.pop(self.local_id, None)


class Connection:
    """One TCP connection from the adb server to a phone: the message loop and its streams."""

    def __init__(
        self, phone: VirtualPhone, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.phone = phone
        self.reader = reader
        self.writer = writer
        self.streams: dict[int, Stream] = {}
        self.max_payload = MAX_PAYLOAD
        self.version = ADB_VERSION
        self.online = False
        self._token = b""
        self._next_id = 1
        self._send_lock = asyncio.Lock()
        self._link_free_at = 0.0

    async def _throttle(self, nbytes: int) -> None:
        rate = self.phone.faults.rate
        if rate <= 0 or nbytes == 0:
            return
        now = time.monotonic()
        start = max(now, self._link_free_at)
        self._link_free_at = start + nbytes / rate
        delay = self._link_free_at - now
        if delay > 0:
            await asyncio.sleep(delay)

    async def send(
        self, command: int, arg0: int, arg1: int, data: bytes | memoryview = b""
    ) -> None:
        """Send one message; waits while the phone hangs."""
        await self.phone.faults.hang.wait()
        async with self._send_lock:
            if self.writer.is_closing():
                raise ConnectionResetError("connection closed")
            checksum = self.version < ADB_VERSION_SKIP_CHECKSUM
            self.writer.write(pack_message(command, arg0, arg1, data, checksum=checksum))
            if data:
                self.writer.write(data)
            await self.writer.drain()
        await self._throttle(len(data))

    def abort(self) -> None:
        """Cut the TCP connection at once, as a dying phone or a pulled cable does."""
        transport = self.writer.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    async def run(self) -> None:
        """Read and dispatch messages until the connection ends."""
        try:
            while True:
                header = await self.reader.readexactly(HEADER.size)
                command, arg0, arg1, length, _crc, magic = HEADER.unpack(header)
                if magic != command ^ 0xFFFFFFFF or length > MAX_PAYLOAD:
                    log.warning("%s: bad message header, dropping", self.phone.serial)
                    return
                data = await self.reader.readexactly(length) if length else b""
                await self.phone.faults.hang.wait()
                await self._throttle(length)
                await self._dispatch(command, arg0, arg1, data)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.close_streams()
            self.phone.waiting.pop(self, None)
            self.abort()

    def close_streams(self) -> None:
        for stream in list(self.streams.values()):
            stream.on_close()
        self.streams.clear()

    async def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            # adbd keeps the lower of both versions and max payloads.
            self.version = max(ADB_VERSION_MIN, min(arg0, ADB_VERSION))
            self.max_payload = max(256, min(arg1, self.phone.max_payload))
            self.close_streams()
            self.online = False
            self.phone.waiting.pop(self, None)
            if self.phone.needs_auth():
                await self._send_auth_token()
            else:
                await self.go_online()
        elif command == A_AUTH:
            if self.online:
                return
            if arg0 == AUTH_SIGNATURE:
                if self._token and self.phone.trusts(self._token, data):
                    await self.go_online()
                else:
                    await self._send_auth_token()  # the host tries its next key
            elif arg0 == AUTH_RSAPUBLICKEY:
                # No key was trusted: the phone asks its user; the host waits for CNXN.
                key = data.rstrip(b"\0").decode("utf-8", "replace").strip()
                self.phone.waiting[self] = key
                log.info("%s: host key waits for authorization", self.phone.serial)
        elif not self.online:
            return
        elif command == A_OPEN:
            await self._open(arg0, data)
        elif command == A_WRTE:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.on_write(data)
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.on_okay()
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                stream.on_close()
                await self.send(A_CLSE, stream.local_id, stream.remote_id)  # as adbd answers

    async def go_online(self) -> None:
        """Accept the host: CNXN with the negotiated version and max payload."""
        self.online = True
        self.phone.waiting.pop(self, None)
        await self.send(A_CNXN, self.version, self.max_payload, banner(self.phone.profile))

    async def _send_auth_token(self) -> None:
        self._token = secrets.token_bytes(TOKEN_SIZE)
        await self.send(A_AUTH, AUTH_TOKEN, 0, self._token)

    async def _open(self, remote_id: int, data: bytes) -> None:
        service = data.rstrip(b"\0").decode("utf-8", "replace")
        if not service.startswith(SERVICES):
            log.info("%s: unsupported service %r", self.phone.serial, service)
            await self.send(A_CLSE, 0, remote_id)
            return
        local_id = self._next_id
        self._next_id += 1
        stream = Stream(self, local_id, remote_id)
        self.streams[local_id] = stream
        await self.send(A_OKAY, local_id, remote_id)
        stream.task = asyncio.create_task(self.phone.run_service(stream, service))


class VirtualPhone:
    """One virtual phone: its adbd on a TCP port, on top of a PhoneOS."""

    def __init__(
        self,
        phone_os: Any,
        profile: Profile,
        port: int,
        host: str = "127.0.0.1",
        adb_keys: Path | None = None,
    ) -> None:
        self.os = phone_os
        self.profile = profile
        self.host = host
        self.port = port
        self.faults = LinkFaults()
        self.connections: set[Connection] = set()
        # With `adb_keys` the phone asks every host for a trusted key (ro.adb.secure=1).
        self.keys = TrustedKeys(adb_keys) if adb_keys is not None else None
        self.waiting: dict[Connection, str] = {}  # hosts whose key awaits "Allow"
        self._revoked: list[str] = []  # keys set aside by the unauthorized fault
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._away: asyncio.Task[Any] | None = None  # an offline period or a reboot under way
        self._bytes_moved = 0

    @property
    def serial(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def max_payload(self) -> int:
        """The largest payload this phone's adbd takes (4 KiB before Android 7)."""
        return min(MAX_PAYLOAD, self.os.release.max_payload)

    # Authorization.
    def needs_auth(self) -> bool:
        """True when a host must prove a trusted key before it gets in."""
        return self.keys is not None or self.faults.unauthorized

    def trusts(self, token: bytes, signature: bytes) -> bool:
        """True when `signature` signs `token` with a key this phone trusts."""
        return self.keys is not None and signed_by(token, signature, self.keys.read())

    async def authorize(self) -> int:
        """Accept every host key waiting for authorization, as tapping "Allow" does.

        The keys are trusted from now on and their hosts get CNXN; returns how many there were.
        """
        waiting = list(self.waiting.items())
        if waiting and self.keys is None:  # a phone that asked only because of the fault
            self.keys = TrustedKeys(Path(self.os.root) / "data" / "misc" / "adb" / "adb_keys")
        for conn, key in waiting:
            assert self.keys is not None
            self.keys.add(key)
            with contextlib.suppress(ConnectionError):
                await conn.go_online()
        return len(waiting)

    def revoke_keys(self) -> None:
        """Forget every trusted key ("Revoke USB debugging authorizations"); see restore_keys."""
        if self.keys is not None:
            self._revoked += self.keys.read()
            self.keys.write([])

    def restore_keys(self) -> None:
        """Trust again the keys revoke_keys set aside."""
        if self.keys is not None and self._revoked:
            self.keys.write([*self._revoked, *self.keys.read()])
        self._revoked = []

    # Listening.
    async def start(self, sock: Any | None = None) -> None:
        """Accept connections (on `sock` when given, else on host:port)."""
        if sock is not None:
            self._server = await asyncio.start_server(self._accept, sock=sock)
        else:
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=True
            )

    async def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def shutdown(self) -> None:
        """Stop listening, cut every connection and kill every process of the phone."""
        await self.stop_listening()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        self.os.kill_all()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            import socket

            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(self, reader, writer)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    def spawn_task(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Link-level events used by faults.
    def drop(self) -> None:
        """Cut every connection; the adb server sees the phone go offline and reconnects."""
        for conn in list(self.connections):
            conn.close_streams()
            conn.abort()

    def go_away(self, seconds: float, *, reboot: bool = False) -> None:
        """Unreachable for `seconds` (connections cut, port closed; 0: until `come_back`)."""
        if self._away is not None:
            self._away.cancel()
        self._away = self.spawn_task(self.reboot(seconds) if reboot else self.go_offline(seconds))

    async def come_back(self) -> None:
        """End an offline period or a reboot now: the port listens again."""
        away, self._away = self._away, None
        if away is not None and not away.done():
            away.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await away
        if self._server is None:
            await self.start()

    async def go_offline(self, seconds: float) -> None:
        """Unreachable for `seconds` (connections cut, port closed; 0: until cleared), then back."""
        await self.stop_listening()
        self.drop()
        if seconds <= 0:
            return
        await asyncio.sleep(seconds)
        await self.start()

    async def reboot(self, seconds: float = 2.0) -> None:
        """Processes die, the link goes down for `seconds`, the phone comes back."""
        await self.stop_listening()
        self.drop()
        self.os.kill_all()
        await asyncio.sleep(seconds)
        await self.start()

    def count_transfer(self, nbytes: int) -> None:
        """Account file bytes moved; a die_after fault fires once its budget is spent."""
        if self.faults.die_after is None:
            return
        self._bytes_moved += nbytes
        if self._bytes_moved >= self.faults.die_after:
            self.faults.die_after = None
            self._bytes_moved = 0
            offline = self.faults.die_offline
            log.info("%s: dying mid-transfer", self.serial)
            if offline > 0:
                self.go_away(offline)
            else:
                self.drop()
            raise StreamClosed

    def arm_die_after(self, nbytes: int, offline: float) -> None:
        self._bytes_moved = 0
        self.faults.die_offline = offline
        self.faults.die_after = nbytes

    # Services.
    async def run_service(self, stream: Stream, service: str) -> None:
        try:
            if service.startswith("shell"):
                await self._shell(stream, service)
            elif service.startswith("exec:"):
                await self._process(stream, service[5:], v2=False, env=None)
            elif service == "sync:":
                await SyncService(self, stream).run()
            elif service.startswith("reboot:"):
                await stream.close()
                self.spawn_task(self.reboot())
        except (StreamClosed, ConnectionError):
            pass
        except Exception:
            log.exception("%s: service %r failed", self.serial, service)
        finally:
            await stream.close()

    async def _shell(self, stream: Stream, service: str) -> None:
        head, _, command = service.partition(":")
        args = head.split(",")[1:]
        terms = [a[5:] for a in args if a.startswith("TERM=")]
        env = {"TERM": terms[-1]} if terms else None
        v2 = "v2" in args
        # Without the shell protocol, adbd of Android 6 and older runs `shell:` on a PTY.
        tty = not v2 and self.os.release.shell_pty
        await self._process(stream, command, v2=v2, env=env, tty=tty)

    async def _process(
        self,
        stream: Stream,
        command: str,
        *,
        v2: bool,
        env: dict[str, str] | None,
        tty: bool = False,
    ) -> None:
        """Run a command (empty: an interactive sh) and relay its stdio over the stream."""
        try:
            proc = await self.os.spawn(command or None, env=env, tty=tty)
        except Exception as exc:  # cannot start: report like a shell that failed
            message = f"/system/bin/sh: {exc}\n".encode()
            if v2:
                await stream.write(SH_HEADER.pack(SH_STDERR, len(message)) + message)
                await stream.write(SH_HEADER.pack(SH_EXIT, 1) + bytes([127]))
            else:
                await stream.write(message)
            return

        async def pump_out(pipe: asyncio.StreamReader | None, packet_id: int) -> None:
            if pipe is None:
                return
            while data := await pipe.read(65536):
                if v2:
                    await stream.write(SH_HEADER.pack(packet_id, len(data)) + data)
                else:
                    await stream.write(data)

        async def pump_in() -> None:
            stdin = proc.stdin
            assert stdin is not None
            try:
                while True:
                    if v2:
                        packet_id, length = SH_HEADER.unpack(await stream.readexactly(5))
                        data = await stream.readexactly(length) if length else b""
                        if packet_id == SH_CLOSE_STDIN:
                            break
                        if packet_id != SH_STDIN:
                            continue
                    else:
                        data = await stream.read_chunk()
                        if not data:
                            break
                    stdin.write(data)
                    await stdin.drain()
            except (StreamClosed, ConnectionError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    stdin.close()

        inbound = asyncio.create_task(pump_in())
        outputs = asyncio.gather(pump_out(proc.stdout, SH_STDOUT), pump_out(proc.stderr, SH_STDERR))
        finished = asyncio.ensure_future(self._finish(proc, outputs))
        host_gone = asyncio.ensure_future(stream.closed.wait())
        completed = False
        try:
            await asyncio.wait({finished, host_gone}, return_when=asyncio.FIRST_COMPLETED)
            if finished.done() and not finished.cancelled() and finished.exception() is None:
                completed = True
                if v2:
                    await stream.write(
                        SH_HEADER.pack(SH_EXIT, 1) + bytes([exit_status(proc.returncode)])
                    )
        finally:
            inbound.cancel()
            host_gone.cancel()
            if not completed:
                await self._host_gone(proc, v2=v2)
                finished.cancel()
                outputs.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(proc.wait(), 5.0)
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await finished  # retrieve its outcome so nothing is left unobserved

    async def _host_gone(self, proc: asyncio.subprocess.Process, *, v2: bool) -> None:
        """The host closed the stream while the command ran.

        Shell v2: SIGHUP to the shell, as adbd sends it (what the shell started may live on, as
        on a phone); a shell still there after HANGUP_WAIT_S has its process group killed.
        Otherwise the process group is killed.
        """
        if v2:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(shell_pid(proc.pid), signal.SIGHUP)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), HANGUP_WAIT_S)
                return
            log.warning("%s: shell outlived SIGHUP; killing its process group", self.serial)
        with contextlib.suppress(ProcessLookupError, OSError):
            self.os.kill_group(proc, signal.SIGKILL)

    @staticmethod
    async def _finish(proc: asyncio.subprocess.Process, outputs: asyncio.Future[Any]) -> None:
        await outputs
        await proc.wait()


def shell_pid(pid: int) -> int:
    """The host pid of the phone's shell a spawned command runs as.

    A confined command is nsenter, whose child becomes the shell (`/system/bin/sh`); an
    unconfined one is the shell itself.
    """
    for _ in range(4):
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return pid
        if argv0.endswith(b"/system/bin/sh") or not children:
            return pid
        pid = int(children[0])
    return pid


class SyncService:
    """The `sync:` service: push, pull, stat and list (v1, and v2 stat/list)."""

    def __init__(self, phone: VirtualPhone, stream: Stream) -> None:
        self.phone = phone
        self.stream = stream

    async def run(self) -> None:
        while True:
            ident, length = SYNC_HEADER.unpack(await self.stream.readexactly(8))
            if ident == b"QUIT":
                return
            if length > 4096:
                await self.fail("path too long")
                return
            path = (await self.stream.readexactly(length)).decode("utf-8", "surrogateescape")
            if ident == b"STAT":
                await self.stat_v1(path)
            elif ident in (b"STA2", b"LST2"):
                await self.stat_v2(path, ident, follow=ident == b"STA2")
            elif ident == b"LIST":
                await self.list(path, v2=False)
            elif ident == b"LIS2":
                await self.list(path, v2=True)
            elif ident == b"SEND":
                if not await self.send(path):
                    return
            elif ident == b"RECV":
                if not await self.recv(path):
                    return
            else:
                await self.fail(f"unknown command {ident!r}")
                return

    async def fail(self, message: str) -> None:
        data = message.encode()
        await self.stream.write(SYNC_HEADER.pack(b"FAIL", len(data)) + data)

    def _host_path(self, path: str, *, write: bool = False) -> Path:
        return self.phone.os.resolve(path, write=write)

    async def stat_v1(self, path: str) -> None:
        try:
            st = os.stat(self._host_path(path))
            reply = STAT_V1.pack(b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
        except (OSError, PermissionError):
            reply = STAT_V1.pack(b"STAT", 0, 0, 0)
        await self.stream.write(reply)

    @staticmethod
    def _stat2(ident: bytes, st: os.stat_result | None, error: int = 0) -> bytes:
        if st is None:
            return STAT_V2.pack(ident, error, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return STAT_V2.pack(
            ident,
            0,
            st.st_dev,
            st.st_ino,
            st.st_mode,
            st.st_nlink,
            2000,  # shell
            2000,
            st.st_size,
            int(st.st_atime),
            int(st.st_mtime),
            int(st.st_ctime),
        )

    async def stat_v2(self, path: str, ident: bytes, *, follow: bool) -> None:
        try:
            host = self._host_path(path)
            st = os.stat(host) if follow else os.lstat(host)
            reply = self._stat2(ident, st)
        except PermissionError:
            reply = self._stat2(ident, None, 13)  # EACCES
        except OSError as exc:
            reply = self._stat2(ident, None, exc.errno or 2)
        await self.stream.write(reply)

    async def list(self, path: str, *, v2: bool) -> None:
        entries: list[tuple[str, os.stat_result]] = []
        with contextlib.suppress(OSError):
            host = self._host_path(path)
            for name in [".", "..", *sorted(os.listdir(host))]:
                with contextlib.suppress(OSError):
                    entries.append((name, os.lstat(host / name)))
        out = bytearray()
        for name, st in entries:
            raw = name.encode("utf-8", "surrogateescape")
            if v2:
                out += DENT_V2.pack(
                    b"DNT2",
                    0,
                    st.st_dev,
                    st.st_ino,
                    st.st_mode,
                    st.st_nlink,
                    2000,
                    2000,
                    st.st_size,
                    int(st.st_atime),
                    int(st.st_mtime),
                    int(st.st_ctime),
                    len(raw),
                )
            else:
                out += DENT_V1.pack(
                    b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(raw)
                )
            out += raw
        # The DONE that ends a listing is padded to a full entry.
        size = DENT_V2.size if v2 else DENT_V1.size
        out += b"DONE" + bytes(size - 4)
        await self.stream.write(out)

    async def _drain_send(self) -> None:
        """Swallow the rest of a failed push up to its DONE, as adbd does."""
        while True:
            ident, length = SYNC_HEADER.unpack(await self.stream.readexactly(8))
            if ident != b"DATA":
                return
            await self.stream.readexactly(length)

    async def send(self, spec: str) -> bool:
        path, _, mode_text = spec.rpartition(",")
        if not path:
            path, mode_text = spec, "33188"
        try:
            mode = int(mode_text)
        except ValueError:
            mode = 0o100644
        try:
            host = self._host_path(path, write=True)
            host.parent.mkdir(parents=True, exist_ok=True)
            if host.is_dir():
                raise IsADirectoryError(21, "Is a directory")
            tmp = host.with_name(f".{host.name}.farm-push")
            fh = open(tmp, "wb")  # noqa: SIM115
        except PermissionError:
            await self.fail("couldn't create file: Read-only file system")
            await self._drain_send()
            return False
        except OSError as exc:
            await self.fail(f"couldn't create file: {exc.strerror or exc}")
            await self._drain_send()
            return False
        faults = self.phone.faults
        free = self.phone.os.free_bytes()
        if faults.disk_full_free is not None:
            free = min(free, faults.disk_full_free)
        written = 0
        ok = False
        try:
            while True:
                ident, length = SYNC_HEADER.unpack(await self.stream.readexactly(8))
                if ident == b"DONE":
                    mtime = length
                    break
                if ident != b"DATA" or length > SYNC_MAX_DATA:
                    await self.fail("invalid data message")
                    return False
                data = await self.stream.readexactly(length)
                if written + length > free:
                    await self.fail("write failed: No space left on device")
                    await self._drain_send()
                    return False
                fh.write(data)
                written += length
                self.phone.count_transfer(length)
            fh.close()
            os.chmod(tmp, stat_mod.S_IMODE(mode) or 0o644)
            os.utime(tmp, (mtime, mtime))
            os.replace(tmp, host)
            ok = True
        finally:
            if not ok:
                fh.close()
                with contextlib.suppress(OSError):
                    tmp.unlink()
        await self.stream.write(SYNC_HEADER.pack(b"OKAY", 0))
        return True

    async def recv(self, path: str) -> bool:
        try:
            host = self._host_path(path)
            fh = open(host, "rb")  # noqa: SIM115
        except PermissionError:
            await self.fail("open failed: Permission denied")
            return False
        except OSError as exc:
            await self.fail(f"open failed: {exc.strerror or exc}")
            return False
        # DATA packets are batched so each WRTE carries up to a full payload.
        per_write = max(1, self.stream.conn.max_payload // (SYNC_MAX_DATA + SYNC_HEADER.size))
        with fh:
            while True:
                batch = bytearray()
                for _ in range(per_write):
                    data = fh.read(SYNC_MAX_DATA)
                    if not data:
                        break
                    self.phone.count_transfer(len(data))
                    batch += SYNC_HEADER.pack(b"DATA", len(data)) + data
                if not batch:
                    break
                await self.stream.write(batch)
        await self.stream.write(SYNC_HEADER.pack(b"DONE", 0))
        return True

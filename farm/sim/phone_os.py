"""The device side of one virtual phone below the adb protocol: files, processes, state.

Each phone owns a folder on the host (`root`) and a long-lived bubblewrap (`bwrap`) sandbox: one
"init" per phone holds its own user, pid, mount, network, ipc and uts namespaces, and every shell
command enters them (`nsenter`) as uid 2000 without capabilities, cwd `/`. Inside, the phone sees:

- `/data/local/tmp` and `/sdcard` (also `/storage/emulated/0`): the only writable places, backed
  by `root/data/local/tmp` and `root/sdcard`;
- `/system/bin`: Android's userland of the profile's release (`farm.sim.userland`): `sh` is
  mksh, the other commands toybox applets (a few from busybox), and the stand-ins of
  `farm.sim.android_files` behind `#!/system/bin/sh` (getprop, setprop, dumpsys, service, cmd,
  df, a detaching nohup, `toybox` limited to the release's applets, and `benchmark_model`,
  which execs `python -m farm.sim.benchmark_model`); `/system/build.prop`; `/system/etc/passwd`
  knowing `shell`; the host's Python, site-packages and the `farm` package read-only under
  `/system/lib` (the phone's system image); the real mksh, toybox, busybox and the lab's own
  helpers under `/system/lib/simtools` (the stand-ins' private PATH, never the phone's);
- `/proc` of its own pid namespace (`ps` shows only the phone's processes) with `/proc/cpuinfo`
  and `/proc/meminfo` generated from the profile, and a generated `/sys` (cpufreq, thermal
  zones, battery);
- `/usr/lib*` and `/lib*` read-only for the shared libraries. Nothing else of the host: no
  `/bin` or `/usr/bin`, no `/etc/passwd`, no `/home`, no repository, no host network.

On a release without the shell protocol (Android 6) a `shell:` command runs on a PTY
(`spawn(..., tty=True)`): it is the controlling terminal of the shell's session, and output
comes back with CR LF line ends as adbd of that release sends it.

Detached jobs (`nohup cmd &`) run in a session of their own, so they outlive the shell and the
adb stream that started them, as on a phone (`kill_group` on a closed stream reaches the shell's
process group only; a job still between `&` and its nohup at that instant dies with it).
`kill_all` (reboot, phone death, lab down) kills the init and with it the whole pid namespace,
then every sandbox the phone ever started and any process still carrying its name
(FARM_SIM_SERIAL, in the environment of the init and of every command), until none is left.
The sandbox dies with the thread that first spawned into it (bwrap --die-with-parent): spawn
from the event loop's thread. Needs bwrap, and nsenter and setpriv from util-linux.

`state_dir` (`root/state`, `/data/vendor/farm_sim` inside, named by FARM_SIM_STATE) is shared
with the `benchmark_model` stand-in: profile.json, engine, faults.json, running/ (one file per
running benchmark, named by its pid: while one exists, `background()` heats the thermal zones,
unless it says `self`: the stand-in heats them by its simulated load), thermal.json (the zone
temperatures, `farm.sim.heat`), thermalservice (the `dumpsys thermalservice` text), settings
(what `settings put` stored) and, for a phone of a lab, cpu_lock: where the phone sees the lab's
host CPU lock file (`CPU_LOCK`, bound read-only), which the litert engine holds while it times
inferences.

Without bubblewrap or Android's userland (Debian's mksh, toybox, busybox-static), or when
bubblewrap cannot create namespaces, phones run UNCONFINED: shell commands run
directly on the host as the current user, in their own process group, with cwd
`root/data/local/tmp` and the phone's scripts first on PATH. Device paths such as
/data/local/tmp do not exist there, host files are reachable, and `ps` shows host processes. A
warning says so once per process. Install them (`scripts/setup-system.sh`) for real
phones-in-a-box.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import posixpath
import select
import shutil
import signal
import site
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from farm.profiles import PROFILE_DIR, Profile
from farm.sim import android_files as af
from farm.sim import heat, userland

log = logging.getLogger("farm.sim.phone_os")

SHELL_UID = 2000  # Android's `shell` user
INIT_TIMEOUT_S = 10.0
KILL_WAIT_S = 5.0
MIB = 1024 * 1024
NS_GET_USERNS = 0xB701  # ioctl: the user namespace owning a namespace

_warned_unconfined = False

CPU_LOCK = "/data/vendor/farm_cpu.lock"  # the lab's host CPU lock inside a sandbox
SIMTOOLS = "/system/lib/simtools"  # the real userland binaries and the lab's private helpers
# Host binaries bound into SIMTOOLS: Android's userland, and what commands enter the sandbox by.
_SIMTOOLS_BINARIES = ("mksh", "toybox", "busybox", "nsenter", "setpriv")
# The stand-ins' private PATH: name -> the multicall binary in SIMTOOLS it links to.
_PRIVATE_TOOLS = {
    **{
        name: "busybox"
        for name in ("awk", "cat", "cut", "find", "grep", "mv", "printf", "sort", "stat", "tail")
    },
    "setsid": "toybox",
    "nohup": "toybox",
}

# Device path -> (folder under root, writable). Paths the sync service may reach.
_MOUNTS: tuple[tuple[str, str, bool], ...] = (
    (af.DATA_TMP, "data/local/tmp", True),
    (af.SDCARD, "sdcard", True),
    (af.SDCARD_ALIAS, "sdcard", True),
    ("/system/bin", "system/bin", False),
    ("/system/build.prop", "system/build.prop", False),
    ("/sys", "sys", False),
    ("/proc/cpuinfo", "proc/cpuinfo", False),
    ("/proc/meminfo", "proc/meminfo", False),
)


def bubblewrap_available() -> bool:
    """True when bwrap, nsenter, setpriv and Android's userland (mksh, toybox, busybox) are
    all on PATH."""
    tools = ("bwrap", "nsenter", "setpriv")
    return all(shutil.which(tool) for tool in tools) and userland.host_binaries() is not None


@lru_cache(maxsize=1)
def _python_image() -> tuple[Path, str, list[Path], Path]:
    """(Python prefix, executable name, site-packages folders, farm package folder) to expose."""
    import farm

    prefix = Path(sys.base_prefix).resolve()
    exe = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not (prefix / "bin" / exe).exists():
        exe = "python3"
    sites = []
    for entry in site.getsitepackages():
        path = Path(entry).resolve()
        if path.is_dir() and prefix not in path.parents and path not in sites:
            sites.append(path)
    return prefix, exe, sites, Path(farm.__file__).resolve().parent


def _host_tool(name: str) -> str:
    """Absolute path of a host tool (the phone's shell sees /usr and /bin at the same paths)."""
    return shutil.which(name) or f"/usr/bin/{name}"


def _simtools_binaries() -> dict[str, str]:
    """Host paths of the binaries a sandbox binds into SIMTOOLS."""
    found = userland.host_binaries() or {}
    for name in ("nsenter", "setpriv"):
        found[name] = _host_tool(name)
    return found


def _sync_links(folder: Path, links: dict[str, str], *, keep: set[str]) -> None:
    """Make `folder`'s symlinks exactly `links` (name -> target); files named in `keep` stay."""
    for entry in os.scandir(folder):
        if entry.name in links or entry.name in keep:
            continue
        if entry.is_symlink():
            os.unlink(entry.path)
    for name, target in links.items():
        path = folder / name
        if path.is_symlink() and os.readlink(path) == target:
            continue
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)


class _PtyReader(asyncio.StreamReaderProtocol):
    """Reads a PTY master: EIO (no process holds the terminal any more) is its end."""

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            exc = None
        super().connection_lost(exc)


async def _spawn_on_pty(
    argv: list[str], *, env: dict[str, str], cwd: str | None, pass_fds: tuple[int, ...]
) -> asyncio.subprocess.Process:
    """Start argv in a new session whose controlling terminal is a new PTY (util-linux
    `setsid --ctty`); stdout reads the PTY, stdin writes to it."""
    loop = asyncio.get_running_loop()
    master, slave = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            _host_tool("setsid"),
            "--ctty",
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            pass_fds=pass_fds,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: _PtyReader(reader), open(master, "rb", buffering=0))
    out_fd = os.dup(master)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, open(out_fd, "wb", buffering=0)
    )
    proc.stdout = reader
    proc.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
    proc.stderr = None
    return proc


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _live(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class PhoneOS:
    """The device side of one virtual phone below the adb protocol: files, processes, state.

    `confine`: None confines with bubblewrap when it is installed (warning once otherwise);
    False runs unconfined on purpose. `cpu_lock`: the lab's host CPU lock file (see the module
    docstring); None for a phone on its own.
    """

    def __init__(
        self,
        serial: str,
        profile: Profile,
        root: Path,
        *,
        engine: str = "litert",
        confine: bool | None = None,
        cpu_lock: Path | None = None,
    ) -> None:
        self.serial = serial
        self.profile = profile
        self.engine = engine
        self.cpu_lock = Path(cpu_lock).resolve() if cpu_lock is not None else None
        self.root = Path(root).resolve()
        self.state_dir = self.root / "state"
        self.tick_s = 1.0
        self.release = userland.release_for(userland.sdk_of(profile.props))
        self.confined = bubblewrap_available() if confine is None else confine
        self._init: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None  # host pid of the sandbox's pid 1
        # Every sandbox ever started and not yet seen gone: host pid of its pid 1 -> its pid
        # namespace, and the bwrap processes, so that kill_all ends them all.
        self._sandboxes: dict[int, str] = {}
        self._bwraps: list[subprocess.Popen[bytes]] = []
        self._storage_free_mb: int | None = None  # what df counts from while a disk is full
        self._groups: set[int] = set()
        self._userns_fds: tuple[int, ...] = ()  # (owner of the namespaces, the sandbox's own)
        self._busy = False
        self._prepare()
        if confine is None and not self.confined:
            self._warn_unconfined(
                "bubblewrap (bwrap, nsenter, setpriv) or Android's userland (mksh, toybox, "
                "busybox) not found"
            )

    # Layout on the host.
    def _prepare(self) -> None:
        root = self.root
        for sub in ("data/local/tmp", "sdcard", "proc", "system/bin", "system/etc"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("lib/python", "lib/farm/farm", "lib/farm/device_profiles", "lib/simtools"):
            (root / "system" / sub).mkdir(parents=True, exist_ok=True)
        _prefix, _exe, sites, _farm = _python_image()
        for index in range(len(sites)):
            (root / "system" / "lib" / f"site{index}").mkdir(exist_ok=True)
        self._write_identity()
        self._write_state()
        self._write_userland()
        self._write_scripts()

    def _write_identity(self) -> None:
        props = af.device_props(self.profile, self.serial)
        _atomic_write(self.root / "system" / "build.prop", af.build_prop(props))
        _atomic_write(self.root / "proc" / "cpuinfo", af.cpuinfo(self.profile))
        _atomic_write(self.root / "proc" / "meminfo", af.meminfo(self.profile))
        sys_dir = self.root / "sys"
        files, links = af.sysfs_files(self.profile)
        for rel, text in files.items():
            path = sys_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        for rel, target in links.items():
            path = sys_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() and os.readlink(path) == target:
                continue
            if path.is_symlink() or path.is_file():
                path.unlink()
            path.symlink_to(target)
        self._busy = False
        self.state_dir.mkdir(parents=True, exist_ok=True)
        heat.update(self.state_dir, self.profile, lambda _t: heat.idle(self.profile))
        self._write_thermal(force=True)

    def _write_state(self) -> None:
        state = self.state_dir
        for sub in ("running",):
            folder = state / sub
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        _atomic_write(state / "profile.json", self.profile.model_dump_json())
        _atomic_write(state / "engine", self.engine)
        _atomic_write(state / "faults.json", "{}")
        _atomic_write(state / "props", "")
        if not (state / "settings").exists():  # a phone's settings survive its restarts
            _atomic_write(state / "settings", "global/stay_on_while_plugged_in=0\n")
        self._write_cpu_lock()

    def _write_cpu_lock(self) -> None:
        """state/cpu_lock: the lock file's path as the phone's processes see it."""
        target = self.state_dir / "cpu_lock"
        if self.cpu_lock is None:
            target.unlink(missing_ok=True)
            return
        self.cpu_lock.touch(mode=0o644, exist_ok=True)
        _atomic_write(target, CPU_LOCK if self.confined else str(self.cpu_lock))

    def _applets(self) -> dict[str, str]:
        """The release's commands besides the stand-ins: name -> multicall binary."""
        binaries = userland.host_binaries()
        return userland.applet_sources(self.release, binaries) if binaries else {}

    def _layout(self) -> af.ShellLayout:
        if self.confined:
            _prefix, exe, sites, _farm = _python_image()
            paths = ["/system/lib/farm"] + [f"/system/lib/site{i}" for i in range(len(sites))]
            applets = self._applets()
            return af.ShellLayout(
                python=f"/system/lib/python/bin/{exe}",
                pythonpath=":".join(paths),
                ld_library_path="/system/lib/python/lib",
                tools=SIMTOOLS,
                setsid=f"{SIMTOOLS}/setsid",
                nohup=f"{SIMTOOLS}/nohup",
                toybox=f"{SIMTOOLS}/toybox",
                toybox_applets=tuple(n for n, src in applets.items() if src == "toybox"),
                toolbox_df=self.release.toolbox_df,
                # On a PTY release the detaching stand-in would hide how toybox's nohup
                # keeps the terminal (and so the adb shell) open.
                toybox_nohup=self.release.shell_pty,
            )
        _prefix, _exe, _sites, farm_dir = _python_image()
        return af.ShellLayout(
            shebang="/bin/sh",
            tools=os.environ.get("PATH", "/usr/bin:/bin"),
            setsid=_host_tool("setsid"),
            nohup=_host_tool("nohup"),
            toolbox_df=self.release.toolbox_df,
            system=str(self.root / "system"),
            state=str(self.state_dir),
            sys=str(self.root / "sys"),
            data_tmp=str(self.root / "data/local/tmp"),
            sdcard=str(self.root / "sdcard"),
            python=sys.executable,
            pythonpath=str(farm_dir.parent),
        )

    def _write_scripts(self) -> None:
        bin_dir = self.root / "system" / "bin"
        scripts = af.shell_scripts(
            self.profile, self._layout(), storage_free_mb=self._storage_free_mb
        )
        for name, text in scripts.items():
            path = bin_dir / name
            if path.is_symlink():
                path.unlink()
            _atomic_write(path, text)
            path.chmod(0o755)

    def _write_userland(self) -> None:
        """/system/bin's links (sh and the release's applets), SIMTOOLS and /system/etc.

        Confined, the links point into SIMTOOLS, whose empty files the sandbox binds the host's
        binaries over; unconfined, `sh` is the host's /bin/sh and the host's PATH has the rest.
        """
        system = self.root / "system"
        simtools = system / "lib" / "simtools"
        links: dict[str, str] = {}
        tools: dict[str, str] = {}
        if self.confined:
            stand_ins = set(af.stand_in_names(self._layout()))
            links = {
                name: f"../lib/simtools/{src}"
                for name, src in self._applets().items()
                if name not in stand_ins
            }
            links["sh"] = "../lib/simtools/mksh"
            tools = dict(_PRIVATE_TOOLS)
            for name in _SIMTOOLS_BINARIES:
                placeholder = simtools / name
                if placeholder.is_symlink() or not placeholder.is_file():
                    placeholder.unlink(missing_ok=True)
                    placeholder.touch()
        else:
            links["sh"] = "/bin/sh"
        _sync_links(system / "bin", links, keep=set(af.stand_in_names(self._layout())))
        _sync_links(simtools, tools, keep=set(_SIMTOOLS_BINARIES))
        _atomic_write(system / "etc" / "passwd", af.passwd())
        _atomic_write(system / "etc" / "group", af.group())

    def _warn_unconfined(self, why: str) -> None:
        global _warned_unconfined
        if not _warned_unconfined:
            _warned_unconfined = True
            log.warning(
                "%s: virtual phones run shell commands UNCONFINED on the host (cwd in their "
                "sandbox folder; device paths such as /data/local/tmp do not exist there). "
                "Install bubblewrap (apt-get install bubblewrap) to confine them.",
                why,
            )

    # Files.
    def resolve(self, device_path: str, *, write: bool = False) -> Path:
        """Host path for a device path, following the phone's symlinks as the phone would.

        PermissionError outside the sandbox (or for writes to read-only places), FileNotFoundError
        where the phone would say "No such file or directory".
        """
        path = device_path
        for _hop in range(40):
            path = posixpath.normpath(posixpath.join("/", path))
            mount = next(
                (m for m in _MOUNTS if path == m[0] or path.startswith(m[0] + "/")),
                None,
            )
            if mount is None:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), device_path)
            prefix, folder, writable = mount
            rest = path[len(prefix) :].strip("/")
            parts = rest.split("/") if rest else []
            host = self.root / folder
            followed = None
            for index, part in enumerate(parts):
                host = host / part
                if host.is_symlink():
                    link_dir = posixpath.join(prefix, *parts[:index])
                    followed = posixpath.join(link_dir, os.readlink(host), *parts[index + 1 :])
                    break
                if not host.exists():
                    if not write:
                        raise FileNotFoundError(
                            errno.ENOENT, os.strerror(errno.ENOENT), device_path
                        )
                elif index < len(parts) - 1 and not host.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), device_path)
            if followed is not None:
                path = followed
                continue
            if write and not writable:
                raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), device_path)
            return host
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), device_path)

    def used_bytes(self) -> int:
        """Bytes stored in /data/local/tmp and /sdcard."""
        total = 0
        for folder in (self.root / "data/local/tmp", self.root / "sdcard"):
            for dirpath, _dirs, files in os.walk(folder):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(dirpath, name)).st_size
                    except OSError:
                        pass
        return total

    def free_bytes(self) -> int:
        """Space left on /data: the profile's free space minus what is stored."""
        return max(0, self.profile.sim.storage_free_mb * MIB - self.used_bytes())

    def set_storage_free(self, free: int | None) -> None:
        """Make df show at most `free` bytes left on /data (a full disk); None: the profile's."""
        if free is None:
            self._storage_free_mb = None
        else:
            self._storage_free_mb = (self.used_bytes() + min(free, self.free_bytes())) // MIB
        self._write_scripts()

    def getprop(self) -> dict[str, str]:
        """Every system property, as `adb shell getprop` lists them."""
        text = (self.root / "system" / "build.prop").read_text(encoding="utf-8")
        props_file = self.state_dir / "props"
        if props_file.exists():
            text += props_file.read_text(encoding="utf-8")
        return af.parse_build_prop(text)

    # Faults read by the benchmark stand-in.
    def faults(self) -> dict[str, Any]:
        """The faults currently set (faults.json)."""
        try:
            return json.loads((self.state_dir / "faults.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def set_fault(self, name: str, **options: Any) -> None:
        """Set one fault with its options (replacing an earlier one of the same name)."""
        faults = self.faults()
        faults[name] = options
        _atomic_write(self.state_dir / "faults.json", json.dumps(faults, sort_keys=True))

    def clear_faults(self) -> None:
        """Remove every fault."""
        _atomic_write(self.state_dir / "faults.json", "{}")

    # Processes.
    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        layout = self._layout()
        if self.confined:
            env = {
                "PATH": af.SHELL_PATH,
                "HOME": "/",
                "TMPDIR": af.DATA_TMP,
                "EXTERNAL_STORAGE": af.SDCARD,
            }
        else:
            env = {
                "PATH": f"{self.root / 'system/bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "HOME": layout.data_tmp,
                "TMPDIR": layout.data_tmp,
                "EXTERNAL_STORAGE": layout.sdcard,
            }
        env.update(
            {
                "USER": "shell",
                "LOGNAME": "shell",
                "SHELL": "/system/bin/sh",
                "HOSTNAME": "localhost",
                "ANDROID_ROOT": "/system",
                "ANDROID_DATA": "/data",
                "ANDROID_STORAGE": "/storage",
                "FARM_SIM_STATE": layout.state,
                "FARM_SIM_SERIAL": self.serial,
            }
        )
        env.update(extra or {})
        return env

    def _bwrap_args(self) -> list[str]:
        root = self.root
        prefix, _exe, sites, farm_dir = _python_image()
        args = [
            "--unshare-user",
            "--uid",
            str(SHELL_UID),
            "--gid",
            str(SHELL_UID),
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--hostname",
            "localhost",
            "--die-with-parent",
            "--cap-drop",
            "ALL",
        ]
        # Shared libraries only: the host's /bin and /usr/bin stay out of the phone.
        for name in ("lib", "lib32", "lib64", "libx32"):
            usr = Path("/usr") / name
            if usr.is_dir() and not usr.is_symlink():
                args += ["--ro-bind", str(usr), str(usr)]
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                args += ["--ro-bind", str(host), f"/{name}"]
        args += ["--proc", "/proc", "--ro-bind", str(root / "proc/cpuinfo"), "/proc/cpuinfo"]
        args += ["--ro-bind", str(root / "proc/meminfo"), "/proc/meminfo"]
        args += ["--dev", "/dev"]
        args += ["--ro-bind", str(root / "system"), "/system"]
        args += ["--ro-bind", str(prefix), "/system/lib/python"]
        for index, path in enumerate(sites):
            args += ["--ro-bind", str(path), f"/system/lib/site{index}"]
        args += ["--ro-bind", str(farm_dir), "/system/lib/farm/farm"]
        if PROFILE_DIR.is_dir():
            args += ["--ro-bind", str(PROFILE_DIR), "/system/lib/farm/device_profiles"]
        binaries = _simtools_binaries()
        for name in _SIMTOOLS_BINARIES:
            args += ["--ro-bind", binaries[name], f"{SIMTOOLS}/{name}"]
        args += ["--symlink", "/system/etc", "/etc"]
        args += ["--ro-bind", str(root / "sys"), "/sys"]
        args += ["--bind", str(root / "data/local/tmp"), af.DATA_TMP]
        args += ["--bind", str(self.state_dir), af.STATE]
        if self.cpu_lock is not None:
            args += ["--ro-bind", str(self.cpu_lock), CPU_LOCK]
        args += ["--bind", str(root / "sdcard"), af.SDCARD_ALIAS]
        args += ["--symlink", af.SDCARD_ALIAS, af.SDCARD]
        args += ["--chdir", "/", "--remount-ro", "/"]
        return args

    def _start_init(self) -> int:
        """Start the phone's sandbox init; its host pid, the target of every nsenter."""
        args_r, args_w = os.pipe()
        info_r, info_w = os.pipe()
        try:
            # Options go through a pipe so the phone's `ps` does not show host paths.
            options = [*self._bwrap_args(), "--info-fd", str(info_w)]
            payload = b"".join(arg.encode() + b"\0" for arg in options)
            if len(payload) > 60000:  # beyond a pipe buffer the write below would block
                raise RuntimeError("bwrap argument list too long")
            os.write(args_w, payload)
            os.close(args_w)
            args_w = -1
            self._init = subprocess.Popen(
                # The init says "ready" once the sandbox is set up, then sleeps as its pid 2.
                [
                    shutil.which("bwrap") or "bwrap",
                    "--args",
                    str(args_r),
                    f"{SIMTOOLS}/mksh",
                    "-c",
                    "echo ready; exec /system/bin/sleep 2147483647",
                ],
                pass_fds=(args_r, info_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env(None),  # the phone's name on every process of its sandbox
                start_new_session=True,
            )
            self._bwraps.append(self._init)
            os.close(info_w)
            info_w = -1
            data = b""
            deadline = time.monotonic() + INIT_TIMEOUT_S
            while time.monotonic() < deadline:
                ready, _, _ = select.select([info_r], [], [], deadline - time.monotonic())
                chunk = os.read(info_r, 65536) if ready else b""
                if not chunk:
                    break
                data += chunk
            assert self._init.stdout is not None
            out = self._init.stdout.fileno()
            ready, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
            if not ready or not os.read(out, 64).startswith(b"ready"):
                data = b""
        finally:
            for fd in (args_r, args_w, info_r, info_w):
                if fd >= 0:
                    os.close(fd)
        try:
            pid = int(json.loads(data)["child-pid"])
        except (ValueError, KeyError, TypeError):
            err = b""
            if self._init is not None:
                try:  # a bwrap that failed is exiting: its stderr says why
                    self._init.wait(1.0)
                except subprocess.TimeoutExpired:
                    self._init.kill()
                    self._init.wait(KILL_WAIT_S)
                if self._init.stderr is not None:
                    err = self._init.stderr.read()
                self._stop_init()
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"bwrap did not start: {last[0]}") from None
        # The namespaces belong to the user namespace bwrap made first; the sandbox's uid
        # lives in a second one nested in it (when bwrap changes the uid). Commands enter both.
        mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
        try:
            owner = fcntl.ioctl(mnt, NS_GET_USERNS)
        finally:
            os.close(mnt)
        inner = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
        self._userns_fds = (owner, inner)
        self._init_pid = pid
        with contextlib.suppress(OSError):
            self._sandboxes[pid] = os.readlink(f"/proc/{pid}/ns/pid")
        log.debug("%s: sandbox init is host pid %d", self.serial, pid)
        return pid

    def _stop_init(self) -> None:
        init, self._init, pid, self._init_pid = self._init, None, self._init_pid, None
        for fd in self._userns_fds:
            os.close(fd)
        self._userns_fds = ()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)  # pid 1 of the namespace: every process in it dies
            except ProcessLookupError:
                pass
        if init is not None:
            try:  # bwrap exits once its child is gone; it reaps that child first
                init.wait(KILL_WAIT_S if pid is not None else 0)
            except subprocess.TimeoutExpired:
                init.kill()
                try:
                    init.wait(KILL_WAIT_S)
                except subprocess.TimeoutExpired:
                    log.warning("%s: sandbox init %d did not exit", self.serial, init.pid)
            for pipe in (init.stdout, init.stderr):
                if pipe is not None:
                    pipe.close()

    def _ensure_init(self) -> int | None:
        """The running init's host pid (started if needed); None when running unconfined."""
        if not self.confined:
            return None
        if self._init is not None and self._init.poll() is None and self._init_pid is not None:
            return self._init_pid
        if self._init is not None:
            self._stop_init()
        try:
            return self._start_init()
        except (OSError, RuntimeError) as exc:
            self.confined = False
            self._write_userland()
            self._write_scripts()
            self._write_cpu_lock()
            self._warn_unconfined(f"bubblewrap failed ({exc})")
            return None

    async def spawn(
        self, command: str | None, *, env: dict[str, str] | None = None, tty: bool = False
    ) -> asyncio.subprocess.Process:
        """`sh -c command` (None: a shell reading stdin) in the phone, in its own process group.

        `tty`: on a new PTY that is the session's controlling terminal, as adbd runs `shell:`
        without the shell protocol; the process's stdout then reads the PTY (stderr merged, CR
        LF line ends) until no process holds the terminal any more, and its stdin types into it.
        """
        shell = ["/system/bin/sh", "-c", command] if command is not None else ["/system/bin/sh"]
        init_pid = self._ensure_init()
        full_env = self._env(env)
        pass_fds: tuple[int, ...] = ()
        if init_pid is not None:
            nsenter = shutil.which("nsenter") or "nsenter"
            owner, inner = pass_fds = self._userns_fds
            argv = [
                nsenter,
                f"--user=/proc/self/fd/{owner}",
                f"--target={init_pid}",
                *("--mount", "--pid", "--net", "--ipc", "--uts"),
                "--preserve-credentials",
                "--root",
                "--wd",
            ]
            # Past --root, programs are the sandbox's own: the lab's helpers in SIMTOOLS.
            if os.fstat(owner).st_ino != os.fstat(inner).st_ino:
                argv += [
                    f"{SIMTOOLS}/nsenter",
                    f"--user=/proc/self/fd/{inner}",
                    "--preserve-credentials",
                ]
            argv += [f"{SIMTOOLS}/setpriv", "--inh-caps=-all", "--no-new-privs"]
            argv += shell
            cwd = None
        else:
            argv = [str(self.root / "system/bin/sh"), *shell[1:]]
            cwd = str(self.root / "data/local/tmp")
        if tty:
            proc = await _spawn_on_pty(argv, env=full_env, cwd=cwd, pass_fds=pass_fds)
        else:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        self._prune_groups()
        self._groups.add(proc.pid)
        return proc

    def _prune_groups(self) -> None:
        for pgid in list(self._groups):
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                self._groups.discard(pgid)
            except PermissionError:
                pass

    def kill_group(self, proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
        """Signal every process of the command's group (not its detached nohup jobs)."""
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self) -> None:
        """Kill every process this phone started, detached ones included (reboot, death, down)."""
        for pgid in list(self._groups):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._groups.clear()
        self._stop_init()
        self._end_sandboxes()
        if not self.confined:
            # No namespace to tear down: find the phone's processes by their environment,
            # again until none is left (one may have forked meanwhile).
            for _round in range(10):
                pids = self._unconfined_pids()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        running = self.state_dir / "running"
        if running.is_dir():
            for entry in os.scandir(running):
                Path(entry.path).unlink(missing_ok=True)
        # A reboot forgets the properties set since boot, except persist.* ones.
        props = self.state_dir / "props"
        if props.exists():
            kept = {
                k: v
                for k, v in af.parse_build_prop(props.read_text()).items()
                if k.startswith("persist.")
            }
            _atomic_write(props, af.build_prop(kept))

    def _end_sandboxes(self) -> None:
        """Kill every sandbox this phone ever started and whatever still carries its name."""
        deadline = time.monotonic() + KILL_WAIT_S
        while True:
            pids = self._stray_pids()
            if not pids or time.monotonic() >= deadline:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            for bwrap in self._bwraps:
                bwrap.poll()
            time.sleep(0.01)
        if pids:
            log.warning("%s: processes %s did not end", self.serial, pids)
        for bwrap in list(self._bwraps):
            if bwrap.poll() is None:
                bwrap.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    bwrap.wait(KILL_WAIT_S)
            if bwrap.returncode is not None:
                self._bwraps.remove(bwrap)
                for pipe in (bwrap.stdout, bwrap.stderr):
                    if pipe is not None:
                        pipe.close()
        self._sandboxes = {
            pid: ns for pid, ns in self._sandboxes.items() if _pid_ns(pid) == ns and _live(pid)
        }

    def _stray_pids(self) -> list[int]:
        """Live host pids of this phone's sandboxes: a past init (still in its own pid
        namespace), any process in one of those namespaces, or one naming this phone."""
        # A namespace outlives its init only while the kernel tears it down; its number may
        # then be reused by another phone's sandbox, so only live inits name a namespace.
        namespaces = {
            ns for pid, ns in self._sandboxes.items() if _live(pid) and _pid_ns(pid) == ns
        }
        needle = f"FARM_SIM_SERIAL={self.serial}".encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            pid = int(entry)
            if not _live(pid):
                continue
            if _pid_ns(pid) in namespaces:
                pids.append(pid)
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                pids.append(pid)
        return pids

    def _unconfined_pids(self) -> list[int]:
        """Live host processes of this phone when unconfined (found by their environment)."""
        needle = f"FARM_SIM_STATE={self.state_dir}".encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z" and needle in environ.split(b"\0"):
                pids.append(int(entry))
        return pids

    def _alive(self, name: str) -> bool:
        """Whether the process a running/ marker names still runs on the phone."""
        if not name.isdigit():
            return True
        if self.confined:
            if self._init_pid is None:
                return False
            stat = Path(f"/proc/{self._init_pid}/root/proc/{name}/stat")
        else:
            stat = Path(f"/proc/{name}/stat")
        try:
            text = stat.read_text()
        except OSError:
            return False
        return text.rpartition(")")[2].split()[:1] != ["Z"]

    # Thermal state (farm.sim.heat).
    def _load(self) -> tuple[bool, bool]:
        """(a benchmark runs, one runs whose heat nobody reports): live running/ markers; a
        marker saying `self` is a stand-in heating the phone by its own simulated load. Stale
        markers are dropped."""
        running = self.state_dir / "running"
        busy = unreported = False
        try:
            entries = list(os.scandir(running))
        except OSError:
            return False, False
        for entry in entries:
            if not self._alive(entry.name):
                Path(entry.path).unlink(missing_ok=True)
                continue
            busy = True
            try:
                reports = Path(entry.path).read_text(encoding="utf-8").startswith(heat.HEAT_SELF)
            except OSError:
                reports = False
            unreported = unreported or not reports
        return busy, unreported

    def busy(self) -> bool:
        """True while a benchmark runs (a running/ marker of a live process); drops stale ones."""
        return self._load()[0]

    def temperatures(self) -> dict[str, float]:
        """Current temperature of each thermal zone, by zone type, in °C."""
        temps = heat.load(self.state_dir, self.profile)
        return {zone.type: t for zone, t in zip(self.profile.sim.thermal, temps, strict=True)}

    def time_scale(self) -> float:
        """The lab's time_scale of this phone (1.0 unless set)."""
        try:
            return max(float((self.state_dir / "time_scale").read_text().strip()), 0.0)
        except (OSError, ValueError):
            return 1.0

    def set_temperature(self, temp_c: float) -> None:
        """Put the hottest zone at `temp_c` now, the others as far above idle (the `hot` fault)."""
        heat.update(self.state_dir, self.profile, lambda _t: heat.started_at(self.profile, temp_c))
        self._write_thermal(force=True)

    def tick(self, seconds: float) -> None:
        """Advance the thermal state by `seconds`: heat under load, cool toward idle otherwise.

        Seconds count at the lab's pace (`heat.speed` of its time_scale). A stand-in that
        reports its own load heats the phone itself; the tick only mirrors that.
        """
        busy, unreported = self._load()
        thermal_s = seconds * heat.speed(self.time_scale())
        if unreported:
            heat.update(
                self.state_dir, self.profile, lambda t: heat.heated(self.profile, t, thermal_s)
            )
        elif not busy:
            heat.update(
                self.state_dir, self.profile, lambda t: heat.cooled(self.profile, t, thermal_s)
            )
        changed_load = busy != self._busy
        self._busy = busy
        self._write_thermal(force=changed_load)

    def _write_thermal(self, *, force: bool = False) -> None:
        sys_dir = self.root / "sys"
        profile = self.profile
        temps = heat.load(self.state_dir, profile)

        def write(path: Path, text: str) -> None:
            if force or not path.exists() or path.read_text() != text:
                _atomic_write(path, text)

        for index, temp in enumerate(temps):
            write(
                sys_dir / f"devices/virtual/thermal/thermal_zone{index}/temp", af.millidegrees(temp)
            )
        rise = max(
            (t - z.idle_c for z, t in zip(profile.sim.thermal, temps, strict=True)), default=0.0
        )
        write(
            sys_dir / af.battery_temp_file(),
            f"{round((profile.sim.battery.temperature_c + 0.3 * rise) * 10)}\n",
        )
        factor, _status = heat.throttle(profile, temps)
        caps = {
            min(c.cpus): heat.max_freq_khz(profile, c, factor) for c in profile.sim.cpu.clusters
        }
        for rel, text in af.cur_freq_files(profile, self._busy, caps).items():
            write(sys_dir / rel, text)
        write(self.state_dir / "thermalservice", heat.thermalservice(profile, temps))

    async def background(self) -> None:
        """Run forever, updating the thermal state every `tick_s` seconds."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            try:
                self.tick(now - last)
            except OSError as exc:  # the phone's folder is going away (lab down)
                log.debug("%s: thermal update skipped: %s", self.serial, exc)
            last = now

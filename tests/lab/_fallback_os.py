"""A minimal unconfined phone OS for the lab tests, used only while farm.sim.phone_os is absent."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from pathlib import Path

from farm.profiles import Profile


class PhoneOS:
    """Files under root/data, processes as plain `sh -c` in their own session."""

    def __init__(
        self, serial: str, profile: Profile, root: Path, *, engine: str = "litert"
    ) -> None:
        self.serial = serial
        self.profile = profile
        self.root = Path(root)
        self.state_dir = self.root / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.bin = self.root / "bin"
        self.bin.mkdir(exist_ok=True)
        props = "\n".join(f"[{k}]: [{v}]" for k, v in self.getprop().items())
        getprop = self.bin / "getprop"
        getprop.write_text(
            '#!/bin/sh\nif [ -z "$1" ]; then cat <<"EOF"\n'
            + props
            + '\nEOF\nelse\ncase "$1" in\n'
            + "".join(f"  {k}) echo '{v}';;\n" for k, v in self.getprop().items())
            + "  *) echo;;\nesac\nfi\n"
        )
        getprop.chmod(0o755)
        self._procs: set[asyncio.subprocess.Process] = set()

    def resolve(self, device_path: str, *, write: bool = False) -> Path:
        for prefix in ("/data/local/tmp", "/sdcard"):
            if device_path == prefix or device_path.startswith(prefix + "/"):
                host = self.root / prefix.strip("/") / device_path[len(prefix) :].lstrip("/")
                host.parent.mkdir(parents=True, exist_ok=True)
                return host
        raise PermissionError(13, "Permission denied", device_path)

    async def spawn(
        self, command: str | None, *, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        (self.root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
        full_env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.root), **(env or {})}
        args = ["sh", "-c", command] if command is not None else ["sh"]
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.root / "data/local/tmp",
            env=full_env,
            start_new_session=True,
        )
        self._procs.add(proc)
        return proc

    def kill_group(self, proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill_all(self) -> None:
        for proc in list(self._procs):
            self.kill_group(proc)
        self._procs.clear()

    def free_bytes(self) -> int:
        used = sum(f.stat().st_size for f in (self.root / "data").rglob("*") if f.is_file())
        return (
            self.profile.storage_free_mb * 1024 * 1024 - used
            if (self.root / "data").exists()
            else self.profile.storage_free_mb * 1024 * 1024
        )

    def getprop(self) -> dict[str, str]:
        return dict(self.profile.props)

    def set_fault(self, name: str, **options: object) -> None:
        path = self.state_dir / "faults.json"
        faults = json.loads(path.read_text()) if path.exists() else {}
        faults[name] = options
        path.write_text(json.dumps(faults))

    def clear_faults(self) -> None:
        (self.state_dir / "faults.json").unlink(missing_ok=True)

    async def background(self) -> None:
        while True:
            await asyncio.sleep(3600)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

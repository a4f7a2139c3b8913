"""A virtual phone's OS run for real: confined shell, processes, Android files, thermal state.

These drive PhoneOS directly (no adb); the adb-facing behaviour is tested in test_adbd.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import farm
from farm.profiles import get_profile
from farm.sim import android_files as af
from farm.sim import phone_os as phone_os_module
from farm.sim.phone_os import PhoneOS

REPO = Path(farm.__file__).resolve().parent.parent
DEADLINE_S = 20.0

confined_only = pytest.mark.needs("bubblewrap")


async def sh(phone: PhoneOS, command: str | None, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run one command on the phone: (returncode, stdout, stderr), within a deadline."""
    proc = await phone.spawn(command)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), DEADLINE_S)
    finally:
        if proc.returncode is None:
            phone.kill_group(proc)
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def run(phone: PhoneOS, command: str | None, stdin: bytes = b"") -> tuple[int, str, str]:
    return asyncio.run(sh(phone, command, stdin))


def phone_processes(serial: str) -> list[int]:
    """Host pids of processes started for the phone with this serial (by their environment)."""
    pids = []
    needle = f"FARM_SIM_SERIAL={serial}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            pids.append(int(entry))
    return pids


@pytest.fixture
def phone(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[PhoneOS]:
    serial = f"TEST{os.getpid()}{request.node.name}"[:60]
    os_ = PhoneOS(serial, get_profile("pixel_7"), tmp_path / "phone")
    assert os_.confined  # its users need("bubblewrap")
    try:
        yield os_
    finally:
        os_.kill_all()


# Shell semantics.
@confined_only
def test_exit_codes_and_signals(phone: PhoneOS):
    assert run(phone, "exit 7")[0] == 7
    assert run(phone, "true")[0] == 0
    assert run(phone, "false")[0] == 1
    assert run(phone, "no_such_command")[0] == 127
    assert run(phone, "kill -9 $$")[0] == -signal.SIGKILL  # adbd reports 128+9
    assert run(phone, "kill -SEGV $$")[0] == -signal.SIGSEGV


@confined_only
def test_redirection_pipes_and_background(phone: PhoneOS):
    rc, out, _ = run(
        phone,
        "echo one two three | wc -w > /data/local/tmp/n; cat /data/local/tmp/n; "
        "(exit 3) & p=$!; wait $p; echo bg=$?; echo err >&2",
    )
    assert rc == 0
    assert out.split() == ["3", "bg=3"]
    assert phone.resolve("/data/local/tmp/n").read_text().strip() == "3"


@confined_only
def test_interactive_shell_reads_stdin(phone: PhoneOS):
    rc, out, _ = run(phone, None, b"cd /sdcard\npwd\necho $((6*7))\nexit 5\n")
    assert (rc, out.split()) == (5, ["/sdcard", "42"])


@confined_only
def test_shell_as_on_a_phone(phone: PhoneOS):
    rc, out, _ = run(phone, "pwd; id -u; echo $HOME $TMPDIR; hostname; echo $FARM_SIM_STATE")
    assert rc == 0
    assert out.split() == ["/", "2000", "/", af.DATA_TMP, "localhost", af.STATE]


# Confinement.
@confined_only
def test_host_files_are_unreachable(phone: PhoneOS):
    # /etc/passwd is the phone's own (root and shell), not the host's.
    assert run(phone, "cat /etc/passwd")[1] == af.passwd()
    for path in ("/etc/shadow", REPO / "pyproject.toml", Path.home(), phone.root):
        rc, out, err = run(phone, f"cat '{path}' || ls '{path}'")
        assert rc != 0, (path, out)
        assert "No such file or directory" in err
    # The repository is nowhere in the phone's filesystem.
    rc, out, _ = run(phone, "find / -xdev -name pyproject.toml 2>/dev/null | head -1")
    assert out == ""


@confined_only
def test_writes_outside_the_sandbox_fail(phone: PhoneOS):
    for path in ("/x", "/data/x", "/data/local/x", "/system/bin/x", "/sys/x", "/usr/x", "/etc/x"):
        rc, _, err = run(phone, f"echo x > {path}")
        assert rc != 0 and "Read-only file system" in err, (path, err)
    assert run(phone, "rm -f /system/bin/getprop")[0] != 0
    assert run(phone, "mount -o remount,rw /")[0] != 0
    rc, _, _ = run(
        phone, "echo a > /data/local/tmp/a && mkdir -p /sdcard/d && echo b > /sdcard/d/b"
    )
    assert rc == 0
    assert phone.resolve("/data/local/tmp/a").read_text() == "a\n"
    assert phone.resolve("/sdcard/d/b").read_text() == "b\n"


@confined_only
def test_ps_shows_only_the_phone(phone: PhoneOS):
    rc, out, _ = run(phone, "ps -A -o pid,args")  # toybox ps: a header line first
    assert rc == 0
    assert "pytest" not in out and "python" not in out
    pids = [int(line.split()[0]) for line in out.splitlines()[1:]]
    assert max(pids) < 100 and 1 in pids


@confined_only
def test_symlink_made_by_the_shell_does_not_escape_resolve(phone: PhoneOS):
    rc, _, _ = run(
        phone,
        "cd /data/local/tmp && echo m > m && ln -s /etc/passwd p && ln -s m ok "
        f"&& ln -s {phone.root} host",
    )
    assert rc == 0
    assert phone.resolve("/data/local/tmp/ok").read_text() == "m\n"
    for name in ("p", "host/state/faults.json"):
        with pytest.raises(PermissionError):
            phone.resolve(f"/data/local/tmp/{name}")


# Android files.
@confined_only
def test_getprop_setprop(phone: PhoneOS):
    rc, out, _ = run(phone, "getprop")
    assert rc == 0
    listed = dict(line[1:-1].split("]: [", 1) for line in out.splitlines())
    assert listed == phone.getprop()
    assert out == af.format_getprop(phone.getprop())
    assert run(phone, "getprop ro.product.model")[1] == "Pixel 7\n"
    assert run(phone, "getprop no.such.prop fallback")[1] == "fallback\n"
    assert run(phone, f"getprop {af.BENCHMARK_PROP}")[1] == af.BENCHMARK_BINARY + "\n"
    assert run(phone, "setprop debug.farm.x 'a b'")[0] == 0
    assert run(phone, "getprop debug.farm.x")[1] == "a b\n"
    assert phone.getprop()["debug.farm.x"] == "a b"
    rc, _, err = run(phone, "setprop ro.product.model X")
    assert rc == 1 and "Failed to set property" in err
    assert run(phone, "getprop ro.product.model")[1] == "Pixel 7\n"


@confined_only
def test_dumpsys_battery_has_the_real_format(phone: PhoneOS, adb_output):
    rc, out, _ = run(phone, "dumpsys battery")
    assert rc == 0
    real = adb_output("003_dumpsys_battery_unknown_device.txt")
    keys = [line.split(":")[0] for line in out.splitlines()]
    assert keys == [line.split(":")[0] for line in real.splitlines() if line]
    battery = phone.profile.sim.battery
    assert f"  level: {battery.level}" in out.splitlines()
    assert f"  temperature: {round(battery.temperature_c * 10)}" in out.splitlines()
    assert "  USB powered: true" in out.splitlines()
    assert run(phone, "dumpsys nosuch")[1] == "Can't find service: nosuch\n"


@confined_only
def test_proc_and_sys_from_the_profile(phone: PhoneOS):
    profile = phone.profile
    assert run(phone, "cat /proc/cpuinfo")[1] == af.cpuinfo(profile)
    rc, out, _ = run(phone, "cat /sys/class/thermal/thermal_zone*/type")
    assert out.split() == [zone.type for zone in profile.sim.thermal]
    rc, out, _ = run(phone, "cat /sys/class/thermal/thermal_zone0/temp")
    assert out == f"{round(profile.sim.thermal[0].idle_c * 1000)}\n"
    rc, out, _ = run(phone, "cat /sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq")
    assert out == f"{profile.sim.cpu.clusters[-1].max_freq_khz}\n"
    assert run(phone, "cat /sys/devices/system/cpu/possible")[1] == "0-7\n"


@confined_only
def test_df_reports_the_profile_space(phone: PhoneOS):
    phone.resolve("/data/local/tmp/big", write=True).write_bytes(b"\0" * 4 * 1024 * 1024)
    rc, out, _ = run(phone, "df /data")
    assert rc == 0
    header, line = out.splitlines()
    assert header.split()[:4] == ["Filesystem", "1K-blocks", "Used", "Available"]
    available_k = int(line.split()[3])
    assert line.split()[-1] == "/data"
    assert available_k == phone.free_bytes() // 1024


@confined_only
def test_system_image_runs_the_python_stand_in(phone: PhoneOS):
    # The launcher's environment, with the module swapped for a probe.
    rc, out, err = run(
        phone,
        "sed 's/-m farm.sim.benchmark_model/-c \"import sys, numpy, farm.profiles; "
        "print(farm.__file__, sys.argv[1:])\"/' /system/bin/benchmark_model > /data/local/tmp/t"
        " && sh /data/local/tmp/t --graph=x",
    )
    assert rc == 0, err
    assert out == "/system/lib/farm/farm/__init__.py ['--graph=x']\n"


@confined_only
def test_benchmark_model_launcher_reaches_the_stand_in(phone: PhoneOS):
    rc, out, err = run(phone, "benchmark_model --graph=/data/local/tmp/missing.tflite")
    assert "No module named" not in out + err
    assert rc != 0


# Processes.
@confined_only
def test_detached_job_survives_its_shell_and_dies_on_kill_all(phone: PhoneOS):
    async def scenario() -> None:
        proc = await phone.spawn("nohup sleep 600 > /data/local/tmp/log 2>&1 & echo $!")
        out, _ = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
        pid = int(out)
        # The shell has ended; once the job has detached (its own session), a stream close
        # (adbd kills the shell's process group) does not reach it.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        while (await sh(phone, f"cut -d' ' -f6 /proc/{pid}/stat"))[1].strip() != str(pid):
            assert loop.time() < deadline
        phone.kill_group(proc)
        assert (await sh(phone, f"kill -0 {pid} && echo alive"))[1] == "alive\n"
        rc, out, _ = await sh(phone, f"cat /proc/{pid}/cmdline | tr '\\0' ' '")
        assert out.endswith("sleep 600 ")  # toybox runs its own applets in-process
        assert len(phone_processes(phone.serial)) >= 1
        phone.kill_all()
        assert phone_processes(phone.serial) == []
        # The phone comes back (a reboot) without the job.
        assert (await sh(phone, f"kill -0 {pid} 2>/dev/null || echo gone"))[1] == "gone\n"

    asyncio.run(scenario())


@confined_only
def test_kill_group_ends_the_command_and_its_children(phone: PhoneOS):
    async def scenario() -> None:
        proc = await phone.spawn("sleep 600 & echo $!; sleep 600")
        assert proc.stdout is not None
        child = int(await asyncio.wait_for(proc.stdout.readline(), DEADLINE_S))
        phone.kill_group(proc, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), DEADLINE_S)
        assert proc.returncode == -signal.SIGKILL
        rc, out, _ = await sh(phone, f"kill -0 {child} 2>/dev/null || echo gone")
        assert out == "gone\n"

    asyncio.run(scenario())


@confined_only
def test_kill_all_leaves_nothing_behind(phone: PhoneOS):
    async def scenario() -> None:
        procs = [await phone.spawn("sleep 600") for _ in range(3)]
        await sh(phone, "nohup sleep 600 >/dev/null 2>&1 &")
        await sh(phone, "setsid sleep 600 >/dev/null 2>&1 &")
        assert len(phone_processes(phone.serial)) >= 5
        phone.kill_all()
        for proc in procs:
            await asyncio.wait_for(proc.wait(), DEADLINE_S)
        assert phone_processes(phone.serial) == []

    asyncio.run(scenario())


@confined_only
def test_kill_all_ends_the_sandbox_and_each_one_after_a_reboot(phone: PhoneOS):
    def commands(pids: list[int]) -> list[str]:
        out = []
        for pid in pids:
            with contextlib.suppress(OSError):
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode())
        return out

    async def scenario() -> None:
        for _boot in range(2):
            await sh(phone, "nohup sleep 600 >/dev/null 2>&1 &")
            # The sandbox's own processes (bwrap, its sleep) carry the phone's name too.
            names = commands(phone_processes(phone.serial))
            assert any(name.endswith("bwrap") for name in names), names
            phone.kill_all()
            assert phone_processes(phone.serial) == []

    asyncio.run(scenario())


# Thermal state.
@confined_only
def test_benchmark_marker_heats_the_phone_and_it_cools_after(phone: PhoneOS):
    zones = phone.profile.sim.thermal

    async def scenario() -> None:
        phone.tick_s = 0.02
        ticker = asyncio.create_task(phone.background())
        proc = await phone.spawn('touch "$FARM_SIM_STATE/running/$$"; echo go; exec sleep 600')
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), DEADLINE_S)
        temp = phone.resolve("/sys/class/thermal/thermal_zone0/temp")
        idle = round(zones[0].idle_c * 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        while int(temp.read_text()) <= idle + 100 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        hot = int(temp.read_text())
        assert hot > idle
        phone.kill_group(proc)  # the benchmark dies without removing its marker
        await proc.wait()
        ticker.cancel()
        phone.tick(0.5)  # the stale marker is dropped: cooling starts
        assert int(temp.read_text()) < hot or int(temp.read_text()) == idle
        assert not any((phone.state_dir / "running").iterdir())
        phone.tick(10_000)
        assert int(temp.read_text()) == idle

    asyncio.run(scenario())


# Without bubblewrap.
def test_unconfined_fallback_still_has_shell_semantics(tmp_path: Path, caplog):
    phone = PhoneOS("FALLBACK1", get_profile("galaxy_a54"), tmp_path / "p", confine=False)
    try:
        rc, out, _ = run(phone, "pwd; getprop ro.product.model; exit 4")
        assert rc == 4
        assert out.split() == [str(phone.root / "data/local/tmp"), "SM-A546B"]
        rc, out, _ = run(phone, "nohup sleep 600 >/dev/null 2>&1 & echo $!")
        pid = int(out)
        assert os.path.exists(f"/proc/{pid}")
        phone.kill_all()
        assert phone_processes("FALLBACK1") == []
    finally:
        phone.kill_all()


def test_missing_bubblewrap_warns(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(phone_os_module, "bubblewrap_available", lambda: False)
    monkeypatch.setattr(phone_os_module, "_warned_unconfined", False)
    with caplog.at_level(logging.WARNING, logger="farm.sim.phone_os"):
        phone = PhoneOS("W", get_profile("pixel_7"), tmp_path / "w")
    assert not phone.confined
    assert "UNCONFINED" in caplog.text and "bubblewrap" in caplog.text


@confined_only
def test_bubblewrap_that_fails_falls_back_with_a_warning(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(phone_os_module, "_warned_unconfined", False)
    phone = PhoneOS("BROKENBWRAP", get_profile("pixel_7"), tmp_path / "b")
    monkeypatch.setattr(phone, "_bwrap_args", lambda: ["--no-such-option"])
    try:
        with caplog.at_level(logging.WARNING, logger="farm.sim.phone_os"):
            rc, out, _ = run(phone, "getprop ro.product.model; exit 3")
        assert (rc, out) == (3, "Pixel 7\n")
        assert not phone.confined
        assert "bwrap did not start" in caplog.text and "no-such-option" in caplog.text
    finally:
        phone.kill_all()

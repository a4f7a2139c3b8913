"""Every device-side script farm runs: launch a benchmark detached, wait for it with a deadline,
kill it with grace, stop orphans, read free space.

Each function is one shell call through the adb choke point (`Device.shell`), so each has a
deadline and raises the typed errors of `farm.errors`; retrying is the caller's choice. The
scripts use only what Android's own shell (mksh + toybox) has, and stay well under 4 KiB.

A job on the device is a detached shell that starts the benchmark, writes its pid to
`<log>.pid`, waits for it and writes "PID STATUS" to `<log>.rc`. It is started by a small
launcher script, pushed once under its content hash and run with arguments, so a launch stays a
short command whatever the stop-and-wait logic holds (adb servers of the Android 6/7 era abort on
a service name over 4 KiB). The job runs in a session of its own where `setsid` exists: on a
release without the shell protocol `adb shell` runs on a PTY, and a shell that keeps that
terminal open would keep the launch's `adb shell` from returning until the benchmark ends.
A pid counts as ours only while its command line names the benchmark binary (pids are
reused after a reboot); the command line is read with `cat`, which every release has (the
shell drops its NUL separators; `tr` is missing before Android 6).
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from functools import lru_cache

from farm.android import paths
from farm.android.adb import Device, sh_quote
from farm.errors import DeviceError

POLL_S = 0.2  # between checks of a process that was told to stop
BINARY_TOKEN = "benchmark_model"  # every benchmark command line names it


@dataclass(frozen=True)
class Job:
    """A benchmark started detached on a device."""

    pid: int
    log: str  # device path of its output
    binary: str  # device path of the binary (its name identifies the process)

    @property
    def pid_file(self) -> str:
        return pid_file(self.log)

    @property
    def rc_file(self) -> str:
        return self.log + ".rc"


@dataclass(frozen=True)
class JobState:
    """What a wait saw: still running, or ended (with the status its shell recorded, if any)."""

    running: bool
    exit_status: int | None = None


def pid_file(log: str) -> str:
    """The device path of the pid file of the job writing `log`."""
    return log + ".pid"


def _steps(seconds: float) -> int:
    return max(1, round(seconds / POLL_S))


def _term_then_kill(pids: str, grace_s: float | str) -> str:
    """Script: SIGTERM the pids in shell variable `pids`, wait up to `grace_s` (seconds, or a
    shell word giving the number of polls) for them to end, SIGKILL the ones left."""
    steps = grace_s if isinstance(grace_s, str) else str(_steps(grace_s))
    return (
        f"for p_ in ${pids}; do kill -TERM $p_ 2>/dev/null; done; i_=0; "
        f'while [ -n "${pids}" ] && [ $i_ -lt {steps} ]; do a_=; '
        f"for p_ in ${pids}; do kill -0 $p_ 2>/dev/null && a_=1; done; "
        f'[ -z "$a_" ] && break; sleep {POLL_S}; i_=$((i_+1)); done; '
        f"for p_ in ${pids}; do kill -0 $p_ 2>/dev/null && kill -KILL $p_ 2>/dev/null; done"
    )


def _is_ours(pid: str, token: str) -> str:
    """Script condition: process `pid` exists and its command line names `token`."""
    cmdline = f'"$(cat /proc/{pid}/cmdline 2>/dev/null)"'
    return f"case {cmdline} in *{token}*) true;; *) false;; esac"


def stop_pids_script(pid_files: str, grace_s: float | str) -> str:
    """Script: stop the benchmarks named by `pid_files` (a quoted path or a glob), remove the
    files, print "stopped: PID ..."."""
    return (
        f'ps_=; for f_ in {pid_files}; do [ -f "$f_" ] || continue; read q_ <"$f_"; '
        'case "$q_" in ""|*[!0-9]*) ;; *) '
        f'if {_is_ours("$q_", BINARY_TOKEN)}; then ps_="$ps_ $q_"; fi;; esac; '
        'rm -f "$f_"; done; '
        f'{_term_then_kill("ps_", grace_s)}; echo "stopped:$ps_"'
    )


def _stopped(output: str) -> list[int]:
    text = output.rsplit("stopped:", 1)[-1] if "stopped:" in output else ""
    return [int(t) for t in text.split() if t.isdigit()]


def launch(
    device: Device, command: str, *, log: str, binary: str, timeout: float, grace_s: float
) -> Job | None:
    """Start `command` detached with its output in `log`; the Job, or None when no pid came.

    A benchmark an earlier try of the same launch started (its answer was lost) is stopped
    first, so a retried launch never leaves two benchmarks running.
    """
    script = launch_command(ensure_launcher(device, timeout=timeout), log, grace_s, command)
    pid = launched_pid(device.shell(script, timeout=timeout + grace_s).output)
    return Job(pid=pid, log=log, binary=binary) if pid is not None else None


@lru_cache(maxsize=1)
def launcher_script() -> tuple[str, str]:
    """(device path, text) of the launch script: `sh LAUNCHER LOG POLLS COMMAND...`."""
    stop = stop_pids_script('"$l.pid"', "$n_")
    text = (
        "# farm launch: sh THIS LOG POLLS COMMAND... starts COMMAND detached, output in LOG,\n"
        '# pid in LOG.pid, "PID STATUS" in LOG.rc when it ends; prints pid:PID. A benchmark\n'
        "# an earlier try started (LOG.pid) is stopped first, within POLLS polls.\n"
        'if [ "$1" = --job ]; then\n'
        '  l=$2; shift 2; "$@" & p=$!; echo $p >"$l.pid"; wait $p; echo "$p $?" >"$l.rc"\n'
        "  exit 0\n"
        "fi\n"
        "l=$1; n_=$2; shift 2\n"
        f"{stop} >/dev/null\n"
        f'mkdir -p "${{l%/*}}" && cd {sh_quote(paths.ROOT)} && rm -f "$l" "$l.rc" || exit 1\n'
        "s=; command -v setsid >/dev/null 2>&1 && s=setsid\n"
        'nohup $s sh "$0" --job "$l" "$@" </dev/null >"$l" 2>&1 &\n'
        'i=0; while [ ! -s "$l.pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done\n'
        'echo pid:$(cat "$l.pid" 2>/dev/null)\n'
    )
    return paths.launcher_path(hashlib.sha256(text.encode()).hexdigest()), text


def ensure_launcher(device: Device, *, timeout: float) -> str:
    """The launch script's device path, pushed when it is not there yet."""
    remote, text = launcher_script()
    data = text.encode()
    present = device.stat(remote, timeout=timeout)
    if present is None or not present.is_file or present.size != len(data):
        device.push(data, remote, timeout=timeout)
    return remote


def launch_command(launcher: str, log: str, grace_s: float, command: str) -> str:
    """The shell command that runs `command` through the launch script."""
    return f"sh {sh_quote(launcher)} {sh_quote(log)} {_steps(grace_s)} {command}"


def launched_pid(output: str) -> int | None:
    """The pid a launch script printed ("pid:1234" after whatever nohup said), or None."""
    text = output.rsplit("pid:", 1)[-1].strip() if "pid:" in output else ""
    return int(text) if text.isdigit() else None


def _recorded_status(job: Job, attempts: int) -> str:
    """Script: wait up to `attempts` tenths of a second for the job's exit record, print it."""
    q_rc = sh_quote(job.rc_file)
    return (
        f'j=0; while ! grep -q "^{job.pid} " {q_rc} 2>/dev/null && [ $j -lt {attempts} ]; '
        f"do sleep 0.1; j=$((j+1)); done; cat {q_rc} 2>/dev/null"
    )


def recorded_exit_status(text: str, pid: int) -> int | None:
    """The status from a "PID STATUS" record, when it is this pid's."""
    parts = text.split()
    if len(parts) >= 2 and parts[0] == str(pid) and parts[1].isdigit():
        return int(parts[1])
    return None


def wait(device: Device, job: Job, *, chunk_s: float, timeout: float) -> JobState:
    """Wait on the device up to `chunk_s` for the job to end; what it saw.

    The end of a run is seen within a tenth of a second without a stream of adb calls. It
    changes nothing on the device, so a probe whose answer was lost can simply be sent again.
    """
    token = sh_quote(posixpath.basename(job.binary) or BINARY_TOKEN)
    pid = job.pid
    script = (
        f"i=0; while [ $i -lt {max(1, round(chunk_s / 0.1))} ] && kill -0 {pid} 2>/dev/null;"
        f" do sleep 0.1; i=$((i+1)); done; e=1; if kill -0 {pid} 2>/dev/null; then "
        f'case "$(cat /proc/{pid}/cmdline 2>/dev/null)" in ""|*{token}*) e=;; '
        'esac; fi; if [ -z "$e" ]; then echo running; else '
        f"echo ended; {_recorded_status(job, 10)}; fi"
    )
    out = device.shell(script, timeout=chunk_s + 1 + timeout).output
    if "ended" not in out:
        return JobState(running=True)
    return JobState(running=False, exit_status=recorded_exit_status(out.split("ended", 1)[1], pid))


def exit_status(device: Device, job: Job, *, timeout: float) -> int | None:
    """The exit status the job's shell recorded (after a kill), or None; best effort."""
    try:
        out = device.shell(_recorded_status(job, 10), timeout=timeout).output
    except DeviceError:
        return None
    return recorded_exit_status(out, job.pid)


def kill(device: Device, job: Job, *, grace_s: float, timeout: float) -> None:
    """SIGTERM the job's process, SIGKILL it if it is still there after `grace_s`."""
    script = f"k_={job.pid}; {_term_then_kill('k_', grace_s)}; echo killed"
    device.shell(script, timeout=timeout + grace_s)


def forget(device: Device, job: Job, *, timeout: float) -> None:
    """Remove the job's pid and exit-status files (its log stays until pulled)."""
    device.shell(f"rm -f {sh_quote(job.pid_file)} {sh_quote(job.rc_file)}", timeout=timeout)


def stop_orphans(device: Device, *, grace_s: float, timeout: float) -> list[int]:
    """Stop every farm benchmark still running on the device (any run's), the pids stopped.

    A killed farm leaves its benchmark running; a new run beside it would time both wrong.
    """
    pattern = f"{sh_quote(paths.LOGS)}/*.pid"
    out = device.shell(stop_pids_script(pattern, grace_s), timeout=timeout + grace_s).output
    return _stopped(out)


def free_space(device: Device, *, timeout: float) -> str:
    """ "N MiB free on /data (df)" for the folder farm writes to; a reason when unknown."""
    folder = paths.ROOT.rsplit("/", 1)[0]
    try:
        out = device.shell(f"df {sh_quote(folder)}", timeout=timeout).output
    except DeviceError as exc:
        return f"df failed: {exc.message}"
    return parse_df(out) or "df printed nothing usable"


_UNITS = {"": 1 / 1024, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 * 1024}


def parse_df(df_output: str) -> str | None:
    """ "N MiB free on /data" from `df` output: toybox's (1K blocks, Available 4th, mount
    point 6th) or toolbox's of Android 6 and older (`Filesystem Size Used Free Blksize`, sizes
    like 22.4G, Free 4th)."""
    lines = df_output.splitlines()
    toolbox = bool(lines) and lines[0].split()[1:5] == ["Size", "Used", "Free", "Blksize"]
    for line in lines[1:]:
        cols = line.split()
        if toolbox and len(cols) >= 5:
            mib = _size_mib(cols[3])
            if mib is not None:
                return f"{mib:.1f} MiB free on {cols[0]} (df)"
        elif len(cols) >= 6 and cols[3].isdigit():
            return f"{int(cols[3]) / 1024:.1f} MiB free on {cols[5]} (df)"
    return None


def _size_mib(text: str) -> float | None:
    """MiB from a toolbox size such as 22.4G, 512.0K or 3.5M."""
    number, unit = (text[:-1], text[-1].upper()) if text[-1:].isalpha() else (text, "")
    try:
        value = float(number)
    except ValueError:
        return None
    factor = _UNITS.get(unit)
    return value * factor if factor is not None else None

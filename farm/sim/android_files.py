"""The Android-looking files of a virtual phone, generated from its device profile.

Identity (getprop values) comes from the profile's `props`; the CPU, memory, GLES renderer,
thermal zones, battery and free storage from its `sim:` settings.

Pure functions: getprop values and their `[key]: [value]` listing, /proc/cpuinfo and
/proc/meminfo, the cpufreq and thermal sysfs trees, the battery as `dumpsys battery` and
power_supply show it, the GLES line of `dumpsys SurfaceFlinger`, and the small shell scripts of
the phone's /system/bin (getprop, setprop, dumpsys, df, nohup, taskset, settings,
benchmark_model).
`farm.sim.phone_os` writes them into a phone's folder and keeps the changing ones up to date.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from farm.profiles import CpuCluster, Profile

# Device-side paths of a virtual phone.
DATA_TMP = "/data/local/tmp"
SDCARD = "/sdcard"
SDCARD_ALIAS = "/storage/emulated/0"
STATE = "/data/vendor/farm_sim"  # the stand-in's state folder (FARM_SIM_STATE)
SYSTEM = "/system"
BENCHMARK_BINARY = "/system/bin/benchmark_model"
BENCHMARK_PROP = "debug.farm.benchmark_model"
SHELL_PATH = "/system/bin:/system/xbin"

# ARM "CPU part" numbers as /proc/cpuinfo shows them.
_ARM_PARTS = {
    "Cortex-A53": (0x41, 0x0, 0xD03, 4),
    "Cortex-A55": (0x41, 0x2, 0xD05, 0),
    "Cortex-A57": (0x41, 0x1, 0xD07, 1),
    "Cortex-A75": (0x41, 0x2, 0xD0A, 1),
    "Cortex-A76": (0x41, 0x4, 0xD0B, 1),
    "Cortex-A77": (0x41, 0x1, 0xD0D, 0),
    "Cortex-A78": (0x41, 0x1, 0xD41, 0),
    "Cortex-X1": (0x41, 0x1, 0xD44, 0),
    "Cortex-A510": (0x41, 0x1, 0xD46, 0),
    "Cortex-A710": (0x41, 0x2, 0xD47, 0),
    "Cortex-X2": (0x41, 0x2, 0xD48, 0),
    "Cortex-A715": (0x41, 0x1, 0xD4D, 0),
    "Cortex-X3": (0x41, 0x1, 0xD4E, 0),
}
_ARMV8_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
    "dcpop asimddp"
)
_ARMV9_FEATURES = (
    _ARMV8_FEATURES
    + " sha3 sm3 sm4 asimdfhm dit uscat ilrcpc flagm ssbs sb "
    + (
        "paca pacg dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm "
        "svebf16 i8mm bf16 dgh bti"
    )
)
_ARMV9_CORES = {"Cortex-A510", "Cortex-A710", "Cortex-A715", "Cortex-X2", "Cortex-X3"}
_X86_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology "
    "nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic "
    "movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase bmi1 "
    "avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt xsaveopt xsavec xgetbv1 xsaves arat"
)

_BATTERY_STATUS = {"charging": 2, "discharging": 3, "not charging": 4, "full": 5}
_BATTERY_CAPACITY_UAH = 4_000_000


def device_props(profile: Profile, serial: str) -> dict[str, str]:
    """Every getprop value of a phone: the profile's, plus what a booted phone adds."""
    props = {key: value for key, value in profile.props.items() if value != ""}  # unset ones
    if serial and ":" not in serial:  # a TCP serial (host:port) is not a device serial number
        props["ro.serialno"] = serial
        props["ro.boot.serialno"] = serial
    props.setdefault("ro.product.cpu.abilist", ",".join(profile.abis))
    props.setdefault("ro.build.characteristics", "emulator" if profile.emulator else "phone")
    if profile.emulator:
        props["ro.kernel.qemu"] = props.get("ro.kernel.qemu") or "1"
        props.setdefault("ro.boot.qemu", "1")
    props.update(
        {
            "sys.boot_completed": "1",
            "dev.bootcomplete": "1",
            "init.svc.adbd": "running",
            "persist.sys.usb.config": "adb",
            BENCHMARK_PROP: BENCHMARK_BINARY,
        }
    )
    return props


def build_prop(props: dict[str, str]) -> str:
    """Props as a build.prop file (key=value lines)."""
    return "".join(f"{key}={value}\n" for key, value in props.items())


def parse_build_prop(text: str) -> dict[str, str]:
    """Key=value lines (comments and blank lines skipped); a later line wins."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and not key.startswith("#"):
            props[key] = value
    return props


def format_getprop(props: dict[str, str]) -> str:
    """`getprop` output: one `[key]: [value]` line per property, sorted by key."""
    return "".join(f"[{key}]: [{props[key]}]\n" for key in sorted(props))


def _cluster_of(profile: Profile, cpu: int) -> CpuCluster:
    for cluster in profile.sim.cpu.clusters:
        if cpu in cluster.cpus:
            return cluster
    raise ValueError(f"cpu {cpu} is in no cluster of profile {profile.name}")


def _cpus(profile: Profile) -> list[int]:
    return sorted({cpu for cluster in profile.sim.cpu.clusters for cpu in cluster.cpus})


def cpuinfo(profile: Profile) -> str:
    """/proc/cpuinfo as the phone's kernel prints it (arm64 or x86_64 by the primary ABI)."""
    cpus = _cpus(profile)
    blocks = []
    x86 = bool(profile.abis) and profile.abis[0].startswith("x86")
    for cpu in cpus:
        cluster = _cluster_of(profile, cpu)
        if x86:
            mhz = cluster.max_freq_khz / 1000
            blocks.append(
                f"processor\t: {cpu}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
                f"model name\t: {cluster.core}\nstepping\t: 7\ncpu MHz\t\t: {mhz:.3f}\n"
                f"cache size\t: 16384 KB\nphysical id\t: 0\nsiblings\t: {len(cpus)}\n"
                f"core id\t\t: {cpu}\ncpu cores\t: {len(cpus)}\napicid\t\t: {cpu}\n"
                f"fpu\t\t: yes\ncpuid level\t: 13\nwp\t\t: yes\nflags\t\t: {_X86_FLAGS}\n"
                f"bogomips\t: {2 * mhz:.2f}\nclflush size\t: 64\ncache_alignment\t: 64\n"
                "address sizes\t: 46 bits physical, 48 bits virtual\n"
            )
        else:
            implementer, variant, part, revision = _ARM_PARTS.get(cluster.core, (0x41, 0, 0xD05, 0))
            features = _ARMV9_FEATURES if cluster.core in _ARMV9_CORES else _ARMV8_FEATURES
            blocks.append(
                f"processor\t: {cpu}\nBogoMIPS\t: 49.15\nFeatures\t: {features}\n"
                f"CPU implementer\t: 0x{implementer:02x}\nCPU architecture: 8\n"
                f"CPU variant\t: 0x{variant:x}\nCPU part\t: 0x{part:03x}\n"
                f"CPU revision\t: {revision}\n"
            )
    text = "\n".join(blocks)
    if profile.sim.cpu.hardware and not x86:
        text += f"\nHardware\t: {profile.sim.cpu.hardware}\n"
    return text


def meminfo(profile: Profile) -> str:
    """/proc/meminfo's first lines, MemTotal from the profile (free memory a fixed share)."""
    total = profile.sim.mem_total_kb
    return "".join(
        f"{key + ':':<16}{value:>8} kB\n"
        for key, value in (
            ("MemTotal", total),
            ("MemFree", total * 2 // 10),
            ("MemAvailable", total * 5 // 10),
            ("Buffers", total // 500),
            ("Cached", total * 3 // 10),
            ("SwapCached", 0),
        )
    )


def gles_line(profile: Profile) -> str | None:
    """The `GLES: vendor, renderer, version` line of `dumpsys SurfaceFlinger`, or None."""
    gles = profile.sim.gles
    if gles is None:
        return None
    gpu = profile.sim.delegates.gpu
    renderer = gles.renderer or (gpu.renderer if gpu else "")
    return f"GLES: {gles.vendor}, {renderer}, {gles.version}"


def _cpu_range(cpus: list[int]) -> str:
    """Kernel list syntax: [0, 1, 2, 4] -> "0-2,4"."""
    parts: list[str] = []
    start = prev = None
    for cpu in sorted(cpus):
        if start is None:
            start = prev = cpu
        elif cpu == prev + 1:  # type: ignore[operator]
            prev = cpu
        else:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = cpu
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(parts)


def millidegrees(celsius: float) -> str:
    """A thermal zone's `temp` file content."""
    return f"{round(celsius * 1000)}\n"


def sysfs_files(profile: Profile) -> tuple[dict[str, str], dict[str, str]]:
    """The /sys tree: (files by path relative to /sys, symlinks by path -> relative target).

    Temperatures start at each zone's idle value, cpufreq at the cluster's minimum.
    """
    files: dict[str, str] = {}
    links: dict[str, str] = {}
    cpus = _cpus(profile)
    span = _cpu_range(cpus)
    for name in ("online", "possible", "present"):
        files[f"devices/system/cpu/{name}"] = span + "\n"
    for cpu in cpus:
        cluster = _cluster_of(profile, cpu)
        base = f"devices/system/cpu/cpu{cpu}"
        files[f"{base}/online"] = "1\n"
        policy = f"devices/system/cpu/cpufreq/policy{min(cluster.cpus)}"
        links[f"{base}/cpufreq"] = f"../cpufreq/policy{min(cluster.cpus)}"
        related = " ".join(str(c) for c in sorted(cluster.cpus)) + "\n"
        files.update(
            {
                f"{policy}/cpuinfo_max_freq": f"{cluster.max_freq_khz}\n",
                f"{policy}/cpuinfo_min_freq": f"{cluster.min_freq_khz}\n",
                f"{policy}/scaling_max_freq": f"{cluster.max_freq_khz}\n",
                f"{policy}/scaling_min_freq": f"{cluster.min_freq_khz}\n",
                f"{policy}/scaling_cur_freq": f"{cluster.min_freq_khz}\n",
                f"{policy}/cpuinfo_cur_freq": f"{cluster.min_freq_khz}\n",
                f"{policy}/scaling_governor": "schedutil\n",
                f"{policy}/scaling_available_governors": "conservative powersave performance "
                "schedutil\n",
                f"{policy}/related_cpus": related,
                f"{policy}/affected_cpus": related,
            }
        )
    for index, zone in enumerate(profile.sim.thermal):
        base = f"devices/virtual/thermal/thermal_zone{index}"
        files[f"{base}/type"] = zone.type + "\n"
        files[f"{base}/temp"] = millidegrees(zone.idle_c)
        files[f"{base}/mode"] = "enabled\n"
        files[f"{base}/policy"] = "step_wise\n"
        links[f"class/thermal/thermal_zone{index}"] = (
            f"../../devices/virtual/thermal/thermal_zone{index}"
        )
    battery = profile.sim.battery
    power = "devices/platform/battery/power_supply/battery"
    links["class/power_supply/battery"] = f"../../{power}"
    files.update(
        {
            f"{power}/type": "Battery\n",
            f"{power}/capacity": f"{battery.level}\n",
            f"{power}/status": battery.status.title() + "\n",
            f"{power}/health": "Good\n",
            f"{power}/present": "1\n",
            f"{power}/technology": "Li-ion\n",
            f"{power}/temp": f"{round(battery.temperature_c * 10)}\n",
            f"{power}/voltage_now": f"{_battery_mv(battery.level) * 1000}\n",
        }
    )
    return files, links


def _battery_mv(level: int) -> int:
    return 3500 + round(7.5 * level)


def cur_freq_files(
    profile: Profile, busy: bool, caps: dict[int, int] | None = None
) -> dict[str, str]:
    """scaling_cur_freq of each policy (its cap under load, the minimum when idle) and
    scaling_max_freq (the cap: `caps` by first cpu of a throttled cluster, else the maximum)."""
    out = {}
    for cluster in profile.sim.cpu.clusters:
        cap = (caps or {}).get(min(cluster.cpus), cluster.max_freq_khz)
        freq = cap if busy else cluster.min_freq_khz
        policy = f"devices/system/cpu/cpufreq/policy{min(cluster.cpus)}"
        out[f"{policy}/scaling_cur_freq"] = f"{freq}\n"
        out[f"{policy}/cpuinfo_cur_freq"] = f"{freq}\n"
        out[f"{policy}/scaling_max_freq"] = f"{cap}\n"
    return out


def battery_temp_file() -> str:
    """The /sys path (relative) of the battery temperature in tenths of a degree."""
    return "devices/platform/battery/power_supply/battery/temp"


@dataclass(frozen=True)
class ShellLayout:
    """Where the phone's shell finds things (device paths when confined, host paths otherwise).

    `tools` is the private PATH of the stand-ins (the lab's own helper tools, never on the
    phone's PATH); `setsid` and `nohup` are absolute commands from it.
    """

    system: str = SYSTEM
    state: str = STATE
    sys: str = "/sys"
    data_tmp: str = DATA_TMP
    sdcard: str = SDCARD
    python: str = "/system/lib/python/bin/python3"
    pythonpath: str = ""
    ld_library_path: str = ""
    shebang: str = "/system/bin/sh"
    tools: str = "/system/lib/simtools"
    setsid: str = "/system/lib/simtools/setsid"
    nohup: str = "/system/lib/simtools/nohup"
    toybox: str = ""  # the real toybox behind /system/bin/toybox ("": no toybox wrapper)
    toybox_applets: tuple[str, ...] = ()  # the applets the release's toybox answers to
    toolbox_df: bool = False  # df prints toolbox's format (Android 6 and older)
    toybox_nohup: bool = False  # nohup is toybox's own (no new session), not the stand-in


@dataclass(frozen=True)
class StandInContext:
    """What a stand-in is written from."""

    profile: Profile
    layout: ShellLayout
    storage_free_mb: int


_STAND_INS: dict[str, Callable[[StandInContext], str]] = {}
_DUMPSYS: dict[str, Callable[[StandInContext], str]] = {}


def stand_in(name: str) -> Callable[[Callable[[StandInContext], str]], Callable[..., str]]:
    """Register the body of the /system/bin/NAME stand-in (a `#!/system/bin/sh` script).

    The body runs with PATH set to the lab's private tools (awk, sort, find, ...) unless it
    sets its own; `$PHONE_PATH` keeps the phone's PATH for commands it runs on the caller's
    behalf.
    """

    def register(func: Callable[[StandInContext], str]) -> Callable[[StandInContext], str]:
        _STAND_INS[name] = func
        return func

    return register


def dumpsys_service(name: str) -> Callable[[Callable[[StandInContext], str]], Callable[..., str]]:
    """Register the shell lines `dumpsys NAME` runs (its output as the service prints it)."""

    def register(func: Callable[[StandInContext], str]) -> Callable[[StandInContext], str]:
        _DUMPSYS[name] = func
        return func

    return register


def shell_scripts(
    profile: Profile, layout: ShellLayout, *, storage_free_mb: int | None = None
) -> dict[str, str]:
    """The phone's own commands for /system/bin, by name.

    `storage_free_mb`: the free space df counts from (default: the profile's).
    """
    free = profile.sim.storage_free_mb if storage_free_mb is None else storage_free_mb
    ctx = StandInContext(profile, layout, free)
    scripts = {}
    for name in stand_in_names(layout):
        body = _STAND_INS[name]
        scripts[name] = (
            f"#!{layout.shebang}\n# {name}: a stand-in of the virtual phone\n"
            f"PHONE_PATH=$PATH; PATH={shlex.quote(layout.tools)}; export LC_ALL=C\n" + body(ctx)
        )
    return scripts


def _props_files(layout: ShellLayout) -> str:
    q = shlex.quote
    return f"{q(layout.system + '/build.prop')} {q(layout.state + '/props')}"


_MERGE_AWK = (
    '{ i = index($0, "="); if (i > 1 && substr($0, 1, 1) != "#") '
    "v[substr($0, 1, i - 1)] = substr($0, i + 1) }"
)


@stand_in("getprop")
def _getprop(ctx: StandInContext) -> str:
    files = _props_files(ctx.layout)
    return f"""# getprop [NAME [DEFAULT]]: system properties (build.prop, then those set by setprop)
if [ $# -eq 0 ]; then
  sep=$(printf '\\001')
  cat {files} 2>/dev/null | awk '{_MERGE_AWK}
    END {{ for (k in v) printf "%s\\001[%s]: [%s]\\n", k, k, v[k] }}' \\
    | sort -t "$sep" -k1,1 | cut -d "$sep" -f2-
else
  cat {files} 2>/dev/null | K="$1" D="$2" awk '{_MERGE_AWK}
    END {{ k = ENVIRON["K"]; if (k in v) print v[k]; else print ENVIRON["D"] }}'
fi
"""


@stand_in("setprop")
def _setprop(ctx: StandInContext) -> str:
    props = shlex.quote(ctx.layout.state + "/props")
    return f"""# setprop NAME VALUE: only debug.* properties may be set from the shell
if [ $# -ne 2 ]; then
  echo "usage: setprop NAME VALUE" >&2
  exit 1
fi
case "$1" in
  debug.*|persist.debug.*|log.tag.*) ;;
  *) printf "Failed to set property '%s' to '%s'.\\nSee dmesg for error reason.\\n" "$1" "$2" >&2
     exit 1 ;;
esac
case "$2" in *"
"*) echo "setprop: value must be a single line" >&2; exit 1 ;;
esac
printf '%s=%s\\n' "$1" "$2" >> {props}
"""


@stand_in("dumpsys")
def _dumpsys(ctx: StandInContext) -> str:
    names = sorted(_DUMPSYS)
    cases = "".join(f"  {name})\n{_DUMPSYS[name](ctx)}    ;;\n" for name in names)
    listing = "".join(f'echo "  {name}"; ' for name in names)
    return f"""# dumpsys [SERVICE]: the services the virtual phone knows
case "$1" in
{cases}  -l|"") echo "Currently running services:"; {listing}:;;
  *) echo "Can't find service: $1" ;;
esac
"""


@stand_in("service")
def _service(ctx: StandInContext) -> str:
    names = sorted(_DUMPSYS)
    listing = "".join(f'echo "{i}\t{n}: []"; ' for i, n in enumerate(names))
    checks = "|".join(names)
    return f"""# service list | service check NAME: the services the virtual phone knows
case "$1" in
  list) echo "Found {len(names)} services:"; {listing}:;;
  check) case "$2" in {checks}) echo "Service $2: found";; *) echo "Service $2: not found";; esac;;
  *) echo "usage: service [-h|-?]"; echo "       service list"; echo "       service check SERVICE"
     exit 1;;
esac
"""


@stand_in("cmd")
def _cmd(ctx: StandInContext) -> str:
    names = sorted(_DUMPSYS)
    listing = "".join(f'echo "{n}"; ' for n in names)
    return f"""# cmd SERVICE ...: no service of the virtual phone takes commands
case "$1" in
  -l) echo "Currently running services:"; {listing}:;;
  "") echo "cmd: No service specified; use -l to list all running services." >&2; exit 20;;
  *) echo "cmd: Can't find service: $1" >&2; exit 20;;
esac
"""


@dumpsys_service("battery")
def _dumpsys_battery(ctx: StandInContext) -> str:
    battery = ctx.profile.sim.battery
    status = _BATTERY_STATUS[battery.status]
    ac = str(battery.plugged == "ac").lower()
    usb = str(battery.plugged == "usb").lower()
    current = 0 if battery.plugged == "none" else (3000000 if battery.plugged == "ac" else 500000)
    voltage = 0 if battery.plugged == "none" else 5000000
    counter = battery.level * _BATTERY_CAPACITY_UAH // 100
    power = f"{ctx.layout.sys}/class/power_supply/battery"
    q = shlex.quote
    return f"""    echo "Current Battery Service state:"
    echo "  AC powered: {ac}"
    echo "  USB powered: {usb}"
    echo "  Wireless powered: false"
    echo "  Max charging current: {current}"
    echo "  Max charging voltage: {voltage}"
    echo "  Charge counter: {counter}"
    echo "  status: {status}"
    echo "  health: 2"
    echo "  present: true"
    echo "  level: $(cat {q(power + "/capacity")})"
    echo "  scale: 100"
    echo "  voltage: {_battery_mv(battery.level)}"
    echo "  temperature: $(cat {q(power + "/temp")})"
    echo "  technology: Li-ion"
"""


@dumpsys_service("SurfaceFlinger")
def _dumpsys_surfaceflinger(ctx: StandInContext) -> str:
    """The part of SurfaceFlinger's dump that names the GPU: RenderEngine's GLES line."""
    gles = gles_line(ctx.profile)
    line = f"    echo {shlex.quote(gles)}\n" if gles else ""
    return '    echo " ------------RE GLES------------"\n' + line


@dumpsys_service("thermalservice")
def _dumpsys_thermalservice(ctx: StandInContext) -> str:
    """Android's thermal service: status and temperatures, kept current by the heat model."""
    return f"    cat {shlex.quote(ctx.layout.state + '/thermalservice')}\n"


@stand_in("taskset")
def _taskset(ctx: StandInContext) -> str:
    cpus = _cpus(ctx.profile)
    all_cpus = sum(1 << cpu for cpu in cpus)
    return f"""# taskset [-p] MASK [PID | COMMAND...]: the phone's CPUs are {_cpu_range(cpus)}; a
# command runs with FARM_SIM_AFFINITY=MASK (the benchmark stand-in places its threads by it)
PATH=$PHONE_PATH
if [ "$1" = -p ]; then
  [ $# -eq 2 ] && {{ echo "pid $2's current affinity mask: {all_cpus:x}"; exit 0; }}
  shift
fi
case "$1" in
  ""|*[!0-9a-fA-Fx]*) echo "usage: taskset [-p] MASK [PID | COMMAND...]" >&2; exit 1 ;;
esac
if [ $(( 0x${{1#0x}} & {all_cpus} )) -eq 0 ]; then
  echo "taskset: sched_setaffinity: Invalid argument" >&2; exit 1
fi
FARM_SIM_AFFINITY=${{1#0x}}; export FARM_SIM_AFFINITY; shift
case "$1" in ""|*[!0-9]*) [ $# -gt 0 ] && exec "$@"; exit 0 ;; esac
"""


@stand_in("settings")
def _settings(ctx: StandInContext) -> str:
    f = shlex.quote(ctx.layout.state + "/settings")
    return f"""# settings get|put|delete NAMESPACE KEY [VALUE]: kept in the phone's state (a reboot
# keeps them)
case "$1" in
  get) v=$(grep "^$2/$3=" {f} 2>/dev/null | tail -n 1); echo "${{v:-=null}}" | cut -d= -f2- ;;
  put) grep -v "^$2/$3=" {f} > {f}.new 2>/dev/null; echo "$2/$3=$4" >> {f}.new; mv {f}.new {f} ;;
  delete) grep -v "^$2/$3=" {f} > {f}.new 2>/dev/null; mv {f}.new {f}; echo "Deleted 1 rows" ;;
  *) echo "usage: settings get|put|delete NAMESPACE KEY [VALUE]" >&2; exit 1 ;;
esac
"""


# df's numbers are worked out in awk: mksh's arithmetic is 32-bit.
_DF_AWK = r"""
function size(n,   u) {  # toolbox's printsize(): tenths, K/M/G
  n = n * 10; u = "K"
  if (n > 1024 * 1024 * 10) { n = n / 1024; u = "M" }
  if (n > 1024 * 1024 * 10) { n = n / 1024; u = "G" }
  t = int((n + 512) / 1024)
  return sprintf("%4d.%1d%s", int(t / 10), t % 10, u)
}
function row(dev, mnt, arg) {
  if (toolbox)
    printf "%-20s  %s  %s  %s   %d\n", arg, size(total * 1024), size(usedk * 1024),
      size(freek * 1024), 4096
  else
    printf "%-16s %9d %8d %9d %3d%% %s\n", dev, total, usedk, freek, pct, mnt
}
BEGIN {
  freek = int((freebytes - used) / 1024); if (freek < 0) freek = 0
  usedk = 21474836 + int(used / 1024); total = freek + usedk
  pct = int((usedk * 100 + total - 1) / total)
  if (toolbox) print "Filesystem               Size     Used     Free   Blksize"
  else print "Filesystem       1K-blocks     Used Available Use% Mounted on"
  n = 0
  for (i = 1; i < ARGC; i++) {
    p = ARGV[i]
    if (p ~ /^-/) continue
    n++
    if (p == "/data" || p ~ /^\/data\//) row("/dev/block/dm-48", "/data", p)
    else if (p ~ /^\/(sdcard|storage)(\/|$)/) row("/dev/fuse", "/storage/emulated", p)
    else if (toolbox) printf "%-20s  %s  %s  %s   %d\n", p, size(3802128 * 1024),
      size(3790508 * 1024), size(11620 * 1024), 4096
    else printf "%-16s %9d %8d %9d %3d%% %s\n", "/dev/block/dm-0", 3802128, 3790508, 11620, 100, "/"
  }
  if (n == 0) row("/dev/block/dm-48", "/data", "/data")
}
"""


@stand_in("df")
def _df(ctx: StandInContext) -> str:
    layout = ctx.layout
    dirs = f"{shlex.quote(layout.data_tmp)} {shlex.quote(layout.sdcard)}"
    free_bytes = ctx.storage_free_mb * 1024 * 1024
    form = (
        "toolbox's (Size Used Free Blksize, sizes like 22.4G)" if layout.toolbox_df else "toybox's"
    )
    return f"""# df [PATH...]: /data and /sdcard report the phone's free space, minus what is stored
# there; the format is {form}
used=$(find {dirs} -type f -exec stat -c %s {{}} + 2>/dev/null \\
  | awk '{{ s += $1 }} END {{ printf "%d", s }}')
exec awk -v used="${{used:-0}}" -v freebytes={free_bytes} -v toolbox={int(layout.toolbox_df)} \\
  {shlex.quote(_DF_AWK)} "$@"
"""


@stand_in("nohup")
def _nohup(ctx: StandInContext) -> str:
    q = shlex.quote
    return f"""# nohup COMMAND: detached in its own session, so it outlives the shell stream
# that started it
PATH=$PHONE_PATH
exec {q(ctx.layout.setsid)} -w {q(ctx.layout.nohup)} "$@"
"""


@stand_in("toybox")
def _toybox(ctx: StandInContext) -> str:
    """The release's toybox: the applets it has, and "Unknown command" for the rest."""
    layout = ctx.layout
    applets = " ".join(layout.toybox_applets)
    return f"""# toybox [APPLET [ARGS...]]: only the applets of this Android release
PATH=$PHONE_PATH
if [ $# -eq 0 ]; then
  echo {shlex.quote(applets)}
  exit 0
fi
case " {applets} " in
  *" $1 "*) exec {shlex.quote(layout.toybox)} "$@" ;;
esac
echo "toybox: Unknown command $1" >&2
exit 1
"""


@stand_in("benchmark_model")
def _benchmark_model(ctx: StandInContext) -> str:
    q = shlex.quote
    layout = ctx.layout
    return f"""# benchmark_model: the virtual phone's stand-in for TensorFlow Lite's benchmark tool;
# it execs, so its pid and command line are the benchmark's
PATH=$PHONE_PATH
export PYTHONPATH={q(layout.pythonpath)}
export LD_LIBRARY_PATH={q(layout.ld_library_path)}
export PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1
exec {q(layout.python)} -m farm.sim.benchmark_model "$@"
"""


def passwd() -> str:
    """/system/etc/passwd: the users a phone's shell names (root and shell)."""
    return "root:x:0:0:root:/:/system/bin/sh\nshell:x:2000:2000:shell:/:/system/bin/sh\n"


def group() -> str:
    """/system/etc/group: the groups of those users."""
    return "root:x:0:\nshell:x:2000:\n"


def stand_in_names(layout: ShellLayout) -> list[str]:
    """The stand-ins /system/bin holds with this layout."""
    skip = {"toybox"} if not layout.toybox else set()
    if layout.toybox_nohup:
        skip.add("nohup")
    return [name for name in _STAND_INS if name not in skip]

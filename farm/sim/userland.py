"""Android's shell userland by release: which commands a virtual phone has, and from where.

A virtual phone's `/system/bin/sh` is mksh (Debian `mksh`) and its other commands are toybox
applets (Debian `toybox`), limited to the applets the phone's Android release had. Applets
Debian's toybox build lacks come from one other real implementation (`busybox-static`), listed
in `FROM_BUSYBOX`. Android-only commands (getprop, setprop, dumpsys, service, cmd, toolbox `df`)
are stand-ins written by `farm.sim.android_files`.

Sources, per release (AOSP tags; `../shared/notes/android-userland.md` for the measurements):
- SDK 21-22 (Android 5.x): `system/core/toolbox/Android.mk` at `android-5.0.0_r1` and
  `android-5.1.0_r1`: toolbox only (no `tr`, `printf`, `sha*sum`), toolbox `df`; adbd without
  the shell protocol: `shell:` runs on a PTY, payloads up to 4 KiB (`MAX_PAYLOAD_V1`).
- SDK 23 (Android 6.0): `external/toybox/Android.mk` at `android-6.0.0_r1` (toybox 0.6.x) with
  `df` still from toolbox (`system/core/toolbox/Android.mk`); `sha1sum`/`md5sum` but no
  `sha256sum`; adbd as on 5.x (PTY, 4 KiB).
- SDK 24-25 (Android 7.x): `external/toybox/Android.mk` at `android-7.0.0_r1` (toybox 0.7.0):
  toybox `df`, still no `sha256sum` (only md5sum/sha1sum); adbd with `shell_v2` and 1 MiB payloads
  (`system/core/adb/adb.h`, `MAX_PAYLOAD`).
- SDK 26-29 (Android 8-10): toybox 0.7.x (`android-9.0.0_r1`: 0.7.6) with the sha2 family;
  `awk` (one-true-awk, `external/one-true-awk`) from Android 9.
- SDK 30+ (Android 11+): toybox 0.8.x (Android 14: 0.8.9, the version Debian ships).

Applet lists below are what the lab models for each release: every release from 6 on has the
applets farm and its tests use (`cat`, `kill`, `sleep`, `mkdir`, `rm`, `grep`, `nohup`, `setsid`,
`sort`, `ls`, `ps`, `tr`, ...); the differences that matter are the ones named above.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

# Host binaries a confined phone runs (Debian packages mksh, toybox, busybox-static).
HOST_BINARIES = {"mksh": "mksh", "toybox": "toybox", "busybox": "busybox"}
DEBIAN_PACKAGES = {"mksh": "mksh", "toybox": "toybox", "busybox": "busybox-static"}

# Applets Android enables that Debian's toybox 0.8.9 build lacks (Android builds them from
# toybox's pending set or ships them beside toybox): taken from busybox.
FROM_BUSYBOX = frozenset({"tr", "awk", "expr"})

# Toybox applets of Android 6.0 (toybox 0.6.x, `external/toybox/Android.mk`, android-6.0.0_r1).
_TOYBOX_M = frozenset(
    """
    acpi basename blkid bzcat cal cat chcon chgrp chmod chown chroot cksum clear comm cmp cp
    cpio cut date dirname dmesg dos2unix du echo env expand expr fallocate false find free
    getenforce groups head hostname hwclock id ifconfig inotifyd insmod kill load_policy ln
    logname losetup ls lsmod lsof lsusb md5sum mkdir mknod mkswap mktemp modinfo more mount
    mountpoint mv netstat nice nl nohup od paste patch pgrep pidof pkill pmap printenv printf
    ps pwd readlink realpath renice restorecon rm rmdir rmmod route runcon sed seq setenforce
    setsid sha1sum sleep sort split stat strings swapoff swapon sync sysctl tac tail tar
    taskset tee time timeout top touch tr true truncate umount uname uniq unix2dos uptime
    usleep vmstat wc which whoami xargs yes grep egrep fgrep
    """.split()
)
# Android 7.0 (toybox 0.7.0, android-7.0.0_r1) added these; still no sha256sum.
_TOYBOX_N = _TOYBOX_M | frozenset(
    "dd fsfreeze freeramdisk ionice iorenice killall tty ulimit xxd".split()
)
# Android 9 (toybox 0.7.6, android-9.0.0_r1) added the sha2 family and these; awk beside it.
_TOYBOX_P = _TOYBOX_N | frozenset(
    """
    awk base64 chattr chrt devmem diff file flock getfattr gunzip gzip lsattr microcom mkfifo
    nproc nsenter readelf rtcwake setfattr sha224sum sha256sum sha384sum sha512sum uclampset
    unshare uuidgen watch zcat
    """.split()
)
# Android 5.x: toolbox's commands (`system/core/toolbox/Android.mk`, android-5.0.0_r1), run here
# by toybox's applets of the same names; `md5` has no toybox twin.
_TOOLBOX_L = frozenset(
    """
    cat chcon chmod chown clear cmp cp date dd df dmesg du getenforce getevent getsebool grep
    hd id ifconfig iftop insmod ioctl ionice kill ln load_policy log ls lsmod lsof mkdir mkswap
    mount mv nandread netstat newfs_msdos notify printenv ps readlink renice restorecon rm
    rmdir rmmod route runcon schedtop sendevent setenforce setsebool sleep smd start stop
    swapoff swapon sync top touch umount uptime vmstat watchprops wipe
    """.split()
)
ALL = None  # every applet of the installed toybox (the newest releases)


@dataclass(frozen=True)
class Release:
    """What a phone of one Android release runs in its shell."""

    first_sdk: int
    name: str
    applets: frozenset[str] | None  # None: every applet of the installed toybox (plus busybox's)
    toolbox_df: bool  # `df` prints toolbox's `Size Used Free Blksize` with sizes like 22.4G
    shell_pty: bool  # no shell protocol: a `shell:` service runs on a PTY
    max_payload: int  # the largest ADB message payload adbd takes (a service name included)


# Newest first; a phone uses the first release whose first SDK is at most its own.
RELEASES: tuple[Release, ...] = (
    Release(30, "Android 11+ (toybox 0.8.x)", ALL, False, False, 1024 * 1024),
    Release(28, "Android 9-10 (toybox 0.7.6)", _TOYBOX_P, False, False, 1024 * 1024),
    Release(24, "Android 7.x-8.x (toybox 0.7.0)", _TOYBOX_N, False, False, 1024 * 1024),
    Release(23, "Android 6.0 (toybox 0.6, toolbox df)", _TOYBOX_M, True, True, 4096),
    Release(21, "Android 5.x (toolbox)", _TOOLBOX_L, True, True, 4096),
)


def release_for(sdk: int | None) -> Release:
    """The release table row of a phone with this SDK level (None: the newest)."""
    if sdk is None:
        return RELEASES[0]
    for release in RELEASES:
        if sdk >= release.first_sdk:
            return release
    raise ValueError(
        f"SDK {sdk}: the virtual lab models Android 6 (SDK 23) and later (table in {__name__})"
    )


def sdk_of(props: dict[str, str]) -> int | None:
    """The SDK level a profile's props name (ro.build.version.sdk), None when absent."""
    value = props.get("ro.build.version.sdk", "").strip()
    return int(value) if value.isdigit() else None


def host_binaries() -> dict[str, str] | None:
    """Host paths of mksh, toybox and busybox; None when one is missing."""
    found = {name: shutil.which(exe) for name, exe in HOST_BINARIES.items()}
    if any(path is None for path in found.values()):
        return None
    return {name: path for name, path in found.items() if path is not None}


def missing_packages() -> list[str]:
    """Debian packages to install for Android's userland (empty when all are there)."""
    return [DEBIAN_PACKAGES[n] for n, exe in HOST_BINARIES.items() if shutil.which(exe) is None]


@lru_cache(maxsize=4)
def _installed_applets(binary: str, listing_arg: tuple[str, ...]) -> frozenset[str]:
    out = subprocess.run(
        [binary, *listing_arg], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    return frozenset(out.split())


def applet_sources(release: Release, binaries: dict[str, str]) -> dict[str, str]:
    """Every command of the release's /system/bin besides the stand-ins: name -> "toybox" or
    "busybox" (the multicall binary it links to)."""
    toybox = _installed_applets(binaries["toybox"], ())
    busybox = _installed_applets(binaries["busybox"], ("--list",))
    wanted = set(toybox | FROM_BUSYBOX) if release.applets is None else set(release.applets)
    wanted.discard("[")  # a mksh builtin; toybox lists it too
    sources: dict[str, str] = {}
    for name in sorted(wanted):
        if name in toybox and name not in FROM_BUSYBOX:
            sources[name] = "toybox"
        elif name in busybox:
            sources[name] = "busybox"
    return sources

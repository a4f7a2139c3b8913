"""`farm binaries list|add|fetch` through the real entry point (one-line errors, exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from farm.bench.binaries import EM_AARCH64
from tests.elf_builds import ANDROID_BUILDS, make_elf


def farm(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FARM_CACHE": str(cache), "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("FARM_BINARIES_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "farm.cli.main", "binaries", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_add_list_and_refusals(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    empty = farm("list", cache=cache)
    assert empty.returncode == 0
    assert "no binaries in" in empty.stdout and "farm binaries fetch" in empty.stdout

    linux = tmp_path / "linux_aarch64_benchmark_model"
    linux.write_bytes(make_elf(EM_AARCH64, 64, "/lib/ld-linux-aarch64.so.1"))
    refused = farm("add", "arm64-v8a", str(linux), cache=cache)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"farm: error: {linux}: a Linux build (interpreter /lib/ld-linux-aarch64.so.1), "
        "not an Android one (/system/bin/linker64); use an android_* build"
    ]
    wrong_abi = farm("add", "x86", str(linux), cache=cache)
    assert wrong_abi.returncode == 2
    assert wrong_abi.stderr.strip() == f"farm: error: {linux}: built for 64-bit aarch64, not x86"
    unknown = farm("add", "mips", str(linux), cache=cache)
    assert (unknown.returncode, unknown.stderr.count("\n")) == (2, 1)
    assert "unknown ABI 'mips'" in unknown.stderr

    good = tmp_path / "android_arm_benchmark_model"
    good.write_bytes(ANDROID_BUILDS["armeabi-v7a"])
    added = farm("add", "armeabi-v7a", str(good), "--json", cache=cache)
    assert added.returncode == 0, added.stderr
    (entry,) = json.loads(added.stdout)
    assert entry["abi"] == "armeabi-v7a" and entry["source"] == str(good.resolve())
    assert entry["elf"] == "ELF 32-bit arm, interpreter /system/bin/linker"

    listed = farm("list", "--json", cache=cache)
    assert json.loads(listed.stdout) == [entry]
    table = farm("list", cache=cache)
    header, row = table.stdout.strip().splitlines()
    assert header.split()[:3] == ["ABI", "SHA256", "SIZE"]
    assert row.split()[:2] == ["armeabi-v7a", entry["sha256"][:16]]


def test_fetch_unreachable_is_one_line(tmp_path: Path) -> None:
    result = farm("fetch", "arm64-v8a", "--base-url", "http://127.0.0.1:9/x", cache=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(
        "farm: error: fetch http://127.0.0.1:9/x/android_aarch64_benchmark_model:"
    )
    no_build = farm("fetch", "x86_64", cache=tmp_path)
    assert no_build.returncode == 2
    assert "no official prebuilt benchmark_model for x86_64" in no_build.stderr

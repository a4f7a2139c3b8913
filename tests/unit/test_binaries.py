"""The benchmark_model cache: ELF checks per ABI, add/list, fetch from a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from farm.bench import binaries as bins
from farm.bench.binaries import (
    EM_AARCH64,
    EM_ARM,
    EM_X86_64,
    BinaryCache,
    check_binaries,
    check_binary,
    elf_problem,
    parse_elf,
)
from farm.errors import BinaryError
from tests.elf_builds import ANDROID_BUILDS, LINKER, LINKER64, make_elf


@pytest.mark.parametrize("abi", list(ANDROID_BUILDS))
def test_android_build_fits_only_its_abi(abi: str) -> None:
    info = parse_elf(ANDROID_BUILDS[abi])
    for other in ANDROID_BUILDS:
        problem = elf_problem(info, other)
        if other == abi:
            assert problem is None
        else:
            assert problem is not None and "built for" in problem and other in problem


def test_parse_elf_facts() -> None:
    info = parse_elf(ANDROID_BUILDS["armeabi-v7a"])
    assert (info.bits, info.machine, info.interpreter) == (32, EM_ARM, LINKER)
    assert info.describe() == f"ELF 32-bit arm, interpreter {LINKER}"
    static = parse_elf(make_elf(EM_AARCH64, 64, None))
    assert static.interpreter is None and elf_problem(static, "arm64-v8a") is None


def test_linux_builds_refused_with_reason() -> None:
    glibc = parse_elf(make_elf(EM_AARCH64, 64, "/lib/ld-linux-aarch64.so.1"))
    problem = elf_problem(glibc, "arm64-v8a")
    assert problem and "Linux build" in problem and "/lib/ld-linux-aarch64.so.1" in problem
    host = parse_elf(make_elf(EM_X86_64, 64, "/lib64/ld-linux-x86-64.so.2"))
    assert "built for 64-bit x86_64, not arm64-v8a" in (elf_problem(host, "arm64-v8a") or "")
    assert "Linux build" in (elf_problem(host, "x86_64") or "")
    # A 32-bit arm loader named for a 64-bit binary is wrong too.
    odd = parse_elf(make_elf(EM_AARCH64, 64, LINKER))
    assert elf_problem(odd, "arm64-v8a")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"#!/bin/sh\necho hi\n" + bytes(100),
        b"\x7fELF" + bytes(60),  # class 0
        b"\x7fELF\x02\x02" + bytes(100),  # big-endian
        make_elf(EM_AARCH64, 64, LINKER64, pad=0)[:70],  # program headers cut off
    ],
)
def test_parse_elf_rejects(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_elf(data)


def test_check_binary_errors_name_the_file(tmp_path: Path) -> None:
    script = tmp_path / "bench.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(BinaryError, match=r"bench\.sh: not an ELF executable"):
        check_binary(script, "arm64-v8a")
    with pytest.raises(BinaryError, match="cannot read"):
        check_binary(tmp_path / "missing", "arm64-v8a")
    linux = tmp_path / "linux_aarch64_benchmark_model"
    linux.write_bytes(make_elf(EM_AARCH64, 64, "/lib/ld-linux-aarch64.so.1"))
    with pytest.raises(BinaryError, match="linux_aarch64_benchmark_model: a Linux build"):
        check_binaries({"arm64-v8a": str(linux)})
    good = tmp_path / "android"
    good.write_bytes(ANDROID_BUILDS["x86_64"])
    check_binaries({"x86_64": str(good)})
    with pytest.raises(BinaryError, match="unknown ABI"):
        check_binary(good, "mips")


def test_cache_add_list_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_CACHE", str(tmp_path / "cache"))
    cache = BinaryCache()
    assert cache.root == tmp_path / "cache" / "binaries"
    assert cache.list() == []
    src = tmp_path / "bm"
    src.write_bytes(ANDROID_BUILDS["arm64-v8a"])
    entry = cache.add("arm64-v8a", src)
    assert entry.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert entry.size == src.stat().st_size
    assert entry.source == str(src.resolve())
    assert Path(entry.path).read_bytes() == src.read_bytes()
    assert Path(entry.path).stat().st_mode & 0o111
    assert [e.abi for e in BinaryCache().list()] == ["arm64-v8a"]
    # A wrong build is refused and leaves the cache as it was.
    bad = tmp_path / "x86"
    bad.write_bytes(ANDROID_BUILDS["x86"])
    with pytest.raises(BinaryError, match="not arm64-v8a"):
        cache.add("arm64-v8a", bad)
    assert cache.get("arm64-v8a") == entry
    # Replacing works; a vanished file means no entry.
    src.write_bytes(ANDROID_BUILDS["arm64-v8a"] + b"v2")
    assert cache.add("arm64-v8a", src).sha256 != entry.sha256
    Path(entry.path).unlink()
    assert cache.get("arm64-v8a") is None
    with pytest.raises(BinaryError, match="unknown ABI"):
        cache.add("mips", src)


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving a folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/nightly/latest", root
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_fetch_official_names_from_local_server(tmp_path: Path, http_root) -> None:
    base, root = http_root
    (root / "nightly" / "latest").mkdir(parents=True)
    for abi, name in bins.OFFICIAL_NAMES.items():
        (root / "nightly" / "latest" / name).write_bytes(ANDROID_BUILDS[abi])
    cache = BinaryCache(tmp_path / "c")
    got = cache.fetch(base_url=base)
    assert [e.abi for e in got] == ["arm64-v8a", "armeabi-v7a"]
    assert got[0].source == f"{base}/android_aarch64_benchmark_model"
    assert got[0].sha256 == hashlib.sha256(ANDROID_BUILDS["arm64-v8a"]).hexdigest()
    assert [e.abi for e in cache.list()] == ["arm64-v8a", "armeabi-v7a"]
    assert not list(cache.root.glob(".fetch-*"))


def test_fetch_failures_are_one_line(tmp_path: Path, http_root, monkeypatch) -> None:
    base, root = http_root
    cache = BinaryCache(tmp_path / "c")
    with pytest.raises(BinaryError, match="HTTP 404") as err:
        cache.fetch(["arm64-v8a"], base_url=base)
    assert "\n" not in str(err.value)
    # Whatever the server hands out is checked: a Linux build is refused.
    (root / "nightly" / "latest").mkdir(parents=True)
    (root / "nightly" / "latest" / "android_aarch64_benchmark_model_plus_flex").write_bytes(
        make_elf(EM_AARCH64, 64, "/lib/ld-linux-aarch64.so.1")
    )
    with pytest.raises(BinaryError, match="a Linux build"):
        cache.fetch(["arm64-v8a"], base_url=base, flex=True)
    assert cache.list() == []
    with pytest.raises(BinaryError, match="no official prebuilt benchmark_model for x86_64"):
        cache.fetch(["x86_64"], base_url=base)
    # The environment variable overrides the official location; a closed port is one line.
    monkeypatch.setenv(bins.BASE_URL_ENV, "http://127.0.0.1:9/none")
    with pytest.raises(BinaryError, match=r"fetch http://127\.0\.0\.1:9/none/android_arm"):
        cache.fetch(["armeabi-v7a"], timeout=5)


def test_official_default_location() -> None:
    assert bins.OFFICIAL_BASE_URL == (
        "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/"
        "lite/tools/nightly/latest"
    )
    assert bins.OFFICIAL_NAMES == {
        "arm64-v8a": "android_aarch64_benchmark_model",
        "armeabi-v7a": "android_arm_benchmark_model",
    }


def test_real_host_binary_is_a_linux_build() -> None:
    host = Path(sys.executable).resolve()  # this Python: a Linux build, on every test host
    info = parse_elf(host.read_bytes()[: 1 << 20])
    assert info.interpreter and info.interpreter.startswith("/lib")
    with pytest.raises(BinaryError):
        check_binary(host, "arm64-v8a")


def test_native_abis_leave_out_what_a_translator_runs() -> None:
    from farm.bench.binaries import native_abis

    assert native_abis(["x86_64", "x86", "arm64-v8a", "armeabi-v7a"]) == ["x86_64", "x86"]
    assert native_abis(["arm64-v8a", "armeabi-v7a", "armeabi"]) == [
        "arm64-v8a", "armeabi-v7a", "armeabi"]  # fmt: skip
    assert native_abis([]) == []


def test_translation_is_a_config_choice_under_binaries() -> None:
    from farm.config import Config

    config = Config.model_validate({"binaries": {"arm64-v8a": "/b", "allow_translation": True}})
    assert config.allow_translation and config.binaries == {"arm64-v8a": "/b"}
    assert not Config().allow_translation

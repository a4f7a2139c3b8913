"""The device inventory's parsers, on real output samples (tests/corpus/) and the probe cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from farm.android.info import DeviceInfo
from farm.android.inventory import (
    CpuCluster,
    Gpu,
    Inventory,
    NnapiProbe,
    cached_probe,
    facts_from_output,
    gles_from_prop,
    gles_number,
    inventory_script,
    parse_cpufreq,
    parse_gles_line,
    parse_meminfo,
    parse_nnapi_probe,
    parse_thermal,
    probe_cache_key,
    probe_command,
    store_probe,
    with_probe,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
Sample = Callable[[str], str]


def gles_of(text: str) -> Gpu:
    gpus = [g for line in text.splitlines() if (g := parse_gles_line(line))]
    assert len(gpus) == 1, text
    return gpus[0]


@pytest.mark.parametrize(
    ("name", "vendor", "renderer", "gles"),
    [
        (
            "004_dumpsys_surfaceflinger_grep_gles_adreno730.txt",
            "Qualcomm",
            "Adreno (TM) 730",
            "3.2",
        ),
        ("005_dumpsys_surfaceflinger_gles_mali_g57.txt", "ARM", "Mali-G57", "3.2"),
        (
            "006_dumpsys_surfaceflinger_grep_gles_cuttlefish_gfxstream_amd.txt",
            "Google (AMD)",
            "Android Emulator OpenGL ES Translator (OLAND (, LLVM 15.0.7, DRM 2.50, "
            "5.15.0-119-generic))",
            "3.1",
        ),
        (
            "007_dumpsys_surfaceflinger_gles_emulator_swiftshader.txt",
            "Google (Google Inc.)",
            "Android Emulator OpenGL ES Translator (Google SwiftShader)",
            "3.0",
        ),
        ("008_dumpsys_surfaceflinger_gles_mali450_old.txt", "ARM", "Mali-450 MP", "2.0"),
    ],
)
def test_gles_line_of_real_surfaceflinger_output(
    adb_output: Sample, name: str, vendor: str, renderer: str, gles: str
) -> None:
    text = adb_output(name)
    gpu = gles_of(text)
    assert (gpu.vendor, gpu.renderer) == (vendor, renderer)
    line = next(line for line in text.splitlines() if line.startswith("GLES:"))
    assert line.endswith(gpu.version) and gpu.version.startswith("OpenGL ES")
    assert gles_number(gpu.version) == gles


def test_software_renderer_is_no_gpu(adb_output: Sample) -> None:
    swiftshader = gles_of(adb_output("007_dumpsys_surfaceflinger_gles_emulator_swiftshader.txt"))
    adreno = gles_of(adb_output("004_dumpsys_surfaceflinger_grep_gles_adreno730.txt"))
    assert Inventory(gpu=swiftshader).has_gpu is False
    assert Inventory(gpu=adreno).has_gpu is True
    assert Inventory().has_gpu is None


def test_gles_line_without_version_and_non_lines() -> None:
    assert parse_gles_line("GLES: Apple, ANGLE Metal Renderer") == Gpu(
        "Apple", "ANGLE Metal Renderer", ""
    )
    assert parse_gles_line(" ------------RE GLES------------") is None
    assert parse_gles_line("GLES:") is None
    assert gles_from_prop("196610") == "3.2" and gles_from_prop("196608") == "3.0"
    assert gles_from_prop("") is None and gles_from_prop("abc") is None


def test_meminfo_total(adb_output: Sample) -> None:
    assert parse_meminfo(adb_output("009_proc_meminfo_honor_hnr553t_excerpt.txt")) == 6291456
    assert parse_meminfo("MemTotal: 995092 kB\nMemFree: 412324 kB\n") == 995092
    assert parse_meminfo("cat: /proc/meminfo: Permission denied") is None


def test_cpufreq_clusters_from_policy_values(adb_output: Sample) -> None:
    # The real policy4 values, as the inventory script prints them (related_cpus|max_freq).
    values = dict(
        line.rsplit("/", 1)[1].split(":", 1)
        for line in adb_output("010_grep_cpufreq_policy4_snapdragon.txt").splitlines()
        if line.startswith("/sys/")
    )
    policy4 = f"{values['related_cpus']}|{values['cpuinfo_max_freq']}"
    lines = ["0 1 2 3|1804800", policy4, policy4, "0 1 2 3|1804800"]  # cpuN/cpufreq repeats
    assert parse_cpufreq(lines) == (
        CpuCluster((0, 1, 2, 3), 1804800),
        CpuCluster((4, 5, 6, 7), 2956800),
    )
    assert parse_cpufreq(["7|", "0-3,6|x"]) == (
        CpuCluster((0, 1, 2, 3, 6), None),
        CpuCluster((7,), None),
    )
    assert parse_cpufreq([]) == ()


def test_thermal_zone_names_in_zone_order() -> None:
    lines = ["thermal_zone10|gpuss-0", "thermal_zone2|cpu-1-0-usr", "thermal_zone3|cat: denied"]
    assert parse_thermal(lines) == ("cpu-1-0-usr", "gpuss-0")


@pytest.mark.parametrize(
    ("log", "names"),
    [
        ("008_synaptics_android_tf2.15_nnapi_synap_npu_full.log", ("synap-npu", "nnapi-reference")),
        (
            "027_xiaomi_mi11_sd888_tf2.4_nnapi_qti_default_op_failed_benchmarking_failed.log",
            ("qti-default", "qti-dsp", "qti-gpu", "nnapi-reference"),
        ),
        ("025_android_gpu_opencl_plus_nnapi_two_delegates_nnapi_unused.log", ("nnapi-reference",)),
    ],
)
def test_nnapi_accelerators_from_real_logs(log: str, names: tuple[str, ...]) -> None:
    probe = parse_nnapi_probe((CORPUS / log).read_text(encoding="utf-8"), sdk=33)
    assert probe.accelerators == names and probe.reason is None
    assert probe.line is not None and probe.line.endswith(f"[{','.join(names)}]")


def test_nnapi_none_listed_unknown_and_absent() -> None:
    text = (CORPUS / "008_synaptics_android_tf2.15_nnapi_synap_npu_full.log").read_text()
    without = "\n".join(ln for ln in text.splitlines() if "accelerators available" not in ln)
    assert parse_nnapi_probe(without, sdk=34) == NnapiProbe(())  # the tool lists none
    old = parse_nnapi_probe(without, sdk=28)
    assert old.accelerators is None and "Android 10" in (old.reason or "")
    linux = parse_nnapi_probe("INFO: STARTING!\nUnconsumed cmdline flags: --use_nnapi=true\n", 34)
    assert linux.accelerators is None and "--use_nnapi not consumed" in (linux.reason or "")
    silent = parse_nnapi_probe("sh: benchmark_model: not found\n", 34)
    assert silent.accelerators is None and "not found" in (silent.reason or "")


def test_facts_from_script_output_and_reasons() -> None:
    out = (
        "@@farm-inventory:meminfo\nMemTotal:        7869488 kB\n"
        "@@farm-inventory:cpufreq\n0 1 2 3|1803000\n4 5|2348000\n"
        "@@farm-inventory:thermal\n"
        "@@farm-inventory:gles\n ------------RE GLES------------\n"
        "GLES: ARM, Mali-G710, OpenGL ES 3.2 v1.r38p1-01eac0\n@@farm-inventory:end\n"
    )
    props = {"ro.build.version.security_patch": "2024-08-05", "ro.opengles.version": "196608"}
    facts, unknown = facts_from_output(out, props)
    assert facts["ram_kb"] == 7869488
    assert facts["cpu_clusters"] == (CpuCluster((0, 1, 2, 3), 1803000), CpuCluster((4, 5), 2348000))
    assert facts["thermal_zones"] is None and "thermal_zone" in unknown["thermal_zones"]
    assert facts["gpu"].renderer == "Mali-G710"
    assert facts["gles_version"] == "3.2"  # the GLES line wins over ro.opengles.version
    assert facts["security_patch"] == "2024-08-05"
    assert (
        facts["nnapi_feature_level"] is None and "feature_level" in unknown["nnapi_feature_level"]
    )
    # Cut off after the memory section: the rest is unknown, with the reason; nothing raises.
    facts, unknown = facts_from_output(out.split("@@farm-inventory:cpufreq")[0], props)
    assert facts["ram_kb"] == 7869488
    assert {"cpu_clusters", "thermal_zones", "gpu"} <= set(unknown)
    assert facts["gles_version"] == "3.0"  # from getprop when SurfaceFlinger gave no line


def test_device_commands_stay_short_and_plain() -> None:
    script = inventory_script()
    assert len(script) < 1024 and "awk" not in script and "sha256sum" not in script
    command = probe_command("/data/local/tmp/farm/bin/benchmark_model-0123")
    assert command.startswith("exec ") and "--use_nnapi=true" in command and len(command) < 512


def test_inventory_json_round_trip() -> None:
    inventory = Inventory(
        gpu=Gpu("ARM", "Mali-G710", "OpenGL ES 3.2"),
        gles_version="3.2",
        ram_kb=7869488,
        cpu_clusters=(CpuCluster((0, 1), 1803000), CpuCluster((2,), None)),
        thermal_zones=("BIG",),
        sdk=34,
        security_patch="2024-08-05",
        nnapi_accelerators=(),
        nnapi_feature_level=7,
        unknown={"x": "why"},
    )
    assert Inventory.from_json(inventory.to_json()) == inventory
    assert Inventory.from_json(Inventory().to_json()) == Inventory()
    assert inventory.gles_at_least(3, 1) is True and Inventory().gles_at_least(3, 1) is None
    with pytest.raises(ValueError):
        Inventory.from_json([1])


def test_probe_cache_is_keyed_by_device_build_and_binary(tmp_path: Path) -> None:
    info = DeviceInfo(
        serial="R5CW20ABCDE", server="127.0.0.1:5037", state="device", fingerprint="f1"
    )
    key = probe_cache_key(info, "a" * 64)
    assert cached_probe(tmp_path, key) is None
    answer = NnapiProbe(("qti-dsp", "nnapi-reference"), line="NNAPI accelerators available: [..]")
    store_probe(tmp_path, key, answer, serial=info.serial)
    assert cached_probe(tmp_path, key) == answer
    assert probe_cache_key(info, "b" * 64) != key
    rebuilt = DeviceInfo(serial=info.serial, server=info.server, state="device", fingerprint="f2")
    assert probe_cache_key(rebuilt, "a" * 64) != key
    (tmp_path / f"{key}.json").write_text("{not json")
    assert cached_probe(tmp_path, key) is None  # a broken entry is a miss, not an error


def test_with_probe_records_why_nnapi_is_unknown() -> None:
    known = with_probe(Inventory(unknown={"nnapi_accelerators": "old"}), NnapiProbe(("a",)))
    assert known.nnapi_accelerators == ("a",) and "nnapi_accelerators" not in known.unknown
    unknown = with_probe(Inventory(), NnapiProbe(None, "no binary"))
    assert (
        unknown.nnapi_accelerators is None and unknown.unknown["nnapi_accelerators"] == "no binary"
    )

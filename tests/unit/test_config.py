"""farm.yaml loading: validation, file:line errors, CLI overrides, environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from farm.android.info import DeviceInfo
from farm.config import (
    Config,
    DelegateSpec,
    DeviceSelection,
    apply_overrides,
    default_adb_servers,
    load_config,
)
from farm.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "farm.example.yaml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANDROID_SERIAL", "ANDROID_ADB_SERVER_HOST", "ANDROID_ADB_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str, name: str = "farm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_without_a_file():
    config = load_config(None)
    assert [d.label for d in config.delegates] == ["cpu"]
    assert config.threads == [1]
    assert config.repeats == 1
    assert config.adb_servers == ["127.0.0.1:5037"]
    assert config.run_deadline_s > config.max_secs


def test_example_config_loads():
    config = load_config(EXAMPLE)
    labels = [d.label for d in config.delegates]
    assert labels[:4] == ["cpu", "gpu", "gpu-fp32", "nnapi:*-fp16"]
    assert config.delegates[3].for_accelerator("qti-dsp").label == "nnapi:qti-dsp-fp16"
    assert [d.thread_counts(config.threads) for d in config.delegates[:2]] == [[1, 2, 4], [1]]
    assert config.threads == [1, 2, 4]


def test_full_config(tmp_path: Path):
    path = write(
        tmp_path,
        """
models: [models/a.tflite, "models/*.tflite"]
delegates:
  - kind: cpu
    xnnpack: false
  - xnnpack
  - {kind: gpu, precision_loss_allowed: false, backend: gl}
  - {kind: nnapi, accelerator_name: qti-dsp, allow_fp16: true}
  - hexagon
  - kind: external
    name: qnn
    path: /data/local/tmp/libQnnTFLiteDelegate.so
    options: {backend_type: htp, log_level: 2, profile: true}
threads: [1, 4, 4]
repeats: 3
devices: {serials: [abc], models: ["Pixel*"], socs: ["*SM8550*"], profiles: [galaxy_s23]}
adb_servers: ["127.0.0.1:5037", "10.0.0.2:5038"]
binaries: {arm64-v8a: bin/benchmark_model}
output: runs
""",
    )
    config = load_config(path)
    assert [d.label for d in config.delegates] == [
        "cpu-no-xnnpack",
        "xnnpack",
        "gpu-fp32-gl",
        "nnapi:qti-dsp-fp16",
        "hexagon",
        "external:qnn",
    ]
    assert config.delegates[0].xnnpack is False
    ext = config.delegate("external:qnn")
    assert ext.options == {"backend_type": "htp", "log_level": "2", "profile": "true"}
    assert config.threads == [1, 4]  # repeated counts dropped
    # Paths in the file are relative to the file's folder.
    assert config.models == [str(tmp_path / "models/a.tflite"), str(tmp_path / "models/*.tflite")]
    assert config.binaries == {"arm64-v8a": str(tmp_path / "bin/benchmark_model")}
    assert config.adb_servers == ["127.0.0.1:5037", "10.0.0.2:5038"]


def test_unknown_top_level_key_names_line_and_suggests(tmp_path: Path):
    path = write(tmp_path, "models: [a.tflite]\nrepeats: 2\nthread: [1, 2]\n")
    assert error_of(path) == f"{path}:3: unknown key 'thread'; did you mean 'threads'?"


def test_unknown_nested_key(tmp_path: Path):
    path = write(tmp_path, "devices:\n  serials: [a]\n  modle: [x]\n")
    assert error_of(path) == f"{path}:3: devices: unknown key 'modle'; did you mean 'models'?"


def test_unknown_delegate_names_line_and_index(tmp_path: Path):
    path = write(tmp_path, "models: [a]\ndelegates:\n  - cpu\n  - gpux\n  - nnapi\n")
    message = error_of(path)
    assert message.startswith(f"{path}:4: delegates[1]: unknown delegate 'gpux' (known: cpu, ")
    assert message.endswith("did you mean 'gpu'?")


def test_unknown_delegate_in_mapping_form(tmp_path: Path):
    path = write(tmp_path, "delegates:\n  - cpu\n  - kind: npu\n")
    assert error_of(path).startswith(f"{path}:3: delegates[1].kind: unknown delegate 'npu'")


def test_unknown_delegate_option(tmp_path: Path):
    path = write(tmp_path, "delegates:\n  - kind: gpu\n    precision: fp16\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3: delegates[0]: unknown key 'precision'")
    assert "precision_loss_allowed" in message


def test_option_for_the_wrong_delegate(tmp_path: Path):
    path = write(tmp_path, "delegates:\n  - cpu\n  - {kind: nnapi, backend: gl}\n")
    assert error_of(path) == (
        f"{path}:3: delegates[1]: option 'backend' does not apply to delegate 'nnapi'"
    )


def test_bad_value_names_key(tmp_path: Path):
    path = write(tmp_path, "threads:\n  - 1\n  - two\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3: threads[1]: ")
    assert "'two'" in message
    path = write(tmp_path, "delegates: [{kind: gpu, backend: vulkan}]\n")
    assert error_of(path).startswith(f"{path}:1: delegates[0].backend: Input should be 'opencl'")
    path = write(tmp_path, "repeats: 0\n")
    assert error_of(path).startswith(f"{path}:1: repeats: ")
    path = write(tmp_path, "threads: [0]\n")
    assert "out of range" in error_of(path)


def test_external_delegate_needs_name_and_path(tmp_path: Path):
    path = write(tmp_path, "delegates:\n  - {kind: external, name: qnn}\n")
    assert "needs a 'path'" in error_of(path)
    path = write(tmp_path, "delegates:\n  - {kind: external, path: /x.so}\n")
    assert "needs a 'name'" in error_of(path)


def test_external_options_cannot_break_the_flag_format(tmp_path: Path):
    path = write(
        tmp_path, "delegates:\n  - {kind: external, name: q, path: /x.so, options: {a: 'b;c:d'}}\n"
    )
    assert "no ':', ';'" in error_of(path)


def test_duplicate_delegates_and_yaml_keys(tmp_path: Path):
    path = write(tmp_path, "delegates: [cpu, gpu, cpu]\n")
    assert "delegate 'cpu' is listed twice" in error_of(path)
    path = write(tmp_path, "threads: [1]\nrepeats: 2\nthreads: [4]\n")
    assert error_of(path) == f"{path}:3: key 'threads' appears twice"


def test_yaml_syntax_error_names_line(tmp_path: Path):
    path = write(tmp_path, "models: [a.tflite]\ndelegates: [cpu, gpu\nthreads: [1]\n")
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert "YAML syntax error" in message
    line = int(message.split(":")[1])
    assert 2 <= line <= 4
    path = write(tmp_path, "models:\n\t- a\n")
    assert error_of(path).startswith(f"{path}:2: YAML syntax error")


def test_not_a_mapping_and_empty_file(tmp_path: Path):
    path = write(tmp_path, "- cpu\n- gpu\n")
    assert error_of(path) == f"{path}:1: the config must be a mapping of keys (models:, ...)"
    assert load_config(write(tmp_path, "# nothing yet\n")).threads == [1]


def test_unreadable_inputs(tmp_path: Path):
    assert (
        error_of(tmp_path / "missing.yaml") == f"{tmp_path / 'missing.yaml'}: config file not found"
    )
    assert error_of(tmp_path) == f"{tmp_path}: not a regular file"
    assert error_of(Path("/dev/zero")) == "/dev/zero: not a regular file"
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (2 << 20))
    assert "too large" in error_of(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"models: [a]\nthreads: [1]\n\xff\xfe\n")
    assert error_of(binary) == f"{binary}:3: not UTF-8 text"


def test_adb_server_format(tmp_path: Path):
    path = write(tmp_path, "adb_servers:\n  - 127.0.0.1:5037\n  - localhost\n")
    assert error_of(path) == (
        f"{path}:3: adb_servers[1]: bad adb server address 'localhost' (expected host:port)"
    )
    path = write(tmp_path, "adb_servers: ['10.0.0.2:70000']\n")
    assert "bad port in adb server address '10.0.0.2:70000'" in error_of(path)
    # the same parser as the adb layer: whatever it takes, farm.yaml takes
    path = write(tmp_path, "adb_servers: ['[::1]:5038', '5039']\n")
    assert load_config(path).adb_servers == ["[::1]:5038", "5039"]


def test_binaries_abi_is_checked(tmp_path: Path):
    path = write(tmp_path, "binaries: {arm64: /x}\n")
    assert "did you mean 'arm64-v8a'?" in error_of(path)


def test_overrides_win(tmp_path: Path):
    path = write(
        tmp_path,
        "models: [a.tflite]\ndelegates: [cpu, {kind: gpu, backend: gl}]\nthreads: [1]\n"
        "repeats: 5\ndevices: {serials: [x]}\noutput: runs\n",
    )
    config = load_config(
        path,
        overrides={
            "model": ["b.tflite"],
            "delegate": "gpu,nnapi",
            "threads": "1,2,4",
            "repeats": 2,
            "serial": ["s1", "s2"],
            "out": "elsewhere",
        },
    )
    assert config.models == ["b.tflite"]
    assert [d.label for d in config.delegates] == ["gpu-gl", "nnapi"]
    assert config.delegates[0].backend == "gl"  # the file's options for the delegate are kept
    assert config.threads == [1, 2, 4]
    assert config.repeats == 2
    assert config.devices.serials == ["s1", "s2"]
    assert config.output == "elsewhere"
    # None means "not given on the command line".
    same = load_config(path, overrides={"model": None, "delegate": None, "repeats": None})
    assert same.repeats == 5 and same.models == [str(tmp_path / "a.tflite")]


def test_bad_overrides_name_the_flag(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^--delegate: unknown delegate 'gpux'"):
        load_config(None, overrides={"delegate": "cpu,gpux"})
    with pytest.raises(ConfigError, match=r"^--threads: 'x' is not a whole number"):
        load_config(None, overrides={"threads": "1,x"})
    with pytest.raises(ConfigError, match=r"^--threads: thread count 0"):
        load_config(None, overrides={"threads": "0"})
    with pytest.raises(ConfigError, match=r"^--delegate: external delegate 'qnn' is not in"):
        load_config(None, overrides={"delegate": "external:qnn"})


def test_android_serial_selects_a_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANDROID_SERIAL", "emulator-5554")
    assert load_config(None).devices.serials == ["emulator-5554"]
    # An explicit serial, on the command line or in the file, wins.
    assert load_config(None, overrides={"serial": "abc"}).devices.serials == ["abc"]
    path = write(tmp_path, "devices: {serials: [def]}\n")
    assert load_config(path).devices.serials == ["def"]


def test_default_adb_servers_follow_adb(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "5040")
    assert default_adb_servers() == ["127.0.0.1:5040"]
    monkeypatch.setenv("ANDROID_ADB_SERVER_HOST", "10.1.2.3")
    assert load_config(None).adb_servers == ["10.1.2.3:5040"]
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "lots")
    with pytest.raises(ConfigError, match="ANDROID_ADB_SERVER_PORT='lots'"):
        default_adb_servers()


def test_config_round_trips_through_json(tmp_path: Path):
    config = load_config(EXAMPLE, overrides={"serial": "x"})
    again = Config.model_validate(config.model_dump(mode="json"))
    assert again == config
    assert [d.label for d in again.delegates] == [d.label for d in config.delegates]


def test_delegate_labels_and_plain_strings():
    assert DelegateSpec.model_validate("gpu").label == "gpu"
    ext = DelegateSpec(kind="external", name="vx", path="/vendor/lib64/libvx_delegate.so")
    assert ext.label == "external:vx"
    assert DelegateSpec(kind="gpu", backend="gl").options_dict() == {"kind": "gpu", "backend": "gl"}


def test_device_selection_matches():
    pixel = DeviceInfo(
        serial="28031FDH2001AB",
        server="127.0.0.1:5037",
        state="device",
        model="Pixel 7",
        soc="Google GS201",
        profile="pixel_7",
    )
    assert DeviceSelection().matches(pixel)
    assert DeviceSelection(models=["pixel*"]).matches(pixel)  # case-insensitive globs
    assert DeviceSelection(socs=["*gs201"], profiles=["pixel_7"]).matches(pixel)
    assert not DeviceSelection(serials=["other"]).matches(pixel)
    assert not DeviceSelection(models=["Galaxy*"]).matches(pixel)
    assert not DeviceSelection(profiles=["galaxy_s23"]).matches(pixel)
    assert DeviceSelection(models="Pixel 7").models == ["Pixel 7"]
    assert DeviceSelection(socs=["*SM8550*"]).describe() == "socs=*SM8550*"


KEYS = ["models: [a.tflite]", "threads: [1, 2]", "repeats: 2", "num_runs: 20", "output: runs"]


@settings(max_examples=40, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(KEYS)),
    blank_lines=st.integers(min_value=0, max_value=3),
    bad=st.sampled_from(["thread", "delegate", "repeat", "modles", "warmup"]),
)
def test_unknown_key_line_is_exact(position: int, blank_lines: int, bad: str):
    lines = ["# farm config", *[""] * blank_lines, *KEYS]
    at = 1 + blank_lines + position
    lines.insert(at, f"{bad}: 1")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "\n".join(lines) + "\n")
        message = error_of(path)
    assert message.startswith(f"{path}:{at + 1}: unknown key {bad!r}")


def test_apply_overrides_keeps_an_untouched_config():
    config = Config()
    assert apply_overrides(config, {}) is config


def test_readme_example_loads(tmp_path: Path):
    import re

    readme = (EXAMPLE.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Configuration \(farm.yaml\).*?```yaml\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    config = load_config(write(tmp_path, block.group(1)))
    assert [d.label for d in config.delegates] == [
        "cpu",
        "cpu-no-xnnpack",
        "gpu-fp16",
        "gpu-fp32",
        "nnapi:*",
        "external:qnn",
    ]


def test_alias_bombs_and_deep_nesting_are_refused(tmp_path: Path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert error_of(path) == f"{path}: too many values (over 100000, aliases counted)"
    path = write(tmp_path, "models: " + "[" * 3000 + "]" * 3000 + "\n")
    assert error_of(path) == f"{path}: nested too deeply to be a farm config"

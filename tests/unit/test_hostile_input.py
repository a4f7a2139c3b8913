"""Bad input tried as a hostile user would: each is one clear line with exit 2, or works.

Nothing here needs a device: every case fails (or is handled) before farm talks to adb. The
CLI runs as a user runs it, with the adb server variables pointing at a port nobody listens on.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farm.android.adb import join_command
from farm.bench.flags import benchmark_args
from farm.bench.plan import Cell
from farm.bench.runner import log_name, safe_name
from farm.bench.service import expand_models, load_models
from farm.cli.main import main
from farm.config import Config, DelegateSpec, load_config
from farm.errors import ConfigError, ModelError
from farm.sim.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "models" / "tiny_cnn_cumsum_float.tflite"
CORPUS = ROOT / "tests" / "corpus"
LOG = CORPUS / "001_linux_arm64_qrb2210_cpu_xnnpack_default.log"
GIB = 1 << 30


def farm(*args: object, cwd: Path, stdin: int | None = subprocess.DEVNULL) -> tuple[int, str, str]:
    """Run the farm CLI; adb variables point at a closed port so no real server is touched."""
    env = {
        **os.environ,
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "ANDROID_ADB_SERVER_HOST": "127.0.0.1",
        "ANDROID_ADB_SERVER_PORT": str(free_port()),
    }
    env.pop("ANDROID_SERIAL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "farm.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        cwd=cwd,
        env=env,
        stdin=stdin,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Callable[..., tuple[int, str, str]]:
    """The same CLI entry point in this process (quicker): cli(*args) -> (code, out, err)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANDROID_ADB_SERVER_HOST", "127.0.0.1")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)

    def run(*args: object) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["farm", *map(str, args)])
        with pytest.raises(SystemExit) as exit_:
            main()
        captured = capsys.readouterr()
        code = exit_.value.code
        return code if isinstance(code, int) else 1, captured.out, captured.err

    return run


def one_line(code: int, stderr: str, want: str) -> str:
    """Exit 2, exactly one `farm: error:` line on stderr that names `want`, no traceback."""
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("farm: error: ") and want in lines[0], lines[0]
    return lines[0]


# -- configs that are not configs -------------------------------------------------------------


def _bomb(path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    path.write_text("\n".join(lines) + "\n")


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def _config_case(case: str, tmp: Path) -> Path:
    if case == "dev_zero":
        return Path("/dev/zero")
    if case == "directory":
        return tmp
    if case == "fifo":
        os.mkfifo(tmp / "fifo.yaml")
        return tmp / "fifo.yaml"
    if case == "huge_sparse":
        return _sparse(tmp / "huge.yaml", 2 * GIB)
    path = tmp / f"{case}.yaml"
    if case == "yaml_bomb":
        _bomb(path)
    elif case == "deep_nesting":
        path.write_text("models: " + "[" * 5_000 + "]" * 5_000 + "\n")
    elif case == "binary":
        path.write_bytes(b"threads: [1]\nrepeats: 1\n\xff\xfe\x00garbage\n")
    return path


CONFIG_CASES = [
    "dev_zero",
    "directory",
    "fifo",
    "huge_sparse",
    "yaml_bomb",
    "deep_nesting",
    "binary",
]


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_that_is_no_config_is_one_line(case: str, tmp_path: Path, cli: Any) -> None:
    path = _config_case(case, tmp_path)
    code, out, err = cli("run", "--config", path)
    line = one_line(code, err, str(path))
    assert out == ""
    if case == "binary":
        assert f"{path}:3: not UTF-8" in line
    assert not (tmp_path / "farm-runs").exists()


def test_config_from_stdin_pipe_is_refused_not_waited_for(tmp_path: Path) -> None:
    # /dev/stdin is a pipe here; nothing is written to it, so reading would wait forever.
    proc = subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE)
    try:
        code, _, err = farm(
            "run", "--config", "/dev/stdin", cwd=tmp_path, stdin=proc.stdout.fileno()
        )
    finally:
        proc.kill()
        proc.wait()
    one_line(code, err, "/dev/stdin: not a regular file")


def test_devices_config_that_is_no_config_is_one_line(cli: Any) -> None:
    code, _, err = cli("devices", "--config", "/dev/zero")
    one_line(code, err, "/dev/zero")


# -- model paths that are not models ----------------------------------------------------------


def _models_config(tmp_path: Path) -> Path:
    path = tmp_path / "farm.yaml"
    path.write_text(json.dumps({"adb_servers": [f"127.0.0.1:{free_port()}"]}))
    return path


def _model_case(case: str, tmp: Path) -> str:
    if case in ("/dev/zero", "/dev/null"):
        return case
    path = tmp / f"{case}.tflite"
    if case == "fifo":
        os.mkfifo(path)
    elif case == "directory":
        path.mkdir()
    elif case == "huge_sparse":
        _sparse(path, 2 * GIB)
    elif case == "empty":
        path.touch()
    elif case == "glob_matching_nothing":
        return str(tmp / "none*" / "*.tflite")
    elif case == "leading_dash_missing":
        return "-rf.tflite"
    return str(path)  # "missing": never created


MODEL_CASES = [
    "/dev/zero",
    "/dev/null",
    "fifo",
    "directory",
    "huge_sparse",
    "empty",
    "missing",
    "glob_matching_nothing",
    "leading_dash_missing",
]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_model_that_is_no_model_is_one_line(case: str, tmp_path: Path, cli: Any) -> None:
    model = _model_case(case, tmp_path)
    config = _models_config(tmp_path)
    code, _, err = cli("run", "--config", config, f"--model={model}")
    one_line(code, err, model)


def test_model_glob_of_ten_thousand_copies_is_one_model(tmp_path: Path) -> None:
    for i in range(10_000):
        os.link(TINY, tmp_path / f"m{i:05d}.tflite")
    refs = load_models([str(tmp_path / "*.tflite")])
    assert len(refs) == 1
    assert refs[0].path == tmp_path / "m00000.tflite"


def test_model_glob_of_ten_thousand_non_models_names_the_first(tmp_path: Path) -> None:
    junk = tmp_path.parent / f"{tmp_path.name}-junk"
    junk.write_bytes(b"not a model")
    for i in range(10_000):
        os.link(junk, tmp_path / f"m{i:05d}.tflite")
    assert len(expand_models([str(tmp_path / "*.tflite")])) == 10_000
    with pytest.raises(ModelError, match=r"m00000\.tflite: not a TFLite model"):
        load_models([str(tmp_path / "*.tflite")])


def test_model_named_like_a_glob_is_taken_literally(tmp_path: Path) -> None:
    odd = tmp_path / "net[1]*?.tflite"
    odd.write_bytes(TINY.read_bytes())
    (tmp_path / "net1.tflite").write_bytes(b"a different file the glob would match")
    assert expand_models([str(odd)]) == [odd]
    (ref,) = load_models([str(odd)])
    assert ref.name == "net[1]*?"


# -- delegate options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [("a", "x;b:y"), ("a", "x:y"), ("a;b", "x"), ("a", "x\ny"), ("", "x"), ("a", "")],
)
def test_external_delegate_option_that_would_split_is_refused_with_its_line(
    tmp_path: Path, key: str, value: str
) -> None:
    path = tmp_path / "farm.yaml"
    spec = {"kind": "external", "name": "vendor", "path": "/data/local/tmp/d.so"}
    path.write_text(
        "threads: [1]\ndelegates:\n  - cpu\n  - " + json.dumps(spec | {"options": {key: value}})
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:4: delegates[1]")
    assert "\n" not in message


def test_delegate_options_with_spaces_quotes_and_dollars_reach_the_tool_verbatim() -> None:
    spec = DelegateSpec.model_validate(
        {
            "kind": "external",
            "name": "qnn",
            "path": "/data/local/tmp/$(touch /data/local/tmp/x)/`id` 'lib'.so",
            "options": {"backend type": "h t p", "q": 'it\'s "so" $HOME', "on": True},
        }
    )
    nnapi = DelegateSpec.model_validate(
        {"kind": "nnapi", "accelerator_name": "qti-dsp $(reboot) 'x'"}
    )
    config = Config()
    for delegate in (spec, nnapi):
        args = benchmark_args(
            delegate, threads=2, graph="/data/local/tmp/farm/m.tflite", config=config
        )
        argv = ["/data/local/tmp/farm/bin/bm", *args]
        # The device shell splits the command line exactly into the arguments we meant.
        assert shlex.split(join_command(argv)) == argv
    args = benchmark_args(spec, threads=1, graph="/g", config=config)
    assert f"--external_delegate_path={spec.path}" in args
    assert '--external_delegate_options=backend type:h t p;q:it\'s "so" $HOME;on:true' in args
    assert "--nnapi_accelerator_name=qti-dsp $(reboot) 'x'" in benchmark_args(
        nnapi, threads=1, graph="/g", config=config
    )


def test_command_line_survives_a_real_shell_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hostile = f"$(touch {marker}) `touch {marker}`; touch {marker} | x && y \n z 'q' \"d\""
    argv = ["printf", "%s\\0", hostile, f"--graph={hostile}"]
    out = subprocess.run(
        ["sh", "-c", join_command(argv)], capture_output=True, check=True, timeout=10
    ).stdout
    assert out.split(b"\0")[:-1] == [hostile.encode(), f"--graph={hostile}".encode()]
    assert not marker.exists()


# -- names that become file names --------------------------------------------------------------


HOSTILE_NAMES = [
    "a b",
    "it's",
    'say "x"',
    "$(touch pwned)",
    "`id`",
    "line\nbreak",
    "..",
    "../../etc/passwd",
    "-rf",
    ".hidden",
    "ünïcødé 模型 🚀",
    "x" * 300,
    "\x1b[31mred\x1b[0m",
    "/",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_log_names_stay_one_plain_component(name: str) -> None:
    for text in (name, safe_name(name)):
        cell = Cell(
            serial="s",
            server="127.0.0.1:5037",
            model=text,
            model_path=Path("m.tflite"),
            model_sha256="ab" * 32,
            delegate="external:" + text,
            spec=DelegateSpec(kind="cpu"),
        )
        log = log_name(cell)
        assert "/" not in log and "\0" not in log and "\n" not in log
        assert log.startswith(safe_name(text)[:10]) and log.endswith("-t1-r0.log")
        assert len(log.encode()) <= 200  # with the run id prefix on the device: under 255
    serial = safe_name(name)
    assert serial not in ("", ".", "..") and "/" not in serial
    assert len(serial) == len(serial.encode())  # ASCII only


# -- logs that are not logs ----------------------------------------------------------------------


def _farm_rusage(*args: object, cwd: Path) -> tuple[int, str, str, int]:
    """Run the CLI and return (code, stdout, stderr, peak RSS in KiB of that process)."""
    with open(cwd / "out.txt", "wb") as out, open(cwd / "err.txt", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "farm.cli.main", *map(str, args)],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = [(cwd / name).read_text(errors="replace") for name in ("out.txt", "err.txt")]
    return proc.returncode, text[0], text[1], usage.ru_maxrss


def test_parse_a_one_gib_log_in_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    _sparse(big, GIB - LOG.stat().st_size)  # NULs, then a real run's output at the very end
    with big.open("ab") as fh:
        fh.write(LOG.read_bytes())
    code, out, err, peak_kib = _farm_rusage("parse", "--json", big, cwd=tmp_path)
    assert code == 0, err
    assert "Traceback" not in err
    (row,) = json.loads(out)
    assert row["status"] == "ok" and row["inference_avg_us"] > 0
    assert peak_kib < 400 * 1024  # a streaming parser, not a 1 GiB read


def test_parse_binary_garbage_finds_the_run_inside(tmp_path: Path) -> None:
    rng = random.Random(4)
    noisy = tmp_path / "noise.bin"
    noisy.write_bytes(rng.randbytes(2 << 20) + b"\n" + LOG.read_bytes() + rng.randbytes(1 << 20))
    code, out, err, _ = _farm_rusage("parse", "--json", noisy, cwd=tmp_path)
    assert code == 0, err
    assert "Traceback" not in err
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["ok"]
    code, out, err, _ = _farm_rusage("parse", noisy, cwd=tmp_path)
    assert code == 0 and "Traceback" not in err
    assert "\x1b" not in out  # random bytes never reach the terminal as escapes


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom"])
def test_parse_a_device_is_one_line(path: str, cli: Any) -> None:
    code, _, err = cli("parse", path)
    one_line(code, err, f"{path}: not a regular file or a pipe")


def test_parse_a_pipe_reads_it_once(tmp_path: Path, cli: Any) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)

    def writer() -> None:
        with fifo.open("wb") as fh:
            fh.write(LOG.read_bytes())

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    code, out, err = cli("parse", "--json", fifo)
    thread.join(10)
    assert code == 0, err
    (row,) = json.loads(out)
    assert (row["status"], row["init_us"]) == ("ok", 87639)


def test_progress_lines_show_device_text_without_escapes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from farm.android.info import DeviceInfo
    from farm.bench.runner import DeviceJob, Event, _Display

    monkeypatch.setenv("NO_COLOR", "1")
    info = DeviceInfo(
        serial="emulator-5554", server="127.0.0.1:5037", state="device", model="\x1b[2J\x00[b]X"
    )
    display = _Display([DeviceJob(info=info, cells=[])], enabled=True)
    with display:
        display.update(Event("emulator-5554", "status", "m\x1b]0;title\x07 [red]r\x7f"))
    err = capsys.readouterr().err
    assert "[b]X" in err and "[red]r" in err  # text, not markup
    assert not {"\x1b", "\x00", "\x07", "\x7f"} & set(err), repr(err)


@pytest.mark.parametrize("kind", ["dev_zero_link", "fifo", "dev_zero"])
def test_resume_from_something_that_is_no_run_is_one_line(
    kind: str, tmp_path: Path, cli: Any
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if kind == "dev_zero_link":
        (run_dir / "results.jsonl").symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(run_dir / "results.jsonl")
    else:
        run_dir = Path("/dev/zero")
    code, _, err = cli("run", "--resume", run_dir)
    one_line(code, err, "not a regular file, not a farm results file")


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory", "huge_sparse"])
def test_binaries_add_of_no_binary_is_one_line(
    kind: str, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FARM_CACHE", str(tmp_path / "cache"))
    path = Path(kind) if kind.startswith("/") else tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "huge_sparse":
        _sparse(path, 2 * GIB)
    code, _, err = cli("binaries", "add", "arm64-v8a", path)
    line = one_line(code, err, str(path))
    assert ("not a regular file" in line) == (kind != "huge_sparse")
    assert not (tmp_path / "cache" / "binaries" / "arm64-v8a").exists() or not any(
        (tmp_path / "cache" / "binaries" / "arm64-v8a").iterdir()
    )


def test_errors_quoting_newlines_and_escapes_stay_one_line(tmp_path: Path, cli: Any) -> None:
    config = _models_config(tmp_path)
    name = "x\ny\x1b\x07\r.tflite"
    code, _, err = cli("run", "--config", config, f"--model={name}")
    assert "x y\\x1b\\x07 .tflite: model file not found" in one_line(code, err, "x y")
    code, _, err = cli("parse", str(tmp_path / "a\nb.log"))
    one_line(code, err, "a b.log: cannot read")


def test_parse_table_shows_escapes_in_names_and_tool_errors_as_text(
    tmp_path: Path, cli: Any
) -> None:
    log = tmp_path / "esc\x1b[31m.log"
    log.write_bytes(
        b"STARTING!\nERROR: Failed to apply \x1b[2J\x1b]0;pwn\x07 [bold]x delegate\n"
        b"Benchmarking failed.\n"
    )
    code, out, err = cli("parse", log.name)  # the folder is the current one
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "esc\\x1b[31m.log" in out and "\\x1b[2J\\x1b]0;pwn\\x07 [bold]x" in out

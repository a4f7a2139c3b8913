"""`farm run` and `farm devices` on the virtual lab, fed what a hostile user or device would.

Hostile model names and device properties must run (or fail cleanly), execute nothing, and print
safely in the console, Markdown, CSV and JSON; an output folder that is a file, read-only or full
is one line with exit 2 and leaves a journal that loads and resumes.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from farm.bench.plan import sha256_file
from farm.profiles import PROFILE_DIR
from farm.report.text import safe_text
from farm.results.journal import load_run
from farm.sim.lab import Lab
from farm.sim.testing import AdbServer, benchmarks_on

pytestmark = pytest.mark.lab

CUMSUM = Path(__file__).resolve().parents[2] / "models" / "tiny_cnn_cumsum_float.tflite"

# Names a user's model files may carry: each must reach the results exactly, and print safely.
HOSTILE_STEMS = [
    "a b  c",
    "it's",
    'say "hi"',
    "$(touch pwned)",
    "`touch pwned2`",
    "x;touch pwned3|y&z",
    "new\nline",
    "..",
    "-rf",
    "ünïcødé 模型 🚀",
    "L" * 200,
    "\x1b[2J\x1b[31mred\x1b[0m [bold]b [link=x]y <script>alert(1) | col",  # no '/' in a file name
    "=cmd|' -C calc'!A0",
]
PWNED = ("pwned", "pwned2", "pwned3")


def hostile_models(folder: Path) -> list[Path]:
    """One distinct copy of a small model per hostile name (trailing bytes differ)."""
    folder.mkdir()
    paths = []
    for i, stem in enumerate(HOSTILE_STEMS):
        path = folder / f"{stem}.tflite"
        path.write_bytes(CUMSUM.read_bytes() + b"\0" * (i + 1))
        paths.append(path)
    return paths


def no_raw_controls(text: str, where: str) -> None:
    bad = sorted({c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0})
    assert not bad, f"{where}: raw control characters {bad!r}"


def md_rows_intact(report: str) -> None:
    """Every Markdown table row has as many unescaped cell separators as its header."""
    import re

    width = None
    for line in report.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        width = width or cells
        assert cells == width, f"table row broken: {line!r}"


@pytest.mark.needs("bubblewrap")  # runs the benchmark stand-in, device paths in shell
def test_hostile_model_names_run_exactly_and_print_safely(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    on_phone: Callable[[Lab, str, str], bool],
    tmp_path: Path,
) -> None:
    lab = start_lab(["emulator_x86_64"], time_scale=0)
    serial = lab.phones[0].serial
    models = hostile_models(tmp_path / "m")
    # `..` inside a path is just a path; the display name is the file's stem.
    (tmp_path / "m" / "sub").mkdir()
    models.append(tmp_path / "m" / "sub" / ".." / f"{HOSTILE_STEMS[0]}.tflite")
    config = run_config(models=[str(m) for m in models])

    result = farm_cli("run", "--config", config, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    no_raw_controls(result.stdout, "console")
    assert "pwned" not in result.stderr

    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    data = load_run(run_dir)
    assert not data.warnings
    assert sorted(c.model for c in data.cells) == sorted(HOSTILE_STEMS)  # the same file once
    assert {c.status for c in data.cells} == {"ok"}, [c.reason for c in data.cells]
    by_name = {c.model: c for c in data.cells}
    for stem, path in zip(HOSTILE_STEMS, models, strict=False):
        assert by_name[stem].model_sha256 == sha256_file(path)

    logs = [run_dir / c.log for c in data.cells]
    assert len(set(logs)) == len(logs)
    for log in logs:
        assert log.resolve().parent == (run_dir / "logs").resolve() / log.parent.name
        assert log.is_file() and len(log.name.encode()) < 255

    report = (run_dir / "report.md").read_text()
    no_raw_controls(report, "report.md")
    md_rows_intact(report)
    assert "<script>" not in report

    with (run_dir / "results.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(data.cells)
    for row in rows:
        no_raw_controls("".join(v or "" for v in row.values()), "results.csv")
        assert not row["model"].startswith(("=", "+", "-", "@"))  # no spreadsheet formula
    assert {r["model"] for r in rows} >= {safe_text(s) for s in HOSTILE_STEMS if s[0] not in "=-"}

    exported = json.loads((run_dir / "results.json").read_text())
    cells = exported if isinstance(exported, list) else exported.get("cells", exported)
    assert sorted(str(c["model"]) for c in cells) == sorted(HOSTILE_STEMS)

    for folder in ("/", "/data/local/tmp", "/data/local/tmp/farm", "/data/local/tmp/farm/logs"):
        for name in PWNED:
            assert not on_phone(lab, serial, f"{folder}/{name}")
    for folder in (Path.cwd(), tmp_path, tmp_path / "m", run_dir):
        assert not any((folder / name).exists() for name in PWNED)


# -- a device whose properties are hostile ------------------------------------------------------

HOSTILE_PROPS = {
    "ro.product.model": "[bold red]Pwn[/] <script>alert(1)</script> | col",
    "ro.product.manufacturer": "\x1b[2J\x1b[31mEVIL\x1b[0m",
    "ro.soc.manufacturer": "=cmd|' /C calc'!A0",
    "ro.soc.model": "SoC\x07bell\x08bs\u202egnp.exe",
    # (a virtual phone keeps props as build.prop lines, so a newline cannot be tried here)
    "ro.build.version.release": "14\t<img src=x onerror=alert(1)>\x00\x7f",
}


def hostile_profile_dir(folder: Path) -> Path:
    folder.mkdir()
    data = yaml.safe_load((PROFILE_DIR / "emulator_x86_64.yaml").read_text())
    data["name"] = "hostile_emulator"
    data["props"].update(HOSTILE_PROPS)
    (folder / "hostile_emulator.yaml").write_text(yaml.safe_dump(data, allow_unicode=False))
    return folder


@pytest.mark.needs("bubblewrap")  # runs the benchmark stand-in, device paths in shell
def test_hostile_device_properties_print_safely(
    start_lab: Callable[..., Lab],
    adb_server: AdbServer,
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    profiles = hostile_profile_dir(tmp_path / "profiles")
    lab = start_lab(["hostile_emulator"], profile_dir=profiles, time_scale=0)
    serial = lab.phones[0].serial
    server = adb_server.address

    listing = farm_cli("devices", "--server", server)
    assert listing.returncode == 0, listing.stderr
    no_raw_controls(listing.stdout, "farm devices")
    assert "[bold red]Pwn[/]" in listing.stdout  # shown as text, not taken as markup
    listing = farm_cli("devices", "--server", server, "--json")
    (device,) = json.loads(listing.stdout)["devices"]
    assert device["model"] == HOSTILE_PROPS["ro.product.model"]  # JSON keeps the exact value
    # A property value is a C string on a phone: getprop ends it at the NUL.
    assert device["release"] == HOSTILE_PROPS["ro.build.version.release"].split("\0")[0]

    config = run_config(models=[str(CUMSUM)])
    result = farm_cli("run", "--config", config, "--no-progress")
    assert result.returncode == 0, result.stderr
    no_raw_controls(result.stdout + result.stderr, "farm run console")
    assert "[bold red]Pwn[/]" in result.stdout  # shown as text, not taken as markup

    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    data = load_run(run_dir)
    (cell,) = data.cells
    assert cell.status == "ok" and cell.serial == serial
    assert cell.device.model == HOSTILE_PROPS["ro.product.model"]

    report = (run_dir / "report.md").read_text()
    no_raw_controls(report, "report.md")
    md_rows_intact(report)
    assert "<script>" not in report and "<img" not in report and "\u202e" not in report
    with (run_dir / "results.csv").open(newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    text = "".join(v or "" for v in row.values())
    no_raw_controls(text, "results.csv")
    assert not any(v.startswith("=") for v in row.values() if v)
    json.loads((run_dir / "results.json").read_text())


# -- delegate values that a shell would run --------------------------------------------------


@pytest.mark.needs("bubblewrap")  # runs the benchmark stand-in, device paths in shell
def test_hostile_delegate_values_reach_the_tool_verbatim_and_run_nothing(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    on_phone: Callable[[Lab, str, str], bool],
) -> None:
    lab = start_lab(["emulator_x86_64"], time_scale=0)
    serial = lab.phones[0].serial
    external = {
        "kind": "external",
        "name": "vendor",
        "path": "/data/local/tmp/$(touch /data/local/tmp/pwned)/`touch pwned2` x'.so",
        "options": {"backend type": "h t p", "q": 'it\'s "so" $(touch pwned3)'},
    }
    nnapi = {"kind": "nnapi", "accelerator_name": "nnapi-reference"}
    config = run_config(models=[str(CUMSUM)], delegates=[external, nnapi])
    result = farm_cli("run", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    data = load_run(json.loads(result.stdout)["run_dir"])
    by_delegate = {c.delegate: c for c in data.cells}
    cell = by_delegate["external:vendor"]
    # The library is not there; the tool says so and goes on without it, as the real one does.
    assert cell.status in ("ok", "failed"), cell
    log = (data.run_dir / cell.log).read_text()
    assert f"External delegate path: [{external['path']}]" in log  # verbatim on the device
    assert f"Unable to load external delegate from : {external['path']}" in log
    argv = shlex.split(cell.command)
    assert f"--external_delegate_path={external['path']}" in argv
    assert '--external_delegate_options=backend type:h t p;q:it\'s "so" $(touch pwned3)' in argv
    assert by_delegate["nnapi:nnapi-reference"].status == "ok"
    for folder in ("/", "/data/local/tmp", "/data/local/tmp/farm", "/data/local/tmp/farm/logs"):
        for name in PWNED:
            assert not on_phone(lab, serial, f"{folder}/{name}")


# -- output folders that cannot take the run ---------------------------------------------------


def test_out_that_is_a_file_is_one_line_and_nothing_is_pushed(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    on_phone: Callable[[Lab, str, str], bool],
    one_error_line: Callable[[str], str],
    tmp_path: Path,
) -> None:
    lab = start_lab(["emulator_x86_64"])
    serial = lab.phones[0].serial
    config = run_config()
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    result = farm_cli("run", "--config", config, "--out", afile)
    assert result.returncode == 2
    assert f"{afile}/" in one_error_line(result.stderr)
    assert "Not a directory" in result.stderr
    assert afile.read_text() == "keep me\n"
    assert not on_phone(lab, serial, "/data/local/tmp/farm")


def _unshare() -> list[str]:
    """A command prefix running a command in its own mount namespace."""
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]


def _farm_on_tmpfs(
    mount: Path, options: str, args: list[Any], keep: Path
) -> subprocess.CompletedProcess[str]:
    """`farm ARGS` with a private tmpfs at `mount`; what it wrote there is copied to `keep`."""
    farm_cmd = shlex.join([sys.executable, "-m", "farm.cli.main", *map(str, args)])
    script = (
        f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount))} || exit 99; "
        f"{farm_cmd}; rc=$?; cp -a {shlex.quote(str(mount))}/. {shlex.quote(str(keep))}/; "
        "exit $rc"
    )
    return subprocess.run(
        [*_unshare(), "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


@pytest.mark.needs("mount-namespace")
def test_read_only_out_is_one_line(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    one_error_line: Callable[[str], str],
    tmp_path: Path,
) -> None:
    start_lab(["emulator_x86_64"])
    config = run_config()
    mount, keep = tmp_path / "ro", tmp_path / "keep"
    mount.mkdir()
    keep.mkdir()
    result = _farm_on_tmpfs(mount, "ro,size=1m", ["run", "--config", config, "--out", mount], keep)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert f"{mount}/" in line and "Read-only file system" in line


@pytest.mark.needs("mount-namespace")
@pytest.mark.needs("bubblewrap")  # runs the benchmark stand-in, device paths in shell
def test_full_disk_stops_the_run_with_one_line_and_resume_completes_it(
    start_lab: Callable[..., Lab],
    run_config: Callable[..., Path],
    farm_cli: Callable[..., Any],
    one_error_line: Callable[[str], str],
    tmp_path: Path,
) -> None:
    lab = start_lab(["emulator_x86_64"], time_scale=0)
    serial = lab.phones[0].serial
    models = hostile_models(tmp_path / "m")[:6]
    config = run_config(models=[str(m) for m in models], threads=[1, 2])
    mount, keep = tmp_path / "full", tmp_path / "keep"
    mount.mkdir()
    keep.mkdir()
    result = _farm_on_tmpfs(
        mount, "size=40k", ["run", "--config", config, "--out", mount, "--no-progress"], keep
    )
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert "No space left on device" in line and "--resume" in line
    assert not benchmarks_on(serial)  # the stop reached the phone

    (run_dir,) = [p for p in keep.iterdir() if p.is_dir()]
    data = load_run(run_dir)
    assert not data.warnings  # no half-written line
    planned = {c.key for c in data.header.plan.cells}
    assert len(planned) == 12
    done = [c for c in data.cells if c.status == "ok"]
    assert len(done) < len(planned)

    resumed = farm_cli("run", "--resume", run_dir, "--json")
    assert resumed.returncode == 0, resumed.stderr
    final = load_run(run_dir)
    assert not final.warnings
    assert sorted(c.key for c in final.cells) == sorted(planned)
    assert {c.status for c in final.cells} == {"ok"}
    for cell in final.cells:
        assert (run_dir / cell.log).is_file()

"""`farm lab up|status|fault|authorize|restart|down`: virtual phones behind a real adb server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from farm.errors import ConfigError

lab_app = typer.Typer(
    name="lab",
    help="Virtual phones the real adb server treats as devices (for demos, tests and CI).",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="Lab state folder (default: $FARM_LAB_DIR or ~/.local/state/farm/lab)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    """Add `farm lab` to the app."""
    app.add_typer(lab_app, name="lab")


@lab_app.command("up")
def up_command(
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            "-p",
            help="NAME[:COUNT] of a device profile (repeatable; default: pixel_7).",
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="litert (real CPU inference) or model (timings only).")
    ] = "model",
    adb_port: Annotated[
        int | None,
        typer.Option(
            "--adb-port", help="adb server port (default: $ANDROID_ADB_SERVER_PORT or 5037)."
        ),
    ] = None,
    per_process: Annotated[
        bool, typer.Option("--per-process", help="One OS process per phone (so one can be killed).")
    ] = False,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="INDEX:KIND[:NAME=VALUE,...]: a fault in force from the start on phone INDEX "
            "(0-based, in --profile order), e.g. 1:unauthorized (repeatable).",
        ),
    ] = None,
    profile_dir: Annotated[
        Path | None,
        typer.Option(
            "--profile-dir", help="Folder of device profile YAML files (default: device_profiles/)."
        ),
    ] = None,
    emulator: Annotated[
        bool,
        typer.Option(
            "--emulator",
            help="Put the phones on the emulator ports (5555, 5557, ...): the adb server names "
            "them emulator-5554, ... as it names local emulators.",
        ),
    ] = False,
    directory: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start virtual phones in the background, attach them to the adb server, print them."""
    from farm.sim.lab import Lab, parse_profile_specs

    if profile_dir is not None and not profile_dir.is_dir():
        raise ConfigError(f"--profile-dir {profile_dir}: no such folder")
    names = parse_profile_specs(profile or ["pixel_7"], profile_dir)
    lab = Lab.start(
        names,
        engine=engine,
        per_process=per_process,
        adb_port=adb_port,
        directory=directory,
        faults=_parse_start_faults(fault or [], len(names)),
        detach=True,
        profile_dir=profile_dir,
        emulator=emulator,
    )
    rows = [{k: v for k, v in row.items() if k != "alive"} for row in lab.status()]
    _render(rows, as_json, f"lab up in {lab.dir} (adb server port {lab.adb_port})")


@lab_app.command("status")
def status_command(directory: DirOption = None, as_json: JsonOption = False) -> None:
    """The lab's phones with their adb state and whether their process is alive."""
    from farm.sim.lab import Lab

    lab = Lab.load(directory)
    _render(lab.status(), as_json, f"lab in {lab.dir} (adb server port {lab.adb_port})")


@lab_app.command("fault")
def fault_command(
    serial: Annotated[str, typer.Argument(help="The phone, as adb names it (127.0.0.1:PORT).")],
    kind: Annotated[
        str,
        typer.Argument(
            help="drop, die_after, hang, offline, reboot, disk_full, slow, benchmark_crash, "
            "unauthorized or clear."
        ),
    ],
    options: Annotated[
        list[str] | None,
        typer.Argument(help="NAME=VALUE options, e.g. bytes=1M, seconds=5, rate=256K, signal=11."),
    ] = None,
    directory: DirOption = None,
) -> None:
    """Make a running phone show a fault now."""
    from farm.sim.faults import parse_option_args
    from farm.sim.lab import Lab

    lab = Lab.load(directory)
    lab.fault(serial, kind, **parse_option_args(options or []))
    typer.echo(f"{serial}: {kind}")


@lab_app.command("authorize")
def authorize_command(
    serial: Annotated[str, typer.Argument(help="The phone, as adb names it.")],
    directory: DirOption = None,
) -> None:
    """Allow the host keys waiting on a phone, as its owner tapping "Allow" would."""
    from farm.sim.lab import Lab

    lab = Lab.load(directory)
    accepted = lab.authorize(serial)
    typer.echo(f"{serial}: {accepted} host key(s) allowed")


@lab_app.command("restart")
def restart_command(
    serial: Annotated[str, typer.Argument(help="The phone, as adb names it (127.0.0.1:PORT).")],
    directory: DirOption = None,
) -> None:
    """Start a killed phone again: same port, serial and files, as after a reboot."""
    from farm.sim.lab import Lab

    lab = Lab.load(directory)
    lab.detached = True  # the phone outlives this command
    phone = lab.restart(serial)
    typer.echo(f"{phone.serial}: restarted (pid {phone.pid})")


@lab_app.command("down")
def down_command(directory: DirOption = None) -> None:
    """Detach the phones and stop every process the lab started."""
    from farm.sim.lab import Lab

    lab = Lab.load(directory)
    count = len(lab.phones)
    lab.down()
    typer.echo(f"lab down: {count} phone(s) stopped")


def _parse_start_faults(
    specs: list[str], count: int
) -> dict[int, list[tuple[str, dict[str, Any]]]]:
    from farm.sim.faults import parse_fault, parse_option_args

    faults: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for spec in specs:
        index_text, _, rest = spec.partition(":")
        kind, _, option_text = rest.partition(":")
        try:
            index = int(index_text)
        except ValueError:
            raise ConfigError(f"--fault {spec!r}: expected INDEX:KIND[:NAME=VALUE,...]") from None
        if not 0 <= index < count:
            raise ConfigError(f"--fault {spec!r}: no phone {index} (phones are 0..{count - 1})")
        options = parse_option_args([o for o in option_text.split(",") if o])
        parse_fault(kind, options)
        faults.setdefault(index, []).append((kind, options))
    return faults


def _render(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    console.print(title, markup=False)
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["serial", "profile", "state", "port", "pid"] + (
        ["alive"] if rows and "alive" in rows[0] else []
    )
    for column in columns:
        table.add_column(column.upper())
    for row in rows:
        table.add_row(*(Text(str(row.get(c, ""))) for c in columns))
    console.print(table)

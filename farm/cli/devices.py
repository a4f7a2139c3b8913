"""`farm devices`: every device on every configured adb server, in any state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from farm.errors import ConfigError
from farm.report.text import safe_text


def register(app: typer.Typer) -> None:
    """Add `farm devices` to the app."""
    app.command("devices")(devices_command)


def servers_from(server: list[str] | None, config: Path | None) -> list[str]:
    """The adb servers to ask: --server, else the config's adb_servers, else adb's defaults."""
    from farm.config import DEFAULT_CONFIG_NAME, default_adb_servers, load_config

    if server:
        from farm.android.adb import parse_server

        for spec in server:
            try:
                parse_server(spec)
            except ValueError as exc:
                raise ConfigError(f"--server: {exc}") from None
        return list(server)
    path = config if config is not None else Path(DEFAULT_CONFIG_NAME)
    if config is not None or path.exists():
        servers = load_config(path, overrides={}).adb_servers
        if servers:
            return list(servers)
    return default_adb_servers()


def devices_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    server: Annotated[
        list[str] | None,
        typer.Option("--server", "-S", help="adb server host:port (repeatable)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="farm.yaml whose adb_servers to ask."),
    ] = None,
) -> None:
    """List every device the adb servers see: state, model, SoC, SDK, ABIs, profile."""
    from farm.android.discovery import discover

    found = discover(servers_from(server, config))
    if as_json:
        typer.echo(json.dumps(found.to_dict(), indent=2))
    else:
        _print_table(found.devices)
    for warning in found.warnings:
        typer.echo(f"farm: warning: {safe_text(warning)}", err=True)


def _print_table(devices: list) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not devices:
        console.print("no devices", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("SERIAL", "STATE", "SERVER", "MODEL", "SOC", "SDK", "ABIS", "PROFILE", "EMU"):
        table.add_column(column, overflow="fold")
    for d in devices:
        # Device-sourced text goes in as Text (no markup), controls made visible (no escapes).
        table.add_row(
            *(
                Text(safe_text(value))
                for value in (
                    d.serial,
                    d.state,
                    d.server,
                    d.model,
                    d.soc,
                    "" if d.sdk is None else f"{d.sdk} ({d.release})" if d.release else str(d.sdk),
                    ",".join(d.abis),
                    d.profile or "",
                    "yes" if d.emulator else "",
                )
            )
        )
    console.print(table)

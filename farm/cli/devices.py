"""`farm devices`: every device on every configured adb server, in any state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from farm.errors import ConfigError
from farm.report.text import safe_text

if TYPE_CHECKING:
    from farm.android.info import DeviceInfo
    from farm.android.inventory import Inventory
    from farm.config import Config


def register(app: typer.Typer) -> None:
    """Add `farm devices` to the app."""
    app.command("devices")(devices_command)


def servers_from(server: list[str] | None, config: Config | None) -> list[str]:
    """The adb servers to ask: --server, else the config's adb_servers, else adb's defaults."""
    from farm.config import default_adb_servers

    if server:
        from farm.android.adb import parse_server

        for spec in server:
            try:
                parse_server(spec)
            except ValueError as exc:
                raise ConfigError(f"--server: {exc}") from None
        return list(server)
    if config is not None and config.adb_servers:
        return list(config.adb_servers)
    return default_adb_servers()


def _config(path: Path | None) -> Config | None:
    """The farm.yaml given, else ./farm.yaml when there is one, else None."""
    from farm.config import DEFAULT_CONFIG_NAME, load_config

    target = path if path is not None else Path(DEFAULT_CONFIG_NAME)
    if path is None and not target.exists():
        return None
    return load_config(target, overrides={})


def devices_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (each device's full inventory).")
    ] = False,
    server: Annotated[
        list[str] | None,
        typer.Option("--server", "-S", help="adb server host:port (repeatable)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="farm.yaml whose adb_servers and binaries to use."),
    ] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe/--no-probe",
            help="Ask benchmark_model for the NNAPI accelerators (a short run, cached).",
        ),
    ] = True,
) -> None:
    """List every device the adb servers see: state, model, SoC, SDK, ABIs, profile, and what
    each online device reports of itself (GPU, RAM, CPU clusters, NNAPI accelerators)."""
    from farm.bench.devices import survey

    loaded = _config(config)
    binaries = dict(loaded.binaries) if loaded is not None else {}
    found = survey(servers_from(server, loaded), binaries=binaries, probe=probe)
    if as_json:
        typer.echo(json.dumps(found.to_dict(), indent=2))
    else:
        _print_table(found.found.devices, found.inventories)
    for warning in found.found.warnings:
        typer.echo(f"farm: warning: {safe_text(warning)}", err=True)


def _print_table(devices: list[DeviceInfo], inventories: dict[str, Inventory]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not devices:
        console.print("no devices", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ("SERIAL", "STATE", "SERVER", "MODEL", "SOC", "SDK", "ABIS", "PROFILE", "EMU")
    for column in columns:
        table.add_column(column, overflow="fold")
    # One short line each; `--json` has the whole inventory.
    for column, width in (("GPU", 15), ("RAM", 5), ("CPU", 14), ("NNAPI", 18)):
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=width)
    for d in devices:
        inventory = inventories.get(d.serial)
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
                    *inventory_cells(inventory),
                )
            )
        )
    console.print(table)


def inventory_cells(inventory: Inventory | None) -> tuple[str, str, str, str]:
    """The GPU, RAM, CPU and NNAPI cells of a device's row ("?" for an unknown fact)."""
    if inventory is None:
        return "", "", "", ""
    gpu = inventory.gpu.renderer if inventory.gpu else "?"
    ram = "?" if inventory.ram_kb is None else f"{inventory.ram_kb / 1024 / 1024:.1f}G"
    clusters = inventory.cpu_clusters
    cpu = "?"
    if clusters is not None:  # cores per cluster, and the fastest cluster's top frequency
        top = max((c.max_freq_khz or 0 for c in clusters), default=0)
        cpu = "+".join(str(len(c.cpus)) for c in clusters)
        cpu += f" {top / 1e6:.1f}GHz" if top else ""
    names = inventory.nnapi_accelerators
    nnapi = "?" if names is None else ",".join(names) or "none"
    return gpu, ram, cpu, nnapi

"""`farm binaries list|add|fetch`: the cache of benchmark_model builds per ABI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

binaries_app = typer.Typer(
    name="binaries",
    help="The cache of benchmark_model builds per ABI (arm64-v8a, armeabi-v7a, x86_64, x86).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add `farm binaries` to the app."""
    app.add_typer(binaries_app)


def _show(entries: list, as_json: bool, *, empty: str) -> None:
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not entries:
        console.print(empty, markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ABI", "SHA256", "SIZE", "ELF", "SOURCE", "ADDED"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            *(Text(v) for v in (e.abi, e.sha256[:16], f"{e.size:,}", e.elf, e.source, e.added_at))
        )
    console.print(table)


@binaries_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show the cached builds with their sha256 and origin."""
    from farm.bench.binaries import BinaryCache

    cache = BinaryCache()
    _show(cache.list(), as_json, empty=f"no binaries in {cache.root} (try `farm binaries fetch`)")


@binaries_app.command("add")
def add_command(
    abi: Annotated[str, typer.Argument(help="arm64-v8a, armeabi-v7a, x86_64 or x86.")],
    path: Annotated[Path, typer.Argument(help="A benchmark_model built for Android and that ABI.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Check a build against its ABI (ELF machine, Android loader) and cache it."""
    from farm.bench.binaries import BinaryCache

    _show([BinaryCache().add(abi, path)], as_json, empty="")


@binaries_app.command("fetch")
def fetch_command(
    abis: Annotated[
        list[str] | None,
        typer.Argument(help="ABIs to fetch (default: every ABI with an official build)."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="Where the builds are (default: $FARM_BINARIES_URL, else TensorFlow's nightly).",
        ),
    ] = None,
    flex: Annotated[
        bool, typer.Option("--flex", help="Fetch the builds with select TF ops (plus_flex).")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per download.")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Download TensorFlow's prebuilt Android benchmark_model nightly builds into the cache."""
    from farm.bench.binaries import BinaryCache

    entries = BinaryCache().fetch(abis or None, base_url=base_url, flex=flex, timeout=timeout)
    _show(entries, as_json, empty="")

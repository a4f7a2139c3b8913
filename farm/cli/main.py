"""The `farm` command: the typer app, its sub-commands and error handling."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from farm import __version__
from farm.errors import FarmError
from farm.report.text import safe_text

app = typer.Typer(
    name="farm",
    help="Benchmark TensorFlow Lite / LiteRT models on a lab of Android phones and emulators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; heavy imports stay inside the command bodies.
COMMAND_MODULES: tuple[str, ...] = (
    "farm.cli.parse",
    "farm.cli.lab",
    "farm.cli.devices",
    "farm.cli.binaries",
    "farm.cli.run",
    "farm.cli.demo",
    "farm.cli.report",
    "farm.cli.compare",
    "farm.cli.history",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"farm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Benchmark TFLite / LiteRT models across phones, delegates and thread counts."""
    ctx.obj = {"debug": debug}


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != _name:
            raise
        continue
    _module.register(app)


def main() -> None:
    """Console entry point: run the app, turning FarmError into one line and an exit code."""
    debug = "--debug" in sys.argv
    try:
        app()
    except FarmError as exc:
        if debug:
            raise

        # One line whatever the message quotes (a file name with a newline, a device's text).
        typer.echo(f"farm: error: {safe_text(exc)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("farm: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

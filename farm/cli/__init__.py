"""Thin typer commands: parse options, call a service function, render."""

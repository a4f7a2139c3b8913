"""`farm demo`: a virtual lab of four phones, the sample models, the report; the lab stops after."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from farm.errors import ConfigError, InputError

DEMO_PROFILES = ("pixel_7", "galaxy_s23", "galaxy_a54", "emulator_x86_64")
DEMO_DELEGATES = ("cpu", "gpu", "nnapi")
DEMO_THREADS = (1, 2, 4)


def register(app: typer.Typer) -> None:
    """Add `farm demo` to the app."""
    app.command("demo")(demo_command)


def demo_command(
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Virtual benchmark engine: litert (real CPU inference) or model (timings "
            "from the profiles, lightest).",
        ),
    ] = "litert",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for run folders.")] = Path(
        "farm-runs"
    ),
    models: Annotated[
        Path | None, typer.Option("--models", help="Folder of .tflite models (default: models/).")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show per-device progress.")
    ] = True,
) -> None:
    """Start four virtual phones, benchmark the sample models, print the report, stop the lab."""
    from farm.cli.run import progress_mode, show_result

    if engine not in ("litert", "model"):
        raise ConfigError(f"--engine: unknown engine {engine!r} (known: litert, model)")
    model_dir = models or default_models_dir()
    result = run_demo(
        engine=engine,
        out=out,
        model_dir=model_dir,
        progress=progress_mode(progress),
        say=lambda text: typer.echo(text, err=True),
    )
    show_result(result)
    typer.echo(timing_note(engine))
    raise typer.Exit(result.exit_code)


def timing_note(engine: str) -> str:
    """How the demo's simulated times were made, for the end of its report."""
    if engine == "model":
        return (
            "How these times were made: no inference ran; every time is simulated from the "
            "phone's device profile (CPU speed, thread scaling, each delegate's speed-up)."
        )
    return (
        "How these times were made: CPU times are real LiteRT inferences on this computer (on "
        "one thread, the CPU time the inference took). GPU and NNAPI times are simulated: "
        "this computer's one-thread CPU time for the model times the phone profile's ratio "
        "between that delegate and the phone's CPU, so each 'vs CPU' shows the speed-up the "
        "profile gives that phone."
    )


def default_models_dir() -> Path:
    """The sample models: ./models, else the repository's models/."""
    here = Path("models")
    if any(here.glob("*.tflite")):
        return here
    return Path(__file__).resolve().parent.parent.parent / "models"


def demo_config(models_dir: Path, server: str, out: Path) -> Any:
    """The demo's matrix: every sample model × CPU 1/2/4 threads, GPU, NNAPI; short runs."""
    from farm.config import Config

    found = sorted(str(p) for p in Path(models_dir).glob("*.tflite"))
    if not found:
        raise InputError(f"{models_dir}: no .tflite models (make them with scripts/make_models.py)")
    return Config.model_validate(
        {
            "models": found,
            "delegates": list(DEMO_DELEGATES),
            "threads": list(DEMO_THREADS),
            "repeats": 1,
            "warmup_runs": 2,
            "warmup_min_secs": 0,
            "num_runs": 10,
            "min_secs": 0,
            "max_secs": 20,
            "run_deadline_s": 60,
            "adb_servers": [server],
            "output": str(out),
        }
    )


def run_demo(
    *,
    engine: str,
    out: Path,
    model_dir: Path,
    progress: Any,
    say: Any,
    threads: tuple[int, ...] = DEMO_THREADS,
) -> Any:
    """Lab up on a private adb server, run the demo matrix (its CPU thread sweep `threads`),
    lab down (also on error or Ctrl-C)."""
    from farm.bench.service import load_models, run
    from farm.sim.lab import Lab
    from farm.sim.testing import AdbServer, bundled_adb

    config = demo_config(model_dir, "127.0.0.1:5037", out)
    load_models(list(config.models))  # a bad model stops the demo before any lab starts

    lab_dir = Path(tempfile.mkdtemp(prefix="farm-demo-"))
    server = None
    lab = None
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        t0 = time.monotonic()
        server = AdbServer(bundled_adb(), home=lab_dir / "adb").start()
        say(f"farm demo: private adb server on 127.0.0.1:{server.port}")
        lab = Lab.start(
            list(DEMO_PROFILES),
            engine=engine,
            adb_port=server.port,
            adb_path=server.adb_path,
            env=server.env,
            directory=lab_dir / "lab",
        )
        say(
            f"farm demo: {len(lab.phones)} virtual phones up ({', '.join(DEMO_PROFILES)}; "
            f"engine {engine}) in {time.monotonic() - t0:.1f} s"
        )
        config = config.model_copy(
            update={"adb_servers": [f"127.0.0.1:{server.port}"], "threads": list(threads)}
        )
        result = run(config=config, progress=progress, grace_s=10.0)
        say(f"farm demo: run took {time.monotonic() - t0:.1f} s in all")
        return result
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if lab is not None:
            lab.down()
        if server is not None:
            server.stop()
        shutil.rmtree(lab_dir, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt

"""The ``lowbit`` command line.  Every error is one line on stderr with exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from quant.errors import QuantInputError
from sim.errors import InputError

app = typer.Typer(
    name="lowbit",
    help="Hardware/software co-design of mixed-precision (2-8 bit) accelerators.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("sim", epilog="Example: lowbit sim --chip bitfusion_edge --workload resnet18 "
                           "--pairs w8a8,w4a4,w2a2 --out costs.csv")
def sim_cmd(
    chip: Annotated[str, typer.Option(help="Preset name, chip YAML, or SCALE-Sim .cfg.")],
    workload: Annotated[str, typer.Option(help="Zoo name, SCALE-Sim topology .csv, .onnx or workload .yaml.")],
    out: Annotated[Path, typer.Option(help="Cost table to write: .csv or .parquet.")],
    pairs: Annotated[str | None, typer.Option(help="Bit pairs, e.g. w8a8,w4a4 (default: all the chip supports).")]
    = None,
) -> None:
    """Simulate a workload on a chip and write the per-layer cost table."""
    from sim import load_chip, load_workload, simulate
    from sim.io import write_table

    frame = simulate(load_chip(chip), load_workload(workload), pairs)
    write_table(frame, out)
    totals = frame.groupby(["w_bits", "a_bits"], sort=False)[["total_cycles", "energy_pj"]].sum()
    for (w, a), row in totals.iterrows():
        typer.echo(f"w{w}a{a}: {int(row.total_cycles):,} cycles, {row.energy_pj / 1e6:,.1f} uJ")
    typer.echo(f"wrote {len(frame)} rows to {out}")


@app.command("sweep", epilog="Example: lowbit sweep experiments/configs/sweep_edge.yaml --out results/sweep")
def sweep_cmd(
    spec: Annotated[Path, typer.Argument(help="Sweep YAML (chip grid x workloads x pairs).")],
    out: Annotated[Path, typer.Option(help="Output directory of partitioned Parquet (resumable).")],
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler: tcp://host:port, or local:N.")] = None,
    workers: Annotated[int | None, typer.Option(help="Start a LocalCluster with this many workers.")] = None,
) -> None:
    """Run a design-space sweep on Dask; a rerun skips finished partitions."""
    from sim.sweep import run_sweep

    path = run_sweep(spec, out, scheduler=scheduler, n_workers=workers, progress=True)
    typer.echo(f"sweep results in {path}")


@app.command("quantize", epilog="Example: lowbit quantize --model digits-cnn --method gpfq --bits w4a8 "
                                "--out results/q_digits_w4a8")
def quantize_cmd(
    model: Annotated[str, typer.Option(help="Built-in model: digits-cnn or mnist1d-cnn.")],
    method: Annotated[str, typer.Option(help="rtn, gpfq, gpfq-paper (2^b+1 levels) or ptq-sl.")],
    bits: Annotated[str, typer.Option(help="Weight and activation bits, e.g. w4a8.")],
    out: Annotated[Path, typer.Option(help="Directory for the integer export and metrics.json.")],
    granularity: Annotated[str, typer.Option(help="tensor, channel, or PTQ-SL blocks NVxNH (e.g. 4x2).")]
    = "channel",
    seed: Annotated[int, typer.Option(help="Seed of the model's training and of the calibration sampling.")] = 0,
) -> None:
    """Quantize a built-in model after training, export it as integers, and measure it."""
    import json

    from experiments.quantize import quantize_builtin
    from sim.io import atomic_path
    from sim.pairs import parse_pair

    w_bits, a_bits = parse_pair(bits)
    _, result = quantize_builtin(model, method, w_bits, a_bits, granularity, seed, export_dir=out)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    typer.echo(f"{model} {method} {bits} ({granularity}): float {result.float_accuracy:.2f}%, fake-quant "
               f"{result.fakequant_accuracy:.2f}%, integer {result.integer_accuracy:.2f}% "
               f"(agreement {result.integer_agreement:.1f}%), weights {result.weight_size_bits / 8192:.1f} KiB")
    typer.echo(f"wrote {out}/model.npz, meta.json, metrics.json")


@app.command("demo", epilog="Example: lowbit demo --out results/demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("results/demo"),
) -> None:
    """Run the main job on a built-in default and write tables and plots."""
    from experiments.pipeline import run_demo

    run_demo(out)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


# typer >= 0.20 vendors its own click; catch both families of exceptions
_EXITS = tuple({click.exceptions.Exit, typer.Exit})
_ABORTS = tuple({click.exceptions.Abort, typer.Abort})
_USAGE = tuple({click.ClickException, getattr(typer.exceptions, "TyperException", click.ClickException)})


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps bad input to one line on stderr and exit status 2."""
    try:
        app(args=argv, prog_name="lowbit", standalone_mode=False)
    except _EXITS as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except _ABORTS:
        sys.stderr.write("lowbit: aborted\n")
        sys.exit(130)
    except _USAGE as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `lowbit`: show the help
            sys.stdout.write(exc.format_message() + "\n")
            sys.exit(0)
        sys.stderr.write(f"lowbit: error: {_one_line(exc.format_message())}\n")
        sys.exit(2)
    except (InputError, QuantInputError) as exc:
        sys.stderr.write(f"lowbit: error: {_one_line(str(exc))}\n")
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        sys.stderr.write(f"lowbit: error: {_one_line(f'{exc.filename}: {exc.strerror}')}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()

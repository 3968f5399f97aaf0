"""The ``lowbit`` command line.

Exit status: 0 success, 1 a verification found a mismatch, 2 bad input (one line on stderr), 3 internal error,
130 interrupted (see README).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from experiments.examples import EXAMPLES, epilog
from lowbit_core.errors import InputError, LowbitError
from lowbit_core.pairs import format_pair
from quant.errors import QuantInputError

if TYPE_CHECKING:
    from experiments.quantize import QuantResult, UserQuantResult
    from experiments.train import TrainResult

app = typer.Typer(
    name="lowbit",
    help="Hardware/software co-design of mixed-precision (2-8 bit) accelerators.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("sim", epilog=epilog("sim"))
def sim_cmd(
    chip: Annotated[str, typer.Option(help="Preset name, chip YAML, or SCALE-Sim .cfg.")],
    workload: Annotated[
        str,
        typer.Option(
            help="Zoo name, built-in model (digits-cnn, mnist1d-cnn, digits-resnet, "
            "digits-mobilenet), your own model (file.py:factory, module:factory, "
            ".pt2), SCALE-Sim topology .csv, "
            ".onnx or workload .yaml."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Cost table to write: .csv or .parquet.")],
    pairs: Annotated[
        str | None, typer.Option(help="Bit pairs, e.g. w8a8,w4a4 (default: all the chip supports).")
    ] = None,
    coupled: Annotated[
        bool,
        typer.Option(
            help="Store each output at its consumer's activation width: adds "
            "out_bits rows for the exact coupling of `lowbit solve`."
        ),
    ] = False,
    in_blocks: Annotated[
        int | None,
        typer.Option(
            "--in-blocks",
            help="PTQ-SL input blocks n_H: each weighted layer runs one reduction per block of input "
            "channels (clamped to its channels); default: the workload's own (1).",
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(
            help="search: pick each layer's loop order and tiles; scalesim: SCALE-Sim's fixed schedule "
            "(default: the chip's own; .cfg chips use scalesim)."
        ),
    ] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            help="What the mapping search minimizes: latency, energy or edp (default: the chip's mapping_objective)."
        ),
    ] = None,
    weight_preload: Annotated[
        str | None,
        typer.Option(
            help="serial: each fold shifts its stationary tile in first; overlapped: double-buffered PE registers "
            "load the next tile while the current one streams (default: the chip's own)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Your own model (--workload file.py:factory, module:factory or "
            ".pt2): trace it on one sample of this .npz's calib_x."
        ),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="state_dict (torch.save) for your own model.")] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="Your own model without --data: one sample's shape, e.g. 1,28,28.")
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Samples per inference: a zoo workload's batch, an ONNX "
            "model's symbolic batch dimension, a torch model's "
            "example batch (default 1).",
        ),
    ] = None,
    dim: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=SIZE for a symbolic ONNX dimension other than the batch, e.g. sequence=128 (repeatable)."
        ),
    ] = None,
) -> None:
    """Simulate a workload on a chip and write the per-layer cost table (with the mapping chosen per layer)."""
    from experiments.workloads import resolve_workload
    from lowbit_core.files import check_output_path
    from lowbit_core.tables import TABLE_SUFFIXES, write_table
    from sim import load_chip, simulate
    from sim.area import chip_area
    from sim.config import with_mapping

    check_output_path(out, "cost table", suffixes=TABLE_SUFFIXES)
    chip_config = with_mapping(load_chip(chip), mapping, objective, weight_preload)
    shape = None
    if input_shape is not None:
        try:
            shape = tuple(int(v) for v in input_shape.split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise QuantInputError(f"bad --input-shape {input_shape!r}: give positive integers such as 1,28,28")
    dims = {}
    for item in dim or []:
        key, _, value = item.partition("=")
        if not key or not value.isdigit() or int(value) < 1:
            raise QuantInputError(f"bad --dim {item!r}: give NAME=SIZE with a positive size, e.g. sequence=128")
        dims[key] = int(value)
    wl = resolve_workload(workload, data=data, weights=weights, input_shape=shape, batch=batch, dims=dims)
    if in_blocks is not None:
        wl = wl.with_in_blocks(in_blocks)
    frame = simulate(chip_config, wl, pairs, coupled=coupled)
    write_table(frame, out)
    area = chip_area(chip_config)
    if area.total_mm2 == area.total_mm2:  # not NaN
        typer.echo(
            f"area: {area.total_mm2:.3f} mm^2 (PEs {area.pe_mm2:.3f}, requant {area.requant_mm2:.3f}, "
            f"SRAM {area.sram_mm2:.3f})"
        )
    else:
        typer.echo("area: n/a (no synthesized figure for this PE kind)")
    plain = frame[frame.out_bits == frame.a_bits] if coupled else frame
    totals = plain.groupby(["w_bits", "a_bits"], sort=False)[["total_cycles", "energy_pj"]].sum()
    for (w, a), row in totals.iterrows():
        typer.echo(f"{format_pair((w, a))}: {int(row.total_cycles):,} cycles, {row.energy_pj / 1e6:,.1f} uJ")
    typer.echo(f"wrote {len(frame)} rows to {out}")


CostsOption = Annotated[
    Path,
    typer.Option(
        help="Cost table (.csv/.parquet): layer, w_bits, a_bits, the budgeted columns; optional name, group, "
        "out_bits (coupled), consumer."
    ),
]
SensitivityOption = Annotated[Path, typer.Option(help="Sensitivity table: layer, w_bits, a_bits, sensitivity.")]
BudgetOption = Annotated[
    list[str] | None,
    typer.Option(
        help="COLUMN=VALUE on any additive cost column; VALUE absolute or a percentage of the most expensive uniform "
        "assignment (60%). Repeat for several budgets (held at every point by `pareto`)."
    ),
]


@app.command("solve", epilog=epilog("solve"))
def solve_cmd(
    costs: CostsOption,
    sensitivity: SensitivityOption,
    out: Annotated[Path, typer.Option(help="Directory for assignment.csv and assignment.json.")],
    budget: BudgetOption = None,
    pairs: Annotated[str | None, typer.Option(help="Restrict the candidates, e.g. w8a8,w4a4.")] = None,
    time_limit: Annotated[float | None, typer.Option(help="Seconds; the gap is reported if it stops early.")] = None,
) -> None:
    """Pick each layer's bit pair: minimum total sensitivity under all budgets at once (exact ILP)."""
    from experiments.staging import staged_dir
    from lowbit_core.files import check_output_path
    from lowbit_core.pairs import parse_pairs
    from lowbit_core.tables import read_table
    from search import AssignmentModel, build_problem
    from search.assignment import write_assignment
    from search.budgets import parse_budgets, resolve_budgets
    from search.validate import check_time_limit

    check_output_path(out, "solve output directory", directory=True)
    check_time_limit(time_limit, "--time-limit")
    asked = parse_budgets(budget or [])
    problem = build_problem(
        read_table(costs, "cost table"),
        read_table(sensitivity, "sensitivity table"),
        list(asked),
        pairs=parse_pairs(pairs) if pairs else None,
    )
    limits = resolve_budgets(problem, asked)
    solution = AssignmentModel(problem, list(limits)).solve(limits, time_limit=time_limit)
    with staged_dir(out, last=("assignment.json",)) as stage:
        write_assignment(solution, stage, extra={"costs": str(costs), "sensitivity_table": str(sensitivity)})
    typer.echo(
        f"{solution.status} (gap {solution.gap:.2g}) in {solution.solve_seconds:.3f} s: total sensitivity "
        f"{solution.sensitivity:.6g} over {problem.n_layers} layers, {problem.n_units} units"
    )
    for name, b in solution.budgets().items():
        typer.echo(f"  {name}: {b['used']:.6g} of {b['limit']:.6g} (slack {b['slack']:.3g})")
    counts = solution.assignment().groupby(["w_bits", "a_bits"]).size().sort_index(ascending=False)
    typer.echo("  pairs: " + ", ".join(f"{format_pair(p)} x{n}" for p, n in counts.items()))
    typer.echo(f"wrote {out}/assignment.csv and assignment.json")


@app.command("pareto", epilog=epilog("pareto"))
def pareto_cmd(
    costs: CostsOption,
    sensitivity: SensitivityOption,
    out: Annotated[Path, typer.Option(help="Directory for points.csv, quality.csv, pareto.json and the plot.")],
    x: Annotated[str, typer.Option(help="Cost column swept by the epsilon-constraint method.")] = "latency_us",
    y: Annotated[str | None, typer.Option(help="A second swept cost column (a grid over both).")] = None,
    points: Annotated[int, typer.Option(min=1, help="Number of epsilon values.")] = 50,
    budget: BudgetOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model to measure every point on: a built-in (digits-cnn, "
            "digits-resnet, ...) or your own, file.py:factory or "
            "module:factory with --data (layer names must match the "
            "tables)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help=".npz with calib_x and optionally test_x, test_y for --model; "
            "without labels a point's quality is its top-1 agreement "
            "with the float model."
        ),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="state_dict (torch.save) for your own model.")] = None,
    quantizer: Annotated[
        str, typer.Option(help="Quantizer applied for measuring: rtn, gpfq, gpfq-paper, ptq-sl or gptq.")
    ] = "rtn",
    greedy_cost: Annotated[
        str | None, typer.Option(help="Cost column of the greedy baseline (default: --x; bops for AIMET's).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the model and calibration sampling.")] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Measure the points on Dask: local:N or a scheduler "
            "address tcp://host:port (default: in this process)."
        ),
    ] = None,
) -> None:
    """Exact Pareto front of sensitivity against cost, with greedy and uniform baselines, measured."""
    from experiments.pareto_study import run_pareto_study
    from experiments.staging import staged_dir
    from lowbit_core.files import check_output_path
    from lowbit_core.tables import read_table
    from search.budgets import parse_budgets, resolve_budgets
    from search.problem import build_problem

    check_output_path(out, "pareto output directory", directory=True)
    if (data is not None or weights is not None) and model is None:
        raise InputError("--data and --weights need --model")
    cost_table = read_table(costs, "cost table")
    sens_table = read_table(sensitivity, "sensitivity table")
    asked = parse_budgets(budget or [])
    limits = resolve_budgets(build_problem(cost_table, sens_table, list(asked)), asked) if asked else {}
    inputs = None
    if model is not None:
        from quant.models.user import is_model_spec

        if data is not None or weights is not None or is_model_spec(model):
            from experiments.user_inputs import load_model_and_data

            inputs = load_model_and_data(model, data, weights, seed)  # checked before anything is solved
    with staged_dir(out, last=("pareto.json",)) as stage:
        study = run_pareto_study(
            cost_table,
            sens_table,
            stage,
            x=x,
            y=y,
            n_points=points,
            limits=limits,
            model_name=model,
            method=quantizer,
            seed=seed,
            greedy_cost=greedy_cost,
            progress=True,
            inputs=inputs,
            scheduler=scheduler,
        )
    counts = study.points.kind.value_counts()
    typer.echo(
        f"{counts.get('ilp', 0)} ILP front points, {counts.get('greedy', 0)} greedy, {counts.get('uniform', 0)} uniform"
    )
    if study.quality is not None:
        gap = study.quality["ilp_minus_greedy_accuracy"].dropna()
        metric = "top-1 agreement with float" if inputs is not None and inputs.test_y is None else "accuracy"
        typer.echo(
            f"measured {metric}, ILP minus greedy over {len(gap)} {x} budgets: min {gap.min():+.2f}, "
            f"mean {gap.mean():+.2f} points"
        )
    typer.echo(f"wrote {', '.join(str(out / p.name) for p in study.paths.values())}")


@app.command("sweep", epilog=epilog("sweep"))
def sweep_cmd(
    spec: Annotated[
        Path,
        typer.Argument(
            help="Sweep YAML (chip grid x workloads x pairs), or the name of a built-in one: sweep_small, sweep_edge."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output directory of partitioned Parquet (resumable).")],
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler: tcp://host:port, or local:N.")] = None,
    workers: Annotated[int | None, typer.Option(help="Start a LocalCluster with this many workers.")] = None,
) -> None:
    """Run a design-space sweep on Dask; a rerun skips finished partitions."""
    from sim.sweep import run_sweep

    builtin = Path(__file__).parent / "configs" / f"{spec}.yaml"
    if not spec.suffix and not spec.exists() and builtin.is_file():
        spec = builtin
    path = run_sweep(spec, out, scheduler=scheduler, n_workers=workers, progress=True)
    typer.echo(f"sweep results in {path}")


def _phase_printer() -> Callable[[str], None]:
    """A progress callback: each phase on one stderr line, with the seconds the previous one took.

    Silent when stderr is not a terminal, so a script sees only the result (and, on bad input, one line)."""
    import time

    if not sys.stderr.isatty():
        return lambda _: None
    state = {"start": time.perf_counter(), "n": 0}

    def show(what: str) -> None:
        now = time.perf_counter()
        took = f" (previous phase {now - state['start']:.1f} s)" if state["n"] else ""
        state["start"], state["n"] = now, state["n"] + 1
        typer.echo(f"[{state['n']}] {what}{took}", err=True)

    return show


def _accuracy_summary(r: QuantResult | TrainResult) -> str:
    """One line of a quantize/train result: float, fake-quant and integer accuracy, agreement, weight KiB."""
    return (
        f"float {r.float_accuracy:.2f}%, fake-quant {r.fakequant_accuracy:.2f}%, integer {r.integer_accuracy:.2f}% "
        f"(agreement {r.integer_agreement:.1f}%), weights {r.weight_size_bits / 8192:.1f} KiB"
    )


@app.command("quantize", epilog=epilog("quantize"))
def quantize_cmd(
    model: Annotated[
        str,
        typer.Option(
            help="Built-in model (digits-cnn, mnist1d-cnn, digits-resnet, "
            "digits-mobilenet), or your own: path/to/file.py:factory, "
            "package.module:factory (the factory returns an nn.Module) or a "
            "torch.export .pt2 program; your own needs --data."
        ),
    ],
    method: Annotated[str, typer.Option(help="rtn, gpfq, gpfq-paper (2^b+1 levels), ptq-sl or gptq.")],
    out: Annotated[Path, typer.Option(help="Directory for the integer export and metrics.json.")],
    bits: Annotated[
        str | None, typer.Option(help="Weight and activation bits of every layer, e.g. w4a8 (or give --assignment).")
    ] = None,
    granularity: Annotated[
        str,
        typer.Option(
            help="tensor, channel, or PTQ-SL blocks NVxNH (e.g. 4x2). rtn/gpfq: "
            "every layer must hold NVxNH; ptq-sl clamps the grid to smaller "
            "layers, but at least one layer must hold it."
        ),
    ] = "channel",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the model's training and of the calibration sampling.")] = 0,
    data: Annotated[
        Path | None,
        typer.Option(
            help=".npz with calib_x and optionally test_x, test_y (labels); "
            "without labels the quality is agreement with the float model."
        ),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="state_dict (torch.save) for your own model.")] = None,
    assignment: Annotated[
        Path | None,
        typer.Option(help="Per-layer bits: lowbit solve's output directory or its assignment.csv (instead of --bits)."),
    ] = None,
    qonnx: Annotated[
        Path | None,
        typer.Option(
            help="Also write the quantized network as QONNX (Quant nodes; "
            "runs in the qonnx package) to this .onnx file."
        ),
    ] = None,
    qdq: Annotated[
        Path | None,
        typer.Option(
            help="Also write it as standard ONNX QDQ (4- and 8-bit tensors "
            "only; runs in onnxruntime) to this .onnx file."
        ),
    ] = None,
) -> None:
    """Quantize a model (built-in, trained here, or your own on your data), export it as integers, and measure it."""
    import json

    from experiments.quantize import quantize_builtin, quantize_user
    from experiments.staging import staged_dir
    from lowbit_core.files import check_output_path
    from lowbit_core.pairs import DEFAULT_MAX_BITS, parse_pair
    from quant.models.user import is_model_spec

    check_output_path(out, "quantize output directory", directory=True)
    if (bits is None) == (assignment is None):
        raise QuantInputError("give exactly one of --bits (e.g. w4a8) and --assignment")
    table = None
    if assignment is not None:
        from search.assignment import read_assignment

        table = read_assignment(assignment)
        w_bits = a_bits = None
    else:
        w_bits, a_bits = parse_pair(bits, DEFAULT_MAX_BITS)
    if data is None and (is_model_spec(model) or weights is not None):
        raise QuantInputError(f"model {model!r}: your own model needs --data (an .npz with calib_x)")
    onnx_outputs = _check_onnx_outputs(qonnx, qdq, w_bits, a_bits, table)
    with staged_dir(out) as stage:
        if data is None:
            _, result = quantize_builtin(
                model,
                method,
                w_bits,
                a_bits,
                granularity,
                seed,
                export_dir=stage,
                on_phase=_phase_printer(),
                assignment=table,
            )
        else:
            _, result = quantize_user(
                model,
                data,
                method,
                w_bits,
                a_bits,
                granularity,
                seed,
                weights,
                export_dir=stage,
                on_phase=_phase_printer(),
                assignment=table,
            )
        (stage / "metrics.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        if onnx_outputs:
            from quant.integer import load_export
            from quant.onnx_export import to_onnx, write_onnx

            integer = load_export(stage)
            for fmt, _ in onnx_outputs:
                to_onnx(integer, fmt)  # refuses (QDQ widths, blocks) before any file is written
            for fmt, path in onnx_outputs:
                write_onnx(integer, path, fmt)
    summary = _accuracy_summary(result) if data is None else _user_summary(result)
    typer.echo(f"{model} {method} {bits or f'assignment {assignment}'} ({granularity}): {summary}")
    typer.echo(f"wrote {out}/model.npz, meta.json, metrics.json")


def _check_onnx_outputs(
    qonnx: Path | None, qdq: Path | None, w_bits: int | None, a_bits: int | None, table: Any
) -> list[tuple[str, Path]]:
    """The ONNX files to write, their paths checked (and QDQ's widths, when known) before any work."""
    from lowbit_core.files import check_output_path

    outputs = [
        (fmt, check_output_path(path, f"--{fmt} file"))
        for fmt, path in (("qonnx", qonnx), ("qdq", qdq))
        if path is not None
    ]
    if outputs:
        try:
            import onnx  # noqa: F401 - the exporter needs it
        except ImportError:
            raise QuantInputError("--qonnx / --qdq need the onnx package: pip install onnx") from None
    if qdq is not None:
        widths = {w_bits, a_bits} if table is None else set(table["w_bits"]) | set(table["a_bits"])
        bad = sorted(b for b in widths if b not in (4, 8))
        if bad:
            raise QuantInputError(
                f"--qdq: standard ONNX QDQ holds 4- and 8-bit tensors only, not {bad} bits (use --qonnx)"
            )
    return outputs


def _user_summary(r: UserQuantResult) -> str:
    """One line of a user-model result: accuracies when labelled, agreement and output SQNR/cosine always."""
    acc = (
        f"float {r.float_accuracy:.2f}%, fake-quant {r.fakequant_accuracy:.2f}%, integer {r.integer_accuracy:.2f}%; "
        if r.labelled
        else ""
    )
    return (
        f"{acc}top-1 agreement fake-quant/float {r.fakequant_agreement:.1f}%, integer/fake-quant "
        f"{r.integer_agreement:.1f}%, output SQNR {r.output_sqnr_db:.1f} dB, cosine {r.output_cosine:.4f} over "
        f"{r.samples} samples, weights {r.weight_size_bits / 8192:.1f} KiB"
    )


@app.command("train", epilog=epilog("train"))
def train_cmd(
    model: Annotated[
        str,
        typer.Option(
            help="A built-in model (digits-cnn, digits-resnet, ...) or your own, "
            "file.py:factory or module:factory, with --data."
        ),
    ],
    method: Annotated[
        str,
        typer.Option(
            help="qat (fake-quant + straight-through estimator, the baseline), qgt "
            "(regularized toward the b-bit grid) or dgms (Gaussian-mixture "
            "weight sharing, snapped to a uniform grid)."
        ),
    ],
    bits: Annotated[str, typer.Option(help="Weight and activation bits, e.g. w2a8 (2..8 each).")],
    out: Annotated[Path, typer.Option(help="Directory for the integer export, history.csv and metrics.json.")],
    epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs (default 10).")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam's peak learning rate, cosine decay (default 1e-3).")] = None,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed of the pretrained model and of every choice in fine-tuning.")
    ] = 0,
    lam: Annotated[
        float | None, typer.Option(help="qgt: the regularizer's weight lambda (default: the method's).")
    ] = None,
    components: Annotated[
        int | None, typer.Option(help="dgms: mixture components K; must be 2^w_bits (the zero component included).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
    data: Annotated[
        Path | None,
        typer.Option(
            help=".npz with train_x, train_y (to train on), test_x, test_y (to measure) and calib_x (to calibrate)."
        ),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="state_dict (torch.save) for your own model.")] = None,
) -> None:
    """Fine-tune a model with training-time quantization, export it as integers, and measure it."""
    from experiments.train import train_builtin, train_user
    from lowbit_core.files import check_output_path
    from lowbit_core.pairs import DEFAULT_MAX_BITS, parse_pair
    from quant.models.user import is_model_spec

    check_output_path(out, "train output directory", directory=True)
    w_bits, a_bits = parse_pair(bits, DEFAULT_MAX_BITS)
    options: dict[str, object] = {}
    if lam is not None:
        if method != "qgt":
            raise QuantInputError(f"--lam applies to --method qgt only, not {method}")
        options["lam"] = lam
    if components is not None:
        if method != "dgms":
            raise QuantInputError(f"--components applies to --method dgms only, not {method}")
        options["components"] = components
    if data is None and (is_model_spec(model) or weights is not None):
        raise QuantInputError(
            f"model {model!r}: your own model needs --data (an .npz with train_x, train_y, test_x, test_y and calib_x)"
        )
    if data is not None:
        _, result = train_user(
            model,
            data,
            method,
            w_bits,
            a_bits,
            weights=weights,
            epochs=epochs,
            lr=lr,
            seed=seed,
            out=out,
            progress=progress,
            options=options,
        )
    else:
        _, result = train_builtin(
            model, method, w_bits, a_bits, epochs=epochs, lr=lr, seed=seed, out=out, progress=progress, options=options
        )
    typer.echo(
        f"{model} {method} {bits} ({result.epochs} epochs): {_accuracy_summary(result)} "
        f"({result.float_size_bits / result.weight_size_bits:.1f}x smaller than float), {result.seconds:.1f} s"
    )
    typer.echo(f"wrote {out}/model.npz, meta.json, history.csv, metrics.json")


@app.command("quant-table", epilog=epilog("quant-table"))
def quant_table_cmd(
    out: Annotated[Path, typer.Option(help="Directory for cells/*.json (resumable), quant_table.csv and .md.")],
    models: Annotated[
        str,
        typer.Option(
            help="Comma-separated built-in models (digits-cnn, mnist1d-cnn, digits-resnet, digits-mobilenet)."
        ),
    ] = "digits-cnn,mnist1d-cnn",
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated: rtn, gpfq, gpfq-paper, ptq-sl (per-channel), gptq, ptq-sl-4x2, qat, qgt, dgms."
        ),
    ] = "rtn,gpfq,gpfq-paper,ptq-sl,ptq-sl-4x2,qat,qgt,dgms",
    bits: Annotated[str, typer.Option(help="Comma-separated weight bits (activations are 8-bit).")] = "2,3,4",
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs of the training-time methods.")] = 20,
    seeds: Annotated[
        str, typer.Option(help="Comma-separated seeds (pretrained model and fine-tuning); the table shows means.")
    ] = "0",
    replace: Annotated[
        bool,
        typer.Option(
            help="Rebuild a table in --out made from other seeds, epochs or pretrained weights (refused without it)."
        ),
    ] = False,
    chips: Annotated[
        str,
        typer.Option(
            help="Comma-separated sim presets or chip YAMLs: adds each model's "
            "latency and energy per inference at every bit width."
        ),
    ] = "",
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Run the cells on Dask: local:N (N worker processes here) "
            "or a scheduler address tcp://host:port. Default: in "
            "this process, one cell after another."
        ),
    ] = None,
) -> None:
    """The results table of docs/quant.md: method x bits x model -> accuracy, KiB, reduction vs float (and sim
    latency / energy with --chips)."""
    from experiments.quant_table import build_table
    from lowbit_core.files import check_output_path

    check_output_path(out, "quant-table output directory", directory=True)

    def parse_ints(text: str, option: str) -> list[int]:
        try:
            return [int(b) for b in text.split(",") if b.strip()]
        except ValueError:
            raise QuantInputError(f"bad {option} {text!r}: give integers such as 2,3,4") from None

    def report(cell: dict, cached: bool) -> None:
        typer.echo(
            f"{cell['model']} {cell['method']} w{cell['w_bits']}a{cell['a_bits']} seed {cell['seed']}: "
            f"{cell['accuracy']:.2f}%, "
            f"{cell['size_bits'] / 8192:.2f} KiB" + (" (cached)" if cached else f", {cell['seconds']:.1f} s")
        )

    build_table(
        out,
        [m for m in models.split(",") if m.strip()],
        [m for m in methods.split(",") if m.strip()],
        parse_ints(bits, "--bits"),
        epochs=epochs,
        seeds=parse_ints(seeds, "--seeds"),
        replace=replace,
        on_cell=report,
        chips=[c for c in chips.split(",") if c.strip()],
        scheduler=scheduler,
    )
    typer.echo(f"wrote {out}/quant_table.csv and quant_table.md")


@app.command("sensitivity", epilog=epilog("sensitivity"))
def sensitivity_cmd(
    model: Annotated[
        str,
        typer.Option(
            help="Built-in model (digits-cnn, mnist1d-cnn, digits-resnet, "
            "digits-mobilenet), or your own: path/to/file.py:factory, "
            "package.module:factory or a .pt2 program (needs --data)."
        ),
    ],
    method: Annotated[
        str,
        typer.Option(
            help="sqnr (output noise-to-signal ratio, AIMET/Pandey), hessian "
            "(HAWQ trace x quantization error) or loss (measured increase)."
        ),
    ],
    pairs: Annotated[str, typer.Option(help="Bit pairs to score, e.g. w8a8,w4a8,w4a4.")],
    out: Annotated[Path, typer.Option(help="Sensitivity table to write: .csv or .parquet.")],
    quantizer: Annotated[str, typer.Option(help="Weight quantizer: rtn or gpfq.")] = "rtn",
    samples: Annotated[int, typer.Option(help="Calibration samples to use (at most; chosen by --seed).")] = 128,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed of the model's training, the sample choice and the Hessian probes.")
    ] = 0,
    data: Annotated[
        Path | None, typer.Option(help=".npz with calib_x (and calib_y, the labels hessian and loss need).")
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="state_dict (torch.save) for your own model.")] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Intra-op threads (default: every core); the table is bit-identical for one machine and thread count.",
        ),
    ] = None,
) -> None:
    """Score each layer's sensitivity to every bit pair and write the sensitivity table."""
    import time

    from experiments.user_inputs import load_model_and_data
    from lowbit_core.pairs import DEFAULT_MAX_BITS, format_pair, parse_pairs
    from quant.sensitivity import METHODS, QUANTIZERS, check_table_path, sensitivity_table, write_sensitivity

    check_table_path(out)
    bit_pairs = parse_pairs(pairs, DEFAULT_MAX_BITS)
    for label, value, allowed in (("method", method, METHODS), ("quantizer", quantizer, QUANTIZERS)):
        if value not in allowed:
            raise QuantInputError(f"unknown {label} {value!r} (allowed: {', '.join(allowed)})")
    if samples < 1:
        raise QuantInputError(f"--samples must be at least 1, got {samples}")
    inputs = load_model_and_data(model, data, weights, seed)
    if method != "sqnr" and inputs.calib_y is None:
        raise QuantInputError(f"--method {method} needs labels: give calib_y in --data, or use --method sqnr")
    start = time.perf_counter()
    frame = sensitivity_table(
        inputs.model,
        inputs.calib_x,
        bit_pairs,
        method,
        calib_y=inputs.calib_y,
        quantizer=quantizer,
        n_samples=samples,
        seed=seed,
        progress=True,
        threads=threads,
    )
    write_sensitivity(frame, out)
    seconds = time.perf_counter() - start
    totals = frame.groupby(["w_bits", "a_bits"], sort=False)["sensitivity"].sum()
    lo, hi = totals.idxmin(), totals.idxmax()
    typer.echo(
        f"{model} {method} ({quantizer}): {frame.layer.nunique()} layers in {frame.group.nunique()} groups "
        f"x {len(bit_pairs)} pairs on {min(samples, len(inputs.calib_x))} samples in {seconds:.1f} s; "
        f"summed sensitivity {totals[lo]:.3g} ({format_pair(lo)}) to {totals[hi]:.3g} ({format_pair(hi)}); "
        f"wrote {len(frame)} rows to {out}"
    )


rtl_app = typer.Typer(help="The RTL: synthesis areas and Verilator-verified GEMMs and layers.", no_args_is_help=True)
app.add_typer(rtl_app, name="rtl")


@rtl_app.command("synth", epilog=epilog("rtl synth"))
def rtl_synth_cmd(
    out: Annotated[Path | None, typer.Option(help="Also write the table as .csv or .parquet.")] = None,
    no_cache: Annotated[bool, typer.Option(help="Re-run yosys even when a cached result matches.")] = False,
) -> None:
    """Synthesize the PEs and the requantization unit with yosys; cell counts and NAND2-equivalent areas."""
    from lowbit_core.files import check_output_path
    from lowbit_core.tables import TABLE_SUFFIXES, write_table
    from rtl.synth import area_markdown, area_table

    if out is not None:
        check_output_path(out, "area table", suffixes=TABLE_SUFFIXES)
    table = area_table(use_cache=not no_cache)
    typer.echo(area_markdown(table))
    if out is not None:
        write_table(table, out)
        typer.echo(f"wrote {out}")


def _parse_array(text: str) -> tuple[int, int]:
    from rtl.tools import RtlError

    rows, _, cols = text.lower().partition("x")
    if not (rows.isdigit() and cols.isdigit()) or int(rows) < 1 or int(cols) < 1:
        raise RtlError(f"bad --array {text!r}: write ROWSxCOLS, e.g. 8x8")
    return int(rows), int(cols)


@rtl_app.command("gemm", epilog=epilog("rtl gemm"))
def rtl_gemm_cmd(
    m: Annotated[int, typer.Option("--m", min=1, help="Rows of A (activations), e.g. output pixels.")],
    k: Annotated[int, typer.Option("--k", min=1, help="Reduction length.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Columns of B (weights), e.g. output channels.")],
    pair: Annotated[str, typer.Option(help="Weight and activation bits, e.g. w4a4.")] = "w8a8",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random operands and stream gaps.")] = 0,
    array: Annotated[str, typer.Option(help="Array shape ROWSxCOLS.")] = "8x8",
    pe_kind: Annotated[
        str,
        typer.Option(
            "--pe", help="fixed, bitfusion, stripes (activation-serial) or loom (weight- and activation-serial)."
        ),
    ] = "bitfusion",
    sim: Annotated[str, typer.Option("--sim", help="verilator or icarus.")] = "verilator",
    gaps: Annotated[float, typer.Option(help="Probability of an input gap / output stall per cycle.")] = 0.0,
    mapping: Annotated[
        str | None,
        typer.Option(
            help="Loop order and stream tile ORDER[:TILE_M] as in a cost table's loop_order and tile_m, e.g. MKN:16 "
            "(default NKM, SCALE-Sim's untiled schedule); the tile must be one sim's mapper offers."
        ),
    ] = None,
    weight_preload: Annotated[
        str,
        typer.Option(
            help="serial (SCALE-Sim: a fold's weights load before it streams) or overlapped (double-buffered weight "
            "registers: the next fold's weights load while one streams; os: the next fold starts while one "
            "drains)."
        ),
    ] = "serial",
    dataflow: Annotated[
        str,
        typer.Option(
            help="ws (weight-stationary), os (output-stationary: mappings NMK or MNK, no stream tiles) or is "
            "(input-stationary: the activations stay, the weights stream; fixed and bitfusion PEs; the tile "
            "cuts N)."
        ),
    ] = "ws",
) -> None:
    """Verify a random GEMM in RTL: mismatches against A@B and measured cycles against sim's prediction."""
    import json

    from lowbit_core.pairs import DEFAULT_MAX_BITS, parse_pair
    from rtl.gemm import check_gemm, random_operands, verify_gemm

    w_bits, a_bits = parse_pair(pair, DEFAULT_MAX_BITS)
    rows, cols = _parse_array(array)
    preload = weight_preload
    check_gemm(
        m,
        k,
        n,
        w_bits,
        a_bits,
        rows=rows,
        cols=cols,
        pe_kind=pe_kind,
        simulator=sim,
        gap_prob=gaps,
        stall_prob=gaps,
        mapping=mapping,
        preload=preload,
        dataflow=dataflow,
    )
    A, B = random_operands(m, k, n, w_bits, a_bits, seed)
    check = verify_gemm(
        A,
        B,
        w_bits,
        a_bits,
        rows=rows,
        cols=cols,
        pe_kind=pe_kind,
        simulator=sim,
        gap_prob=gaps,
        stall_prob=gaps,
        seed=seed,
        mapping=mapping,
        preload=preload,
        dataflow=dataflow,
    )
    for message in check.messages[:10]:
        typer.echo(message, err=True)
    typer.echo(
        f"{m}x{k} @ {k}x{n} {pair} on a {rows}x{cols} {dataflow} {pe_kind} array ({sim}, {check.loop_order} "
        f"with tiles of "
        f"{check.tile_m} rows, {preload} preload): {check.mismatches} mismatches over {check.macs:,} MACs; "
        f"cycles measured {check.measured_cycles:,}, sim predicts {check.predicted_cycles:,}"
        + ("" if check.ok else "  <-- DIFFERENT")
    )
    typer.echo(json.dumps({k_: v for k_, v in check.as_dict().items() if k_ != "messages"}))
    if not check.ok:
        raise typer.Exit(EXIT_MISMATCH)


@rtl_app.command("verify", epilog=epilog("rtl verify"))
def rtl_verify_cmd(
    export: Annotated[Path, typer.Option(help="Integer export directory (model.npz + meta.json).")],
    layer: Annotated[str, typer.Option(help="Layer name as in the export, e.g. 3.")],
    array: Annotated[str, typer.Option(help="Array shape ROWSxCOLS.")] = "8x8",
    pe_kind: Annotated[str, typer.Option("--pe", help="fixed, bitfusion, stripes or loom.")] = "fixed",
    sim: Annotated[str, typer.Option("--sim", help="verilator or icarus.")] = "verilator",
    images: Annotated[int, typer.Option(min=1, help="Test images whose golden codes feed the layer.")] = 2,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the stream gaps.")] = 0,
    gaps: Annotated[float, typer.Option(help="Probability of an input gap / output stall per cycle.")] = 0.0,
    mapping: Annotated[
        str | None,
        typer.Option(
            help="Loop order and stream tile ORDER[:TILE_M] as in a cost table's loop_order and tile_m, e.g. MKN:16 "
            "(default NKM, SCALE-Sim's untiled schedule); the tile must be one sim's mapper offers the layer."
        ),
    ] = None,
    weight_preload: Annotated[
        str,
        typer.Option(
            help="serial (SCALE-Sim) or overlapped (double-buffered weight registers; layers with one input block)."
        ),
    ] = "serial",
    dataflow: Annotated[
        str,
        typer.Option(help="ws (weight-stationary) or os (output-stationary: mappings NMK or MNK); is runs GEMMs only."),
    ] = "ws",
    data: Annotated[
        Path | None,
        typer.Option(
            help="The model's inputs (.npz: test_x, else calib_x; the first "
            "--images samples), for an export of your own model."
        ),
    ] = None,
) -> None:
    """Verify one exported layer in RTL: output codes against the golden model, busy cycles against sim."""
    import json

    from rtl.layer import check_run_arguments, verify_layer

    rows, cols = _parse_array(array)
    x = None
    if data is not None:
        from quant.user_data import load_user_data

        check_run_arguments(rows, cols, pe_kind, gaps, gaps, seed, images, sim, weight_preload, dataflow)
        inputs = load_user_data(data)
        x = (inputs.calib_x if inputs.test_x is None else inputs.test_x)[:images].numpy()
    check = verify_layer(
        export,
        layer,
        rows=rows,
        cols=cols,
        pe_kind=pe_kind,
        simulator=sim,
        images=images,
        x=x,
        gap_prob=gaps,
        stall_prob=gaps,
        seed=seed,
        mapping=mapping,
        preload=weight_preload,
        dataflow=dataflow,
    )
    for message in check.messages[:10]:
        typer.echo(message, err=True)
    typer.echo(
        f"layer {check.layer} ({check.kind}, M={check.M} K={check.K} N={check.N}, w{check.w_bits}"
        f"a{check.a_bits}, {check.n_v}x{check.n_h} blocks) on a {rows}x{cols} {dataflow} {pe_kind} array ({sim}, "
        f"{check.loop_order} with tiles of {check.tile_m}, {check.preload} preload): "
        f"{check.mismatches} mismatches over {check.M * check.N:,} output codes ({check.macs:,} MACs); "
        f"cycles measured {check.measured_cycles:,}, sim predicts {check.predicted_cycles:,}"
        + ("" if check.ok else "  <-- DIFFERENT")
    )
    typer.echo(json.dumps({k_: v for k_, v in check.as_dict().items() if k_ != "messages"}))
    if not check.ok:
        raise typer.Exit(EXIT_MISMATCH)


@app.command("demo", epilog=epilog("demo"))
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("results/demo"),
) -> None:
    """Run the main job on a built-in default and write tables and plots.

    Exits 1 if an RTL check of a chosen layer (digits CNN or residual net) finds a mismatch (codes or cycles),
    after writing everything.
    """
    import json

    from experiments.pipeline import run_demo
    from experiments.staging import staged_dir
    from lowbit_core.files import check_output_path

    check_output_path(out, "demo output directory", directory=True)

    with staged_dir(out, last=("summary.csv",)) as stage:
        run_demo(stage, shown_as=out)
    failed = False
    for part in ("search", "resnet"):
        check = json.loads((out / part / "rtl_check.json").read_text())
        if check["mismatches"] or check["measured_cycles"] != check["predicted_cycles"]:
            typer.echo(
                f"RTL check of layer {check['layer']} ({part}) found a mismatch: {check['mismatches']} output "
                f"codes, cycles measured {check['measured_cycles']} vs predicted {check['predicted_cycles']}",
                err=True,
            )
            failed = True
    if failed:
        raise typer.Exit(EXIT_MISMATCH)


# `lowbit --help` lists the verbs in the order their examples chain (experiments.examples); the rtl group follows.
_CHAIN = list(dict.fromkeys(verb for verb, _ in EXAMPLES if " " not in verb))
app.registered_commands.sort(key=lambda info: _CHAIN.index(info.name) if info.name in _CHAIN else len(_CHAIN))


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


# typer >= 0.20 vendors its own click; catch both families of exceptions
_EXITS = tuple({click.exceptions.Exit, typer.Exit})
_ABORTS = tuple({click.exceptions.Abort, typer.Abort})
_USAGE = tuple({click.ClickException, getattr(typer.exceptions, "TyperException", click.ClickException)})

#: Exit statuses (README, "Exit status"): success, a verification that ran and found a mismatch, bad input or a
#: user-fixable cause, an internal error (a bug: the traceback is printed), interrupted.
EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    sys.stderr.write(f"lowbit: error: {_one_line(message)}\n")
    return code


def _interrupted() -> int:
    sys.stderr.write("lowbit: interrupted\n")
    return EXIT_INTERRUPTED


def _run(argv: list[str] | None) -> int:
    """Run the app and translate every outcome into an exit status (and at most one line on stderr)."""
    try:
        returned = app(args=argv, prog_name="lowbit", standalone_mode=False)
    except _EXITS as exc:
        code = int(getattr(exc, "exit_code", 0) or 0)
        return _interrupted() if code == EXIT_INTERRUPTED else code
    except (*_ABORTS, KeyboardInterrupt):
        return _interrupted()
    except _USAGE as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `lowbit`: show the help
            sys.stdout.write(exc.format_message() + "\n")
            return EXIT_OK
        return _fail(exc.format_message())
    except LowbitError as exc:  # every package's errors derive from it; each kind carries its exit status
        return _interrupted() if _caused_by_interrupt(exc) else _fail(str(exc), exc.exit_status)
    except MemoryError:
        return _fail("not enough memory for this input; reduce its size")
    except OSError as exc:  # missing or unwritable paths, a file where a directory is needed, a full disk
        if _caused_by_interrupt(exc):
            return _interrupted()
        where = exc.filename if exc.filename is not None else "output"
        return _fail(f"{where}: {exc.strerror or exc}")
    # typer returns the status of an Exit it caught (Ctrl-C becomes 130) instead of raising it
    code = returned if isinstance(returned, int) and not isinstance(returned, bool) else EXIT_OK
    return _interrupted() if code == EXIT_INTERRUPTED else code


def _show_library_progress() -> None:
    """Show the progress messages the libraries log under ``lowbit.*`` (RTL builds, synthesis) on a terminal."""
    import logging

    logger = logging.getLogger("lowbit")
    if sys.stderr.isatty() and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _caused_by_interrupt(exc: BaseException) -> bool:
    """True when Ctrl-C is somewhere in ``exc``'s chain (an extension module whose import was interrupted raises
    ``ImportError: initialization failed`` from the ``KeyboardInterrupt``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def main(argv: list[str] | None = None) -> None:
    """Console entry point: 0 success, 1 mismatch found, 2 bad input (one line on stderr), 130 interrupted.

    Any other exception is a bug in lowbit: its traceback is printed and the status is 3, so that 1 keeps
    meaning "a verification found a mismatch".
    """
    _show_library_progress()
    try:
        code = _run(argv)
    except KeyboardInterrupt:
        code = _interrupted()
    except Exception as exc:  # noqa: BLE001 - an internal error, not the user's: say so, keep the traceback
        if _caused_by_interrupt(exc):
            code = _interrupted()
            sys.exit(code)
        import traceback

        traceback.print_exc()
        code = _fail("internal error (a bug in lowbit; the traceback is above)", EXIT_INTERNAL)
    if code != EXIT_OK:  # success returns normally (status 0), so callers in-process need not catch SystemExit
        sys.exit(code)


def entry() -> None:
    """The ``lowbit`` script and ``python -m experiments.cli``: :func:`main`, and an interrupted run ends with
    status 130 as soon as its clean-up is done.  (``os._exit`` skips the interpreter's finalization: after a
    Ctrl-C that passed through an extension module's initialization, CPython otherwise re-raises SIGINT at exit
    and the status becomes -2.)"""
    try:
        main()
    except SystemExit as exc:
        if exc.code != EXIT_INTERRUPTED:
            raise
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    entry()

"""The ``lowbit`` command line.  Every error is one line on stderr with exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer

from quant.errors import QuantInputError
from rtl.tools import RtlError
from search.errors import SearchInputError
from sim.errors import InputError

if TYPE_CHECKING:
    from experiments.quantize import QuantResult
    from experiments.train import TrainResult

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
    workload: Annotated[str, typer.Option(help="Zoo name, built-in model (digits-cnn, mnist1d-cnn), SCALE-Sim "
                                               "topology .csv, .onnx or workload .yaml.")],
    out: Annotated[Path, typer.Option(help="Cost table to write: .csv or .parquet.")],
    pairs: Annotated[str | None, typer.Option(help="Bit pairs, e.g. w8a8,w4a4 (default: all the chip supports).")]
    = None,
    coupled: Annotated[bool, typer.Option(help="Store each output at its consumer's activation width: adds "
                                               "out_bits rows for the exact coupling of `lowbit solve`.")] = False,
    in_blocks: Annotated[int | None, typer.Option(
        "--in-blocks", help="PTQ-SL input blocks n_H: each weighted layer runs one reduction per block of input "
                            "channels (clamped to its channels); default: the workload's own (1).")] = None,
) -> None:
    """Simulate a workload on a chip and write the per-layer cost table."""
    from experiments.workloads import resolve_workload
    from sim import load_chip, simulate
    from sim.area import chip_area
    from sim.io import write_table

    chip_config = load_chip(chip)
    wl = resolve_workload(workload)
    if in_blocks is not None:
        wl = wl.with_in_blocks(in_blocks)
    frame = simulate(chip_config, wl, pairs, coupled=coupled)
    write_table(frame, out)
    area = chip_area(chip_config)
    if area.total_mm2 == area.total_mm2:  # not NaN
        typer.echo(f"area: {area.total_mm2:.3f} mm^2 (PEs {area.pe_mm2:.3f}, requant {area.requant_mm2:.3f}, "
                   f"SRAM {area.sram_mm2:.3f})")
    else:
        typer.echo("area: n/a (no synthesized figure for this PE kind)")
    plain = frame[frame.out_bits == frame.a_bits] if coupled else frame
    totals = plain.groupby(["w_bits", "a_bits"], sort=False)[["total_cycles", "energy_pj"]].sum()
    for (w, a), row in totals.iterrows():
        typer.echo(f"w{w}a{a}: {int(row.total_cycles):,} cycles, {row.energy_pj / 1e6:,.1f} uJ")
    typer.echo(f"wrote {len(frame)} rows to {out}")


CostsOption = Annotated[Path, typer.Option(
    help="Cost table (.csv/.parquet): layer, w_bits, a_bits, the budgeted columns; optional name, group, "
         "out_bits (coupled), consumer.")]
SensitivityOption = Annotated[Path, typer.Option(help="Sensitivity table: layer, w_bits, a_bits, sensitivity.")]
BudgetOption = Annotated[list[str] | None, typer.Option(
    help="COLUMN=VALUE on any additive cost column; VALUE absolute or a percentage of the most expensive uniform "
         "assignment (60%). Repeat for several budgets (held at every point by `pareto`).")]


@app.command("solve", epilog="Example: lowbit solve --costs costs.csv --sensitivity sens.csv "
                             "--budget latency_us=1200 --budget energy_pj=60% --out results/assign")
def solve_cmd(
    costs: CostsOption,
    sensitivity: SensitivityOption,
    out: Annotated[Path, typer.Option(help="Directory for assignment.csv and assignment.json.")],
    budget: BudgetOption = None,
    pairs: Annotated[str | None, typer.Option(help="Restrict the candidates, e.g. w8a8,w4a4.")] = None,
    time_limit: Annotated[float | None, typer.Option(help="Seconds; the gap is reported if it stops early.")]
    = None,
) -> None:
    """Pick each layer's bit pair: minimum total sensitivity under all budgets at once (exact ILP)."""
    from search import AssignmentModel, build_problem
    from search.assignment import write_assignment
    from search.budgets import parse_budgets, resolve_budgets
    from search.tables import read_table
    from sim.pairs import parse_pairs

    asked = parse_budgets(budget or [])
    problem = build_problem(read_table(costs, "cost table"), read_table(sensitivity, "sensitivity table"),
                            list(asked), pairs=parse_pairs(pairs) if pairs else None)
    limits = resolve_budgets(problem, asked)
    solution = AssignmentModel(problem, list(limits)).solve(limits, time_limit=time_limit)
    write_assignment(solution, out, extra={"costs": str(costs), "sensitivity_table": str(sensitivity)})
    typer.echo(f"{solution.status} (gap {solution.gap:.2g}) in {solution.solve_seconds:.3f} s: total sensitivity "
               f"{solution.sensitivity:.6g} over {problem.n_layers} layers, {problem.n_units} units")
    for name, b in solution.budgets().items():
        typer.echo(f"  {name}: {b['used']:.6g} of {b['limit']:.6g} (slack {b['slack']:.3g})")
    counts = solution.assignment().groupby(["w_bits", "a_bits"]).size().sort_index(ascending=False)
    typer.echo("  pairs: " + ", ".join(f"w{w}a{a} x{n}" for (w, a), n in counts.items()))
    typer.echo(f"wrote {out}/assignment.csv and assignment.json")


@app.command("pareto", epilog="Example: lowbit pareto --costs costs.csv --sensitivity sens.csv --x latency_us "
                              "--model digits-cnn --quantizer rtn --out results/pareto")
def pareto_cmd(
    costs: CostsOption,
    sensitivity: SensitivityOption,
    out: Annotated[Path, typer.Option(help="Directory for points.csv, quality.csv, pareto.json and the plot.")],
    x: Annotated[str, typer.Option(help="Cost column swept by the epsilon-constraint method.")] = "latency_us",
    y: Annotated[str | None, typer.Option(help="A second swept cost column (a grid over both).")] = None,
    points: Annotated[int, typer.Option(help="Number of epsilon values.")] = 50,
    budget: BudgetOption = None,
    model: Annotated[str | None, typer.Option(help="Built-in model to measure every point on: digits-cnn or "
                                                   "mnist1d-cnn (layer names must match the tables).")] = None,
    quantizer: Annotated[str, typer.Option(help="Quantizer applied for measuring: rtn, gpfq or ptq-sl.")] = "rtn",
    greedy_cost: Annotated[str | None, typer.Option(help="Cost column of the greedy baseline (default: --x; "
                                                         "bops for AIMET's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the model and calibration sampling.")] = 0,
) -> None:
    """Exact Pareto front of sensitivity against cost, with greedy and uniform baselines, measured."""
    from experiments.pareto_study import run_pareto_study
    from search.budgets import parse_budgets, resolve_budgets
    from search.problem import build_problem
    from search.tables import read_table

    cost_table = read_table(costs, "cost table")
    sens_table = read_table(sensitivity, "sensitivity table")
    asked = parse_budgets(budget or [])
    limits = resolve_budgets(build_problem(cost_table, sens_table, list(asked)), asked) if asked else {}
    study = run_pareto_study(cost_table, sens_table, out, x=x, y=y, n_points=points, limits=limits,
                             model_name=model, method=quantizer, seed=seed, greedy_cost=greedy_cost, progress=True)
    counts = study.points.kind.value_counts()
    typer.echo(f"{counts.get('ilp', 0)} ILP front points, {counts.get('greedy', 0)} greedy, "
               f"{counts.get('uniform', 0)} uniform")
    if study.quality is not None:
        gap = study.quality["ilp_minus_greedy_accuracy"].dropna()
        typer.echo(f"measured accuracy, ILP minus greedy over {len(gap)} {x} budgets: min {gap.min():+.2f}, "
                   f"mean {gap.mean():+.2f} points")
    typer.echo(f"wrote {', '.join(str(p) for p in study.paths.values())}")


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


def _accuracy_summary(r: QuantResult | TrainResult) -> str:
    """One line of a quantize/train result: float, fake-quant and integer accuracy, agreement, weight KiB."""
    return (f"float {r.float_accuracy:.2f}%, fake-quant {r.fakequant_accuracy:.2f}%, integer {r.integer_accuracy:.2f}% "
            f"(agreement {r.integer_agreement:.1f}%), weights {r.weight_size_bits / 8192:.1f} KiB")


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
    typer.echo(f"{model} {method} {bits} ({granularity}): {_accuracy_summary(result)}")
    typer.echo(f"wrote {out}/model.npz, meta.json, metrics.json")


@app.command("train", epilog="Example: lowbit train --model digits-cnn --method qgt --bits w2a8 --epochs 20 "
                             "--out results/qgt_digits_w2a8")
def train_cmd(
    model: Annotated[str, typer.Option(help="Built-in model: digits-cnn or mnist1d-cnn.")],
    method: Annotated[str, typer.Option(help="qat (fake-quant + straight-through estimator, the baseline), qgt "
                                             "(regularized toward the b-bit grid) or dgms (Gaussian-mixture "
                                             "weight sharing, snapped to a uniform grid).")],
    bits: Annotated[str, typer.Option(help="Weight and activation bits, e.g. w2a8 (2..8 each).")],
    out: Annotated[Path, typer.Option(help="Directory for the integer export, history.csv and metrics.json.")],
    epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs (default 10).")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam's peak learning rate, cosine decay (default 1e-3).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the pretrained model and of every choice in fine-tuning.")]
    = 0,
    lam: Annotated[float | None, typer.Option(help="qgt: the regularizer's weight lambda (default: the "
                                                   "method's).")] = None,
    components: Annotated[int | None, typer.Option(help="dgms: mixture components K; must be 2^w_bits "
                                                        "(the zero component included).")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
) -> None:
    """Fine-tune a built-in model with training-time quantization, export it as integers, and measure it."""
    from experiments.train import train_builtin
    from sim.pairs import parse_pair

    w_bits, a_bits = parse_pair(bits)
    options: dict[str, object] = {}
    if lam is not None:
        if method != "qgt":
            raise QuantInputError(f"--lam applies to --method qgt only, not {method}")
        options["lam"] = lam
    if components is not None:
        if method != "dgms":
            raise QuantInputError(f"--components applies to --method dgms only, not {method}")
        options["components"] = components
    _, result = train_builtin(model, method, w_bits, a_bits, epochs=epochs, lr=lr, seed=seed, out=out,
                              progress=progress, options=options)
    typer.echo(f"{model} {method} {bits} ({result.epochs} epochs): {_accuracy_summary(result)} "
               f"({result.float_size_bits / result.weight_size_bits:.1f}x smaller than float), {result.seconds:.1f} s")
    typer.echo(f"wrote {out}/model.npz, meta.json, history.csv, metrics.json")


@app.command("quant-table", epilog="Example: lowbit quant-table --out results/quant_table --bits 2,3,4")
def quant_table_cmd(
    out: Annotated[Path, typer.Option(help="Directory for cells/*.json (resumable), quant_table.csv and .md.")],
    models: Annotated[str, typer.Option(help="Comma-separated built-in models.")] = "digits-cnn,mnist1d-cnn",
    methods: Annotated[str, typer.Option(help="Comma-separated: rtn, gpfq, gpfq-paper, ptq-sl (per-channel), "
                                              "ptq-sl-4x2, qat, qgt, dgms.")]
    = "rtn,gpfq,gpfq-paper,ptq-sl,ptq-sl-4x2,qat,qgt,dgms",
    bits: Annotated[str, typer.Option(help="Comma-separated weight bits (activations are 8-bit).")] = "2,3,4",
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs of the training-time methods.")] = 20,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (pretrained model and fine-tuning); the "
                                            "table shows means.")] = "0",
) -> None:
    """The results table of docs/quant.md: method x bits x model -> accuracy, KiB, reduction vs float."""
    from experiments.quant_table import build_table

    def parse_ints(text: str, option: str) -> list[int]:
        try:
            return [int(b) for b in text.split(",") if b.strip()]
        except ValueError:
            raise QuantInputError(f"bad {option} {text!r}: give integers such as 2,3,4") from None

    def report(cell: dict, cached: bool) -> None:
        typer.echo(f"{cell['model']} {cell['method']} w{cell['w_bits']}a{cell['a_bits']} seed {cell['seed']}: "
                   f"{cell['accuracy']:.2f}%, "
                   f"{cell['size_bits'] / 8192:.2f} KiB" + (" (cached)" if cached else f", {cell['seconds']:.1f} s"))

    build_table(out, [m for m in models.split(",") if m.strip()], [m for m in methods.split(",") if m.strip()],
                parse_ints(bits, "--bits"), epochs=epochs, seeds=parse_ints(seeds, "--seeds"), on_cell=report)
    typer.echo(f"wrote {out}/quant_table.csv and quant_table.md")


@app.command("sensitivity", epilog="Example: lowbit sensitivity --model digits-cnn --method sqnr "
                                   "--pairs w8a8,w4a8,w4a4,w2a2 --out results/sens.csv")
def sensitivity_cmd(
    model: Annotated[str, typer.Option(help="Built-in model: digits-cnn or mnist1d-cnn.")],
    method: Annotated[str, typer.Option(help="sqnr (output noise-to-signal ratio, AIMET/Pandey), hessian "
                                             "(HAWQ trace x quantization error) or loss (measured increase).")],
    pairs: Annotated[str, typer.Option(help="Bit pairs to score, e.g. w8a8,w4a8,w4a4.")],
    out: Annotated[Path, typer.Option(help="Sensitivity table to write: .csv or .parquet.")],
    quantizer: Annotated[str, typer.Option(help="Weight quantizer: rtn or gpfq.")] = "rtn",
    samples: Annotated[int, typer.Option(help="Calibration samples to use (at most; chosen by --seed).")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the model's training, the sample choice and the Hessian "
                                           "probes.")] = 0,
) -> None:
    """Score each layer's sensitivity to every bit pair and write the sensitivity table."""
    import time

    from quant.models import get_model, model_split
    from quant.sensitivity import METHODS, QUANTIZERS, TABLE_SUFFIXES, sensitivity_table, write_sensitivity
    from sim.pairs import format_pair, parse_pairs

    bit_pairs = parse_pairs(pairs)
    for label, value, allowed in (("method", method, METHODS), ("quantizer", quantizer, QUANTIZERS)):
        if value not in allowed:
            raise QuantInputError(f"unknown {label} {value!r} (allowed: {', '.join(allowed)})")
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise QuantInputError(f"{out}: unknown table format {out.suffix or '(none)'!r}; use .csv or .parquet")
    if samples < 1:
        raise QuantInputError(f"--samples must be at least 1, got {samples}")
    start = time.perf_counter()
    net = get_model(model, seed=seed)
    split = model_split(model)
    frame = sensitivity_table(net, split.calib_x, bit_pairs, method, calib_y=split.calib_y, quantizer=quantizer,
                              n_samples=samples, seed=seed, progress=True)
    write_sensitivity(frame, out)
    seconds = time.perf_counter() - start
    totals = frame.groupby(["w_bits", "a_bits"], sort=False)["sensitivity"].sum()
    lo, hi = totals.idxmin(), totals.idxmax()
    typer.echo(f"{model} {method} ({quantizer}): {frame.layer.nunique()} layers in {frame.group.nunique()} groups "
               f"x {len(bit_pairs)} pairs on {min(samples, len(split.calib_x))} samples in {seconds:.1f} s; "
               f"summed sensitivity {totals[lo]:.3g} ({format_pair(lo)}) to {totals[hi]:.3g} ({format_pair(hi)}); "
               f"wrote {len(frame)} rows to {out}")


rtl_app = typer.Typer(help="The RTL: synthesis areas and Verilator-verified GEMMs and layers.", no_args_is_help=True)
app.add_typer(rtl_app, name="rtl")


@rtl_app.command("synth", epilog="Example: lowbit rtl synth --out results/area.csv")
def rtl_synth_cmd(
    out: Annotated[Path | None, typer.Option(help="Also write the table as .csv or .parquet.")] = None,
    no_cache: Annotated[bool, typer.Option(help="Re-run yosys even when a cached result matches.")] = False,
) -> None:
    """Synthesize the PEs and the requantization unit with yosys; cell counts and NAND2-equivalent areas."""
    from rtl.synth import area_markdown, area_table
    from sim.io import write_table

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


@rtl_app.command("gemm", epilog="Example: lowbit rtl gemm --m 16 --k 64 --n 24 --pair w4a4 --seed 1 --array 8x8")
def rtl_gemm_cmd(
    m: Annotated[int, typer.Option("--m", min=1, help="Rows of A (activations), e.g. output pixels.")],
    k: Annotated[int, typer.Option("--k", min=1, help="Reduction length.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Columns of B (weights), e.g. output channels.")],
    pair: Annotated[str, typer.Option(help="Weight and activation bits, e.g. w4a4.")] = "w8a8",
    seed: Annotated[int, typer.Option(help="Seed of the random operands and stream gaps.")] = 0,
    array: Annotated[str, typer.Option(help="Array shape ROWSxCOLS.")] = "8x8",
    pe: Annotated[str, typer.Option(help="fixed or bitfusion.")] = "bitfusion",
    sim: Annotated[str, typer.Option("--sim", help="verilator or icarus.")] = "verilator",
    gaps: Annotated[float, typer.Option(help="Probability of an input gap / output stall per cycle.")] = 0.0,
) -> None:
    """Verify a random GEMM in RTL: mismatches against A@B and measured cycles against sim's prediction."""
    import json

    from rtl.gemm import random_operands, verify_gemm
    from sim.pairs import parse_pair

    w_bits, a_bits = parse_pair(pair)
    rows, cols = _parse_array(array)
    A, B = random_operands(m, k, n, w_bits, a_bits, seed)
    check = verify_gemm(A, B, w_bits, a_bits, rows=rows, cols=cols, pe=pe, simulator=sim, gap_prob=gaps,
                        stall_prob=gaps, seed=seed)
    for message in check.messages[:10]:
        typer.echo(message, err=True)
    typer.echo(f"{m}x{k} @ {k}x{n} {pair} on a {rows}x{cols} {pe} array ({sim}): {check.mismatches} mismatches "
               f"over {check.macs:,} MACs; cycles measured {check.measured_cycles:,}, sim predicts "
               f"{check.predicted_cycles:,}" + ("" if check.ok else "  <-- DIFFERENT"))
    typer.echo(json.dumps({k_: v for k_, v in check.as_dict().items() if k_ != "messages"}))
    if not check.ok:
        raise typer.Exit(1)


@rtl_app.command("verify", epilog="Example: lowbit rtl verify --export results/export --layer 3 --array 8x8 "
                                  "--pe fixed")
def rtl_verify_cmd(
    export: Annotated[Path, typer.Option(help="Integer export directory (model.npz + meta.json).")],
    layer: Annotated[str, typer.Option(help="Layer name as in the export, e.g. 3.")],
    array: Annotated[str, typer.Option(help="Array shape ROWSxCOLS.")] = "8x8",
    pe: Annotated[str, typer.Option(help="fixed or bitfusion.")] = "fixed",
    sim: Annotated[str, typer.Option("--sim", help="verilator or icarus.")] = "verilator",
    images: Annotated[int, typer.Option(min=1, help="Test images whose golden codes feed the layer.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the stream gaps.")] = 0,
    gaps: Annotated[float, typer.Option(help="Probability of an input gap / output stall per cycle.")] = 0.0,
) -> None:
    """Verify one exported layer in RTL: output codes against the golden model, busy cycles against sim."""
    import json

    from rtl.layer import verify_layer

    rows, cols = _parse_array(array)
    check = verify_layer(export, layer, rows=rows, cols=cols, pe=pe, simulator=sim, images=images,
                         gap_prob=gaps, stall_prob=gaps, seed=seed)
    for message in check.messages[:10]:
        typer.echo(message, err=True)
    passes = "" if check.n_h == 1 else f" in {check.n_h} passes ({', '.join(map(str, check.pass_measured))})"
    typer.echo(f"layer {check.layer} ({check.kind}, M={check.M} K={check.K} N={check.N}, w{check.w_bits}"
               f"a{check.a_bits}, {check.n_v}x{check.n_h} blocks) on a {rows}x{cols} {pe} array ({sim}): "
               f"{check.mismatches} mismatches over {check.M * check.N:,} output codes ({check.macs:,} MACs); "
               f"cycles measured {check.measured_cycles:,}{passes}, sim predicts {check.predicted_cycles:,}"
               + ("" if check.ok else "  <-- DIFFERENT"))
    typer.echo(json.dumps({k_: v for k_, v in check.as_dict().items() if k_ != "messages"}))
    if not check.ok:
        raise typer.Exit(1)


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
    except (InputError, QuantInputError, SearchInputError, RtlError) as exc:
        sys.stderr.write(f"lowbit: error: {_one_line(str(exc))}\n")
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        sys.stderr.write(f"lowbit: error: {_one_line(f'{exc.filename}: {exc.strerror}')}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()

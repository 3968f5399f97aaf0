"""A corpus of bad input to ``solve``, ``pareto``, ``quantize``, ``sensitivity``, ``rtl gemm`` and ``rtl verify``.

Every case must be refused by the CLI as bad input (:func:`cli_run.assert_bad_input`: exit 2, one ``lowbit: error:``
line naming the cause, no traceback, nothing under the case's directory changed), and must be refused *before the
work it would waste*: the work is replaced by a tripwire that raises :class:`WorkStarted` (not an ``Exception``, so
the CLI cannot turn it into an exit status).  No case builds RTL: ``rtl.runner.run_bench`` is always a tripwire.

Damaged exports start from one real ``digits-cnn`` w4a8 RTN export per module; each case copies and damages it.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_run import assert_bad_input, run_cli

#: Modules that bind a tripwired function by name (``from quant.fakequant import calibrate_activations``): each keeps
#: the object it finds at its first import, so they are all imported before any tripwire is set -- otherwise a module
#: first imported inside a case would keep the tripwire for the rest of the session.
BINDING_MODULES = (
    "experiments.cli",
    "experiments.digits_exports",
    "experiments.docs_numbers",
    "experiments.measure",
    "experiments.minilm_study",
    "experiments.pareto_study",
    "experiments.pipeline",
    "experiments.ptq_sl_study",
    "experiments.quantize",
    "experiments.real_demo",
    "experiments.train",
    "experiments.training_study",
    "experiments.user_inputs",
    "experiments.workloads",
    "quant.dgms",
    "quant.models",
    "quant.qat",
    "quant.qgt",
    "quant.sensitivity",
    "rtl",
    "rtl.coverage",
    "experiments.rtl_coverage",
    "search",
)
for _module in BINDING_MODULES:
    importlib.import_module(_module)

#: Work a refused case must not reach: dotted path of a module attribute -> what it stands for.
SOLVE = "search.exact.ExactSolver.solve"
FRONT = "experiments.pareto_study.pareto_front"
MODEL = "quant.models.get_model"
CALIBRATE = "quant.fakequant.calibrate_activations"
SENSITIVITY = "quant.sensitivity.sensitivity_table"
BUILD = "rtl.runner.run_bench"


class WorkStarted(BaseException):
    """Raised by a tripwire: a refused input reached the work it should have been refused before."""


def _tripwire(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """Replace ``target`` (``package.module.attr`` or ``package.module.Class.method``) by a tripwire."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
        try:
            owner: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        break

    def tripped(*_args: object, **_kwargs: object) -> None:
        raise WorkStarted(f"{target} was called: the input was not refused before the work")

    monkeypatch.setattr(owner, parts[-1], tripped)


@pytest.fixture(autouse=True)
def _no_builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOWBIT_RTL_BUILD", str(tmp_path / "rtl-build"))  # any build directory shows as a change
    _tripwire(monkeypatch, BUILD)


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A digits-cnn cost table and a synthetic sensitivity table that falls with bits."""
    from experiments.workloads import resolve_workload
    from sim import simulate

    root = tmp_path_factory.mktemp("tables")
    costs = simulate("bitfusion_edge", resolve_workload("digits-cnn"), "w8a8,w4a8,w4a4")
    keys = costs[["layer", "name", "w_bits", "a_bits"]].drop_duplicates(["layer", "w_bits", "a_bits"])
    sens = keys.assign(sensitivity=(1.0 + keys.layer) * (4.0**-keys.w_bits + 4.0**-keys.a_bits))
    costs.to_csv(root / "costs.csv", index=False)
    sens.to_csv(root / "sens.csv", index=False)
    return root / "costs.csv", root / "sens.csv"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real integer export: digits-cnn, RTN, w4a8, per-channel (layers 0, 3, 7, 12)."""
    from experiments.quantize import quantize_builtin

    out = tmp_path_factory.mktemp("export") / "digits-w4a8"
    quantize_builtin("digits-cnn", "rtn", 4, 8, export_dir=out)
    return out


# ----------------------------------------------------------------------------------------------- search verbs
def _solve(extra: list[str]) -> Callable[[Path, Path, Path], list[str]]:
    return lambda costs, sens, root: [
        "solve",
        "--costs",
        str(costs),
        "--sensitivity",
        str(sens),
        "--budget",
        "latency_us=60%",
        *extra,
        "--out",
        str(root / "assign"),
    ]


def _pareto(extra: list[str]) -> Callable[[Path, Path, Path], list[str]]:
    return lambda costs, sens, root: [
        "pareto",
        "--costs",
        str(costs),
        "--sensitivity",
        str(sens),
        *extra,
        "--out",
        str(root / "pareto"),
    ]


SEARCH_CASES = {
    "solve-time-limit-negative": (_solve(["--time-limit=-1"]), "--time-limit", SOLVE),
    "solve-time-limit-nan": (_solve(["--time-limit", "nan"]), "--time-limit", SOLVE),
    "solve-time-limit-inf": (_solve(["--time-limit", "inf"]), "--time-limit", SOLVE),
    "solve-time-limit-zero": (_solve(["--time-limit", "0"]), "--time-limit", SOLVE),
    "pareto-points-huge": (_pareto(["--points", str(10**11)]), "n_points", FRONT),
    "pareto-points-above-limit": (_pareto(["--points", "10001"]), "10,000", FRONT),
    "pareto-seed-negative": (_pareto(["--seed", "-1"]), "seed", FRONT),
    "pareto-quantizer-unknown": (_pareto(["--model", "digits-cnn", "--quantizer", "nope"]), "quantizer", FRONT),
    "pareto-model-unknown": (_pareto(["--model", "no-such-model"]), "no-such-model", FRONT),
}


@pytest.mark.parametrize("case", sorted(SEARCH_CASES))
def test_search_bad_input(case: str, tables, tmp_path: Path, capsys, monkeypatch) -> None:
    argv, cause, work = SEARCH_CASES[case]
    _tripwire(monkeypatch, work)
    assert_bad_input(argv(*tables, tmp_path), capsys, tmp_path, cause)


# ------------------------------------------------------------------------------------------------ quant verbs
def _quantize(extra: list[str], method: str = "rtn", out: str = "q") -> Callable[[Path], list[str]]:
    return lambda root: [
        "quantize",
        "--model",
        "digits-cnn",
        "--method",
        method,
        "--bits",
        "w4a8",
        *extra,
        "--out",
        str(root / out),
    ]


def _sensitivity(extra: list[str], out: str = "sens.csv") -> Callable[[Path], list[str]]:
    return lambda root: [
        "sensitivity",
        "--model",
        "digits-cnn",
        "--method",
        "sqnr",
        "--pairs",
        "w8a8,w4a8",
        *extra,
        "--out",
        str(root / out),
    ]


QUANT_CASES = {
    # rtn and gpfq put the same blocks on every layer: the first layer too small is named with its size
    "quantize-granularity-rtn-far-beyond": (_quantize(["--granularity", "1000x1000"]), "layer 0 (16 output", CALIBRATE),
    "quantize-granularity-gpfq-beyond-last": (
        _quantize(["--granularity", "16x1"], "gpfq"),
        "layer 12 (10 output",
        CALIBRATE,
    ),
    # ptq-sl clamps a grid to smaller layers, but a grid no layer holds is refused
    "quantize-granularity-ptq-sl-far-beyond": (
        _quantize(["--granularity", "1000x1000"], "ptq-sl"),
        "n_V=1000",
        CALIBRATE,
    ),
    "quantize-granularity-zero": (_quantize(["--granularity", "0x2"], "ptq-sl"), "granularity", MODEL),
    "quantize-granularity-garbage": (_quantize(["--granularity", "4by2"]), "granularity", MODEL),
    "quantize-seed-negative": (_quantize(["--seed", "-1"]), "seed", MODEL),
    "quantize-method-unknown": (_quantize([], "nope"), "method", MODEL),
    "quantize-out-is-a-file": (_quantize([], out="a-file"), "a-file", MODEL),
    "sensitivity-out-is-a-directory": (_sensitivity([], out="a-dir.csv"), "is a directory", MODEL),
    "sensitivity-out-suffix": (_sensitivity([], out="sens.xlsx"), "unknown table format", MODEL),
    "sensitivity-seed-negative": (_sensitivity(["--seed", "-1"]), "seed", MODEL),
    "sensitivity-samples-zero": (_sensitivity(["--samples", "0"]), "samples", MODEL),
}


@pytest.mark.parametrize("case", sorted(QUANT_CASES))
def test_quant_bad_input(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    argv, cause, work = QUANT_CASES[case]
    (tmp_path / "a-file").write_text("not a directory\n")
    (tmp_path / "a-dir.csv").mkdir()
    _tripwire(monkeypatch, work)
    if work == CALIBRATE:  # refused once the layer sizes are known, before any quantization work
        _tripwire(monkeypatch, SENSITIVITY)
    assert_bad_input(argv(tmp_path), capsys, tmp_path, cause)


# -------------------------------------------------------------------------------------------------- rtl gemm
def _gemm(*extra: str, mkn: tuple[int, int, int] = (4, 4, 4)) -> list[str]:
    m, k, n = mkn
    return ["rtl", "gemm", "--m", str(m), "--k", str(k), "--n", str(n), *extra]


GEMM_CASES = {
    "gemm-operands-beyond-memory": (_gemm(mkn=(10**5, 10**5, 10**5)), "1,024 MiB"),
    "gemm-cycles-beyond-limit": (_gemm(mkn=(10_000, 1000, 1000)), "10,000,000"),
    "gemm-folds-beyond-counters": (_gemm("--array", "1x1", mkn=(1, 70_000, 1)), "65,535"),
    "gemm-array-16M-PEs": (_gemm("--array", "4096x4096"), "1,024 PEs"),
    "gemm-array-side": (_gemm("--array", "1x300"), "256 per side"),
    "gemm-array-garbage": (_gemm("--array", "8by8"), "--array"),
    "gemm-gaps-above-one": (_gemm("--gaps", "1.5"), "gap_prob"),
    "gemm-gaps-one": (_gemm("--gaps", "1"), "gap_prob"),
    "gemm-gaps-negative": (_gemm("--gaps=-0.1"), "gap_prob"),
    "gemm-gaps-nan": (_gemm("--gaps", "nan"), "gap_prob"),
    "gemm-gaps-inf": (_gemm("--gaps", "inf"), "gap_prob"),
    "gemm-seed-negative": (_gemm("--seed", "-1"), "seed"),
    "gemm-pe-unknown": (_gemm("--pe", "nope"), "PE kind"),
    "gemm-simulator-unknown": (_gemm("--sim", "nope"), "simulator"),
    "gemm-pair-out-of-range": (_gemm("--pair", "w9a8"), "w9a8"),
    "gemm-mapping-order-unknown": (_gemm("--mapping", "NMX"), "loop order must be one of"),
    "gemm-mapping-tile-not-offered": (_gemm("--mapping", "MKN:3", mkn=(4, 4, 4)), "tile 3 is not a stream tile"),
    "gemm-mapping-tile-garbage": (_gemm("--mapping", "MKN:x"), "the tile must be an integer"),
    "gemm-preload-unknown": (_gemm("--weight-preload", "double"), "weight_preload"),
    "gemm-dataflow-unknown": (_gemm("--dataflow", "rs"), "dataflow must be one of ws, os, is"),
    "gemm-dataflow-os-tiled": (_gemm("--dataflow", "os", "--mapping", "NMK:2"), "an os mapping has no stream tile"),
    "gemm-dataflow-os-ws-order": (_gemm("--dataflow", "os", "--mapping", "NKM"), "loop order must be one of MNK, NMK"),
}


@pytest.mark.parametrize("case", sorted(GEMM_CASES))
def test_rtl_gemm_bad_input(case: str, tmp_path: Path, capsys) -> None:
    argv, cause = GEMM_CASES[case]
    assert_bad_input(argv, capsys, tmp_path, cause)


# ------------------------------------------------------------------------------------------------ rtl verify
VERIFY_CASES = {
    "verify-gaps-negative": (["--gaps=-0.5"], "gap_prob"),
    "verify-gaps-inf": (["--gaps", "inf"], "gap_prob"),
    "verify-gaps-one": (["--gaps", "1"], "gap_prob"),
    "verify-array-too-large": (["--array", "64x64"], "1,024 PEs"),
    "verify-pe-unknown": (["--pe", "nope"], "PE kind"),
    "verify-simulator-unknown": (["--sim", "nope"], "simulator"),
    "verify-seed-negative": (["--seed", "-1"], "seed"),
    "verify-images-zero": (["--images", "0"], "images"),
    "verify-layer-unknown": (["--layer", "99"], "no layer '99'"),
    "verify-preload-unknown": (["--weight-preload", "double"], "weight_preload"),
    "verify-mapping-order-unknown": (["--mapping", "ABC"], "loop order must be one of"),
    "verify-mapping-tile-not-offered": (["--mapping", "MKN:7"], "tile_m = 7 is not a stream tile"),
    "verify-dataflow-unknown": (["--dataflow", "rs"], "dataflow must be one of ws, os"),
    "verify-dataflow-is": (["--dataflow", "is"], "dataflow is runs GEMMs only"),
    "verify-dataflow-os-tiled": (["--dataflow", "os", "--mapping", "NMK:4"], "an os mapping has no stream tile"),
}


def _verify(export: Path, layer: str = "3") -> list[str]:
    return ["rtl", "verify", "--export", str(export), "--layer", layer]


@pytest.mark.parametrize("case", sorted(VERIFY_CASES))
def test_rtl_verify_bad_arguments(case: str, export: Path, tmp_path: Path, capsys) -> None:
    extra, cause = VERIFY_CASES[case]
    argv = ["rtl", "verify", "--export", str(export), *extra] if "--layer" in extra else _verify(export) + extra
    assert_bad_input(argv, capsys, tmp_path, cause)


# --- damaging a copy of the export
def _arrays(d: Path) -> dict[str, np.ndarray]:
    with np.load(d / "model.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_npz_bytes(d: Path, data: bytes) -> None:
    """Replace model.npz and re-seal meta.json's sha256, so only the damage itself can be caught."""
    (d / "model.npz").write_bytes(data)
    meta = json.loads((d / "meta.json").read_text())
    meta["npz_sha256"] = hashlib.sha256(data).hexdigest()
    (d / "meta.json").write_text(json.dumps(meta))


def _npz(edit: Callable[[dict[str, np.ndarray]], object]) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        arrays = _arrays(d)
        edit(arrays)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        _write_npz_bytes(d, buf.getvalue())

    return damage


def _meta(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        meta = json.loads((d / "meta.json").read_text())
        edit(meta)
        (d / "meta.json").write_text(json.dumps(meta))

    return damage


def _summary(layer: int, key: str, value: object) -> Callable[[Path], None]:
    return _meta(lambda m: m["layer_summaries"][layer].__setitem__(key, value))


def _set(key: str, value: Callable[[np.ndarray], np.ndarray] | np.ndarray) -> Callable[[Path], None]:
    return _npz(lambda a: a.__setitem__(key, value(a[key]) if callable(value) else value))


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(3))
    return buf.getvalue()


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    # missing or unreadable files
    "export-missing": (lambda d: shutil.rmtree(d), "no such directory"),
    "export-is-a-file": (lambda d: (shutil.rmtree(d), d.write_text("x")), "no such directory"),
    "meta-missing": (lambda d: (d / "meta.json").unlink(), "meta.json"),
    "npz-missing": (lambda d: (d / "model.npz").unlink(), "model.npz"),
    "meta-not-json": (lambda d: (d / "meta.json").write_text("{"), "cannot read"),
    "meta-a-list": (lambda d: (d / "meta.json").write_text("[1, 2]"), "not a JSON object"),
    "meta-a-string": (lambda d: (d / "meta.json").write_text('"meta"'), "not a JSON object"),
    "npz-torn": (lambda d: (d / "model.npz").write_bytes((d / "model.npz").read_bytes()[:-100]), "sha256"),
    "npz-not-a-zip": (lambda d: _write_npz_bytes(d, b"not a zip"), "not an npz"),
    "npz-a-single-npy": (lambda d: _write_npz_bytes(d, _npy_bytes()), "not an npz"),
    # an npz without its arrays, or with arrays of the wrong type
    "npz-empty": (_npz(lambda a: a.clear()), "missing layers"),
    "npz-without-w-codes": (_npz(lambda a: a.pop("3/w_codes")), "missing 3/w_codes"),
    "npz-extra-array": (_set("junk", np.array(1)), "unexpected array junk"),
    "npz-w-bits-a-string": (_set("3/w_bits", np.array("4")), "3/w_bits"),
    "npz-w-bits-a-list": (_set("3/w_bits", np.array([4, 4])), "3/w_bits"),
    "npz-w-bits-out-of-range": (_set("3/w_bits", np.array(99)), "3/w_bits"),
    "npz-kind-an-int": (_set("3/kind", np.array(2)), "3/kind"),
    "npz-w-codes-float": (_set("3/w_codes", lambda v: v.astype(np.float32)), "3/w_codes"),
    "npz-padding-flat": (_set("3/padding", np.array([1, 1, 1])), "3/padding"),
    "npz-ops-not-json": (_set("3/ops", np.array("[{")), "3/ops"),
    "npz-ops-unknown": (_set("3/ops", np.array('[{"op": "gelu"}]')), "gelu"),
    "npz-object-array": (_set("3/ops", np.array([{"op": "relu"}], dtype=object)), "model.npz"),
    "npz-model-name-a-list": (_set("model_name", np.array(["a", "b"])), "model_name"),
    # edited fields the datapath ignores must still agree with those it uses
    "npz-w-scales-edited": (_set("3/w_scales", lambda v: v * 2), "w_scales"),
    "npz-out-scale-edited": (_set("3/out_scale", lambda v: v * 2), "out_scale"),
    "npz-bias-real-edited": (_set("3/bias_real", lambda v: v + 1), "bias_real"),
    "npz-in-bits-edited": (_set("3/in_bits", np.array(4)), "4-bit grid"),
    "npz-w-bits-edited": (_set("3/w_bits", np.array(8)), "w_bits"),
    "npz-in-shape-edited": (_set("3/in_shape", np.array([16, 5, 5])), "in_shape"),
    "npz-relu-flag-edited": (_set("3/relu", np.array(False)), "relu"),
    "npz-out-perm-edited": (_set("3/out_perm", lambda v: v[::-1].copy()), "in_perm"),
    "npz-logits-flag-edited": (_set("7/logits", np.array(True)), "logits"),
    "meta-w-bits-edited": (_summary(1, "w_bits", 8), "layer_summaries[1].w_bits is 8"),
    "meta-w-bits-a-string": (_summary(1, "w_bits", "4"), "layer_summaries[1].w_bits"),
    "meta-in-scale-edited": (_summary(0, "in_scale", 0.5), "layer_summaries[0].in_scale"),
    "meta-kernel-a-scalar": (_summary(0, "kernel_size", 3), "layer_summaries[0].kernel_size"),
    "meta-layers-a-string": (_meta(lambda m: m.__setitem__("layers", "0,3,7,12")), "layers"),
    "meta-extra-field": (_meta(lambda m: m.__setitem__("note", "edited")), "unexpected field note"),
    "meta-missing-field": (_meta(lambda m: m.pop("layer_summaries")), "missing field layer_summaries"),
    "meta-format-version": (_meta(lambda m: m.__setitem__("format_version", "lowbit-integer/0")), "format_version"),
}


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_rtl_verify_refuses_a_damaged_export(case: str, export: Path, tmp_path: Path, capsys) -> None:
    damage, cause = DAMAGES[case]
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    damage(copy)
    assert_bad_input(_verify(copy), capsys, tmp_path, cause)


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_golden_model_refuses_a_damaged_export(case: str, export: Path, tmp_path: Path) -> None:
    from quant.errors import QuantInputError
    from quant.integer import load_export

    damage, cause = DAMAGES[case]
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    damage(copy)
    with pytest.raises(QuantInputError) as info:
        load_export(copy)
    message = str(info.value)
    assert "\n" not in message and cause.lower() in message.lower(), message


def test_the_undamaged_export_reaches_the_build(export: Path, tmp_path: Path, capsys) -> None:
    """The control: a copy of the export with valid arguments is read, checked and sent to the build (the
    tripwire), so every refusal above comes from its damage or its argument."""
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    with pytest.raises(WorkStarted):
        run_cli(_verify(copy) + ["--gaps", "0.5", "--array", "32x32"], capsys)
    with pytest.raises(WorkStarted):
        run_cli(_gemm("--gaps", "0.9", "--array", "1x256", mkn=(64, 64, 64)), capsys)


# ------------------------------------------------------------------------------------- the granularity rule
def test_granularity_rule_per_method() -> None:
    """rtn and gpfq: every layer must hold the grid; ptq-sl: clamped to smaller layers, but some layer must hold
    each dimension; tensor and channel always fit."""
    from types import SimpleNamespace

    from experiments.quantize import check_granularity
    from quant.errors import QuantInputError
    from quant.quantizer import Blocks

    layers = [
        ("conv", SimpleNamespace(out_features=16, in_channels=1)),
        ("fc", SimpleNamespace(out_features=10, in_channels=64)),
    ]
    for method in ("rtn", "gpfq", "ptq-sl"):
        check_granularity(layers, method, "channel")
        check_granularity(layers, method, Blocks(10, 1))
    check_granularity(layers, "ptq-sl", Blocks(16, 64))  # each dimension fits some layer: clamped elsewhere
    for method, blocks, needle in (
        ("rtn", Blocks(4, 2), "layer conv (16 output x 1 input channels, n_H=2 > 1)"),
        ("gpfq", Blocks(16, 1), "layer fc (10 output x 64 input channels, n_V=16 > 10)"),
        ("ptq-sl", Blocks(17, 1), "n_V=17 exceeds the output channels of every layer (the most: layer conv with 16)"),
        ("ptq-sl", Blocks(1, 65), "n_H=65 exceeds the input channels of every layer (the most: layer fc with 64)"),
    ):
        with pytest.raises(QuantInputError, match=re.escape(needle)):
            check_granularity(layers, method, blocks)


def test_every_module_binding_a_tripwired_function_is_imported_first() -> None:
    """BINDING_MODULES lists every project module that imports a tripwired function by name."""
    root = Path(__file__).resolve().parents[2]
    names = [t.rsplit(".", 1)[1] for t in (FRONT, MODEL, CALIBRATE, SENSITIVITY, BUILD)]
    pattern = re.compile(r"^\s*from\s+[\w.]+\s+import\s+\(?([^)]*?)\)?$", re.M | re.S)
    binding = set()
    for package in ("experiments", "quant", "rtl", "search", "sim"):
        for path in (root / package).rglob("*.py"):
            imported = " ".join(pattern.findall(path.read_text()))
            if any(re.search(rf"\b{name}\b", imported) for name in names):
                parts = path.relative_to(root).with_suffix("").parts
                binding.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert binding <= set(BINDING_MODULES), sorted(binding - set(BINDING_MODULES))

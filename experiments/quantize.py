"""Post-training quantization of a built-in or a user's model, measured in fake-quant and the golden integer model."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lowbit_core.pairs import format_pair
from quant.errors import QuantInputError
from quant.fakequant import model_size_bits
from quant.quantizer import Blocks, check_seed

__all__ = [
    "METHODS",
    "QuantResult",
    "UserQuantResult",
    "check_granularity",
    "measure_quantized",
    "parse_granularity",
    "quantize_builtin",
    "quantize_model",
    "quantize_user",
    "model_size_bits",
]

METHODS = ("rtn", "gpfq", "gpfq-paper", "ptq-sl", "gptq")
_BLOCKS_RE = re.compile(r"^(\d+)x(\d+)$")


def parse_granularity(text: str) -> str | Blocks:
    """``tensor``, ``channel`` or ``NVxNH`` (PTQ-SL blocks, e.g. ``4x2``)."""
    if text in ("tensor", "channel"):
        return text
    m = _BLOCKS_RE.match(text)
    if not m:
        raise QuantInputError(f"bad granularity {text!r}: use tensor, channel or NVxNH such as 4x2")
    n_v, n_h = int(m.group(1)), int(m.group(2))
    if n_v < 1 or n_h < 1:
        raise QuantInputError(f"bad granularity {text!r}: NV and NH must be >= 1")
    return Blocks(n_v, n_h)


def check_granularity(layers: Sequence[tuple[str, Any]], method: str, granularity: str | Blocks) -> None:
    """Refuse a block grid that does not fit the model's ``(name, QuantLayer)`` ``layers``.

    ``rtn`` and ``gpfq`` put ``n_V x n_H`` blocks on every layer, so every layer must hold them (``n_V`` <= its
    output channels, ``n_H`` <= its input channels).  ``ptq-sl`` clamps a grid to each layer smaller than it (a
    first conv with one input channel gets ``n_H = 1``), so only a grid that no layer holds is refused: ``n_V`` must
    fit the widest layer's outputs and ``n_H`` the widest layer's inputs.  ``tensor`` and ``channel`` always fit."""
    if not isinstance(granularity, Blocks):
        return
    n_v, n_h = granularity.n_v, granularity.n_h
    label = f"granularity {n_v}x{n_h}"
    if method != "ptq-sl":
        for name, m in layers:
            if n_v > m.out_features or n_h > m.in_channels:
                dim = f"n_V={n_v} > {m.out_features}" if n_v > m.out_features else f"n_H={n_h} > {m.in_channels}"
                raise QuantInputError(
                    f"{label} does not fit layer {name} ({m.out_features} output x {m.in_channels} "
                    f"input channels, {dim}): {method} puts the same blocks on every layer"
                )
        return
    for dim, value, attr in (("n_V", n_v, "out_features"), ("n_H", n_h, "in_channels")):
        name, m = max(layers, key=lambda item: getattr(item[1], attr))
        if value > getattr(m, attr):
            what = "output" if attr == "out_features" else "input"
            raise QuantInputError(
                f"{label}: {dim}={value} exceeds the {what} channels of every layer (the most: "
                f"layer {name} with {getattr(m, attr)}); ptq-sl clamps the grid to smaller layers "
                f"but one layer must hold it"
            )


Bits = int | dict[str, int]  #: one width for every layer, or per layer name


@dataclass(frozen=True)
class QuantResult:
    """Accuracies in percent, sizes in bits, time in seconds."""

    model: str
    method: str
    w_bits: Bits
    a_bits: Bits
    granularity: str
    seed: int
    float_accuracy: float
    fakequant_accuracy: float
    integer_accuracy: float
    integer_agreement: float
    float_size_bits: int
    weight_size_bits: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def assignment_bits(assignment: Any, model: nn.Module) -> tuple[dict[str, int], dict[str, int]]:
    """``({layer: w_bits}, {layer: a_bits})`` of an assignment (``lowbit solve``'s table, a mapping) for the
    model's quantizable layers; names every missing or unknown layer (``experiments.measure``)."""
    from experiments.assignments import normalize_assignment
    from quant.fakequant import gemm_nodes, prepare

    names = [n for n, _ in gemm_nodes(prepare(model))]
    pairs = normalize_assignment(assignment, names)
    return {n: w for n, (w, _) in zip(names, pairs)}, {n: a for n, (_, a) in zip(names, pairs)}


def bits_label(w_bits: Bits, a_bits: Bits) -> str:
    """``w4a8``, or ``mixed (L layers)`` for per-layer bits."""
    if isinstance(w_bits, dict):
        return f"mixed ({len(w_bits)} layers)"
    return format_pair((w_bits, a_bits))


def _checked_bits(model: nn.Module, w_bits: Bits | None, a_bits: Bits | None, assignment: Any) -> tuple[Bits, Bits]:
    """The bits to quantize with: ``assignment`` (a table or mapping) resolved against the model's layers, else
    ``w_bits`` / ``a_bits`` as given."""
    if assignment is not None:
        return assignment_bits(assignment, model)
    if w_bits is None or a_bits is None:
        raise QuantInputError("give the bits (e.g. w4a8) or an assignment")
    return w_bits, a_bits


def quantize_model(
    model: nn.Module,
    calib_x: torch.Tensor,
    w_bits: int | Mapping[str, int],
    a_bits: int | Mapping[str, int],
    method: str = "rtn",
    granularity: str | Blocks = "channel",
    seed: int = 0,
) -> nn.Module:
    """A fake-quant copy of float ``model``: activations calibrated by max on ``calib_x`` (float network), then
    weights quantized by ``method``.  Bits are one int for every layer or ``{layer name: bits}``; a product of two
    activations (a QuantMatmul) takes both operands at its ``a_bits`` (sim's cost of a product; its ``w_bits`` do
    not apply).

    Used by :func:`quantize_builtin` (uniform bits) and :mod:`experiments.measure` (per-layer bits)."""
    from quant.fakequant import calibrate_activations, prepare, quant_layers
    from quant.gpfq import gpfq_quantize
    from quant.gptq import gptq_quantize
    from quant.ptq_sl import ptq_sl_quantize
    from quant.rtn import rtn_quantize

    if method not in METHODS:
        raise QuantInputError(f"unknown method {method!r} (allowed: {', '.join(METHODS)})")
    gran = parse_granularity(granularity) if isinstance(granularity, str) else granularity
    seed = check_seed(seed)
    w = dict(w_bits) if isinstance(w_bits, Mapping) else w_bits
    a = dict(a_bits) if isinstance(a_bits, Mapping) else a_bits
    q = prepare(model)
    check_granularity(quant_layers(q), method, gran)
    calibrate_activations(q, calib_x, a)  # on float activations
    if isinstance(w, dict):  # the weight quantizers see the QuantLayers only
        weighted = {n for n, _ in quant_layers(q)}
        w = {n: b for n, b in w.items() if n in weighted}
    if method == "rtn":
        rtn_quantize(q, w, gran)
    elif method in ("gpfq", "gpfq-paper"):
        gpfq_quantize(
            q, calib_x, w, granularity=gran, seed=seed, alphabet="paper" if method == "gpfq-paper" else "bbit"
        )
    elif method == "gptq":
        gptq_quantize(q, calib_x, w, granularity=gran)
    else:
        ptq_sl_quantize(q, calib_x, w, blocks=gran)
    return q


def measure_quantized(model: nn.Module, q: nn.Module, split: Any, name: str) -> tuple[Any, dict[str, Any]]:
    """Build the golden integer model of fake-quant ``q`` and measure it against float ``model`` on ``split``'s
    test set: (integer model, the accuracy (percent, 2 decimals) and size (bits) fields shared by
    :class:`QuantResult` and :class:`experiments.train.TrainResult`)."""
    from quant.data import evaluate_accuracy
    from quant.export import build_integer_model

    integer = build_integer_model(q, split.calib_x[:1], name=name)
    _, int_pred = integer.run(split.test_x.numpy())
    with torch.no_grad():
        fq_pred = q(split.test_x).argmax(1).numpy()
    float_bits, weight_bits = model_size_bits(q)
    y = split.test_y.numpy()
    return integer, {
        "float_accuracy": round(evaluate_accuracy(model, split.test_x, split.test_y), 2),
        "fakequant_accuracy": round(evaluate_accuracy(q, split.test_x, split.test_y), 2),
        "integer_accuracy": round(100.0 * float(np.mean(int_pred == y)), 2),
        "integer_agreement": round(100.0 * float(np.mean(int_pred == fq_pred)), 2),
        "float_size_bits": float_bits,
        "weight_size_bits": weight_bits,
    }


def quantize_builtin(
    model_name: str,
    method: str,
    w_bits: Bits | None,
    a_bits: Bits | None,
    granularity: str = "channel",
    seed: int = 0,
    export_dir: Path | None = None,
    on_phase: Callable[[str], None] | None = None,
    assignment: Any = None,
) -> tuple[torch.nn.Module, QuantResult]:
    """Quantize a built-in model (weights by ``method``, activations calibrated by max) and measure it.  Bits are
    one int for every layer or ``{layer name: bits}``; ``assignment`` (``lowbit solve``'s table) replaces them.

    ``on_phase`` is called with a short description as each phase starts (for progress output)."""
    from lowbit_core.files import check_output_path
    from quant.models import get_model, model_split

    phase = on_phase or (lambda _: None)

    if method not in METHODS:
        raise QuantInputError(f"unknown method {method!r} (allowed: {', '.join(METHODS)})")
    gran = parse_granularity(granularity)
    seed = check_seed(seed)
    if export_dir is not None:
        check_output_path(export_dir, "integer export", directory=True)
    torch.manual_seed(seed)
    start = time.perf_counter()
    phase(f"pretrained {model_name} (seed {seed})")
    model = get_model(model_name, seed=seed)
    split = model_split(model_name)
    w_bits, a_bits = _checked_bits(model, w_bits, a_bits, assignment)
    phase(f"quantizing: {method} {bits_label(w_bits, a_bits)}, {granularity}")
    q = quantize_model(model, split.calib_x, w_bits, a_bits, method, gran, seed)
    seconds = time.perf_counter() - start
    phase("measuring: float, fake-quant and golden integer model on the test set")
    integer, measured = measure_quantized(model, q, split, model_name)
    if export_dir is not None:
        phase("exporting the integer model")
        integer.save(export_dir)
    result = QuantResult(
        model=model_name,
        method=method,
        w_bits=w_bits,
        a_bits=a_bits,
        granularity=granularity,
        seed=seed,
        seconds=round(seconds, 2),
        **measured,
    )
    return q, result


@dataclass(frozen=True)
class UserQuantResult:
    """A user's model quantized on the user's data. Percentages have 2 decimals; the accuracies are None without
    labels. ``fakequant_agreement`` is the fake-quant model's top-1 against the float model's, ``integer_agreement``
    the golden integer model's against the fake-quant model's; ``output_sqnr_db`` and ``output_cosine`` compare the
    fake-quant outputs with the float outputs (mean over samples of the cosine)."""

    model: str
    method: str
    w_bits: Bits
    a_bits: Bits
    granularity: str
    seed: int
    samples: int
    labelled: bool
    float_accuracy: float | None
    fakequant_accuracy: float | None
    integer_accuracy: float | None
    fakequant_agreement: float
    integer_agreement: float
    output_sqnr_db: float
    output_cosine: float
    float_size_bits: int
    weight_size_bits: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def _output_quality(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    """(SQNR in dB, mean cosine) of ``out`` against ``ref`` (per sample, flattened)."""
    r, o = ref.double().flatten(1), out.double().flatten(1)
    noise = float(((o - r) ** 2).sum())
    sqnr = float("inf") if noise == 0 else 10.0 * float(np.log10(float((r**2).sum()) / noise))
    cos = torch.nn.functional.cosine_similarity(r, o, dim=1, eps=1e-12)
    return round(sqnr, 2), round(float(cos.mean()), 6)


def quantize_user(
    spec: str,
    data_path: Path,
    method: str,
    w_bits: Bits | None,
    a_bits: Bits | None,
    granularity: str = "channel",
    seed: int = 0,
    weights: Path | None = None,
    export_dir: Path | None = None,
    on_phase: Callable[[str], None] | None = None,
    assignment: Any = None,
) -> tuple[nn.Module, UserQuantResult]:
    """Quantize the model ``spec`` (a built-in name, or :mod:`quant.models.user`'s spec with ``weights``) on the
    ``.npz`` at ``data_path`` (:mod:`quant.user_data`), measure it in fake-quant and in the golden integer model,
    and (``export_dir``) write the integer export. Everything that can be checked (method, granularity, seed, the
    model, the data and their fit) is checked before any work starts."""
    from experiments.user_inputs import load_model_and_data
    from lowbit_core.files import check_output_path
    from quant.data import evaluate_accuracy
    from quant.export import build_integer_model, check_exportable
    from quant.fakequant import prepare
    from quant.models.user import is_model_spec

    phase = on_phase or (lambda _: None)
    if method not in METHODS:
        raise QuantInputError(f"unknown method {method!r} (allowed: {', '.join(METHODS)})")
    gran = parse_granularity(granularity)
    seed = check_seed(seed)
    if export_dir is not None:
        check_output_path(export_dir, "integer export", directory=True)
    inputs = load_model_and_data(spec, data_path, weights, seed)
    model = inputs.model
    check_exportable(prepare(model))  # the golden integer model and the export need a representable graph
    w_bits, a_bits = _checked_bits(model, w_bits, a_bits, assignment)
    eval_x = inputs.calib_x if inputs.test_x is None else inputs.test_x
    torch.manual_seed(seed)
    start = time.perf_counter()
    phase(f"quantizing {spec}: {method} {bits_label(w_bits, a_bits)}, {granularity}")
    q = quantize_model(model, inputs.calib_x, w_bits, a_bits, method, gran, seed)
    seconds = time.perf_counter() - start
    phase("measuring: float, fake-quant and golden integer model")
    x = eval_x
    integer = build_integer_model(q, inputs.calib_x[:1], name=Path(str(spec)).stem if is_model_spec(spec) else spec)
    _, int_pred = integer.run(x.numpy())
    with torch.no_grad():
        ref, out = model(x), q(x)
    fq_pred = out.argmax(-1).numpy()
    sqnr, cosine = _output_quality(ref, out)
    float_bits, weight_bits = model_size_bits(q)
    acc = {"float_accuracy": None, "fakequant_accuracy": None, "integer_accuracy": None}
    if inputs.test_y is not None:
        y = inputs.test_y
        acc = {
            "float_accuracy": round(evaluate_accuracy(model, x, y), 2),
            "fakequant_accuracy": round(evaluate_accuracy(q, x, y), 2),
            "integer_accuracy": round(100.0 * float(np.mean(int_pred == y.numpy())), 2),
        }
    if export_dir is not None:
        phase("exporting the integer model")
        integer.save(export_dir)
    result = UserQuantResult(
        model=str(spec),
        method=method,
        w_bits=w_bits,
        a_bits=a_bits,
        granularity=granularity,
        seed=seed,
        samples=len(x),
        labelled=inputs.test_y is not None,
        **acc,
        fakequant_agreement=round(100.0 * float(np.mean(fq_pred == ref.argmax(-1).numpy())), 2),
        integer_agreement=round(100.0 * float(np.mean(int_pred == fq_pred)), 2),
        output_sqnr_db=sqnr,
        output_cosine=cosine,
        float_size_bits=float_bits,
        weight_size_bits=weight_bits,
        seconds=round(seconds, 2),
    )
    return q, result

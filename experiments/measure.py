"""Apply a mixed-precision assignment (per-layer ``w_bits``, ``a_bits``) to a built-in model and measure it.

This is the general form of :func:`experiments.quantize.quantize_builtin`: the same model seed, the same
calibration data, activations calibrated by max on the float network (each layer at its own ``a_bits``), then
weights quantized by RTN, GPFQ or PTQ-SL (each layer at its own ``w_bits``).  A uniform assignment gives exactly
the model ``quantize_builtin`` builds.

>>> point = measure_assignment("digits-cnn", {"0": (8, 8), "3": (4, 8), "7": (4, 4), "12": (8, 8)})
>>> point.accuracy, point.pairs          # fake-quant test accuracy (%), "w8a8,w4a8,w4a4,w8a8"

:func:`measure_many` loads the model and data once and measures many assignments (identical ones once).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from experiments.assignments import Assignment, normalize_assignment
from experiments.quantize import METHODS, model_size_bits, parse_granularity, quantize_model
from lowbit_core.pairs import format_pair
from quant.errors import QuantInputError
from quant.progress import progress_bar

__all__ = [
    "MeasuredPoint",
    "ModelBench",
    "quantize_model",
    "normalize_assignment",
    "measure_assignment",
    "measure_many",
]


@dataclass(frozen=True)
class MeasuredPoint:
    """One measured assignment.  Accuracies are test-set top-1 in percent (not rounded), ``integer_accuracy``
    is None unless the golden integer model was run; ``weight_size_bits`` counts weight codes at their widths,
    32-bit block scales, 32-bit biases and any float parameters; ``seconds`` is the wall time to quantize and
    evaluate this point (model loading excluded); ``pairs`` lists the layers' pairs in execution order,
    e.g. ``w8a8,w4a4,w4a8``."""

    accuracy: float
    integer_accuracy: float | None
    float_accuracy: float
    weight_size_bits: int
    seconds: float
    pairs: str

    def as_dict(self) -> dict:
        return asdict(self)


def _check_method(method: object) -> str:
    if method not in METHODS:
        raise QuantInputError(f"unknown method {method!r} (allowed: {', '.join(METHODS)})")
    return str(method)


class ModelBench:
    """A model, its data and its layer order, loaded once to measure many assignments: a built-in (its own split,
    trained with ``seed``) or, with ``inputs`` (:func:`experiments.user_inputs.load_model_and_data`), any model on
    a user's data.  Without test labels the quality of a point is its top-1 agreement with the float model on
    the test inputs (``calib_x`` when the data has no ``test_x``), in percent, and ``metric`` says so."""

    def __init__(self, model_name: str, seed: int = 0, inputs: Any = None) -> None:
        from quant.data import evaluate_accuracy
        from quant.fakequant import gemm_nodes, prepare

        self.model_name, self.seed = model_name, seed
        if inputs is None:
            from quant.models import get_model, model_split

            self.model = get_model(model_name, seed=seed)  # trained once, then loaded from the on-disk cache
            split = model_split(model_name)
            self.calib_x, self.test_x, self.test_y = split.calib_x, split.test_x, split.test_y
        else:
            self.model = inputs.model
            self.calib_x = inputs.calib_x
            self.test_x = inputs.calib_x if inputs.test_x is None else inputs.test_x
            self.test_y = inputs.test_y
        self.metric = "accuracy" if self.test_y is not None else "agreement"
        self.layer_names: tuple[str, ...] = tuple(n for n, _ in gemm_nodes(prepare(self.model), self.calib_x[:1]))
        with torch.no_grad():
            self._float_pred = self.model(self.test_x).argmax(-1)
        self.float_accuracy = (
            evaluate_accuracy(self.model, self.test_x, self.test_y) if self.test_y is not None else 100.0
        )

    def quality(self, q: nn.Module) -> float:
        """Test accuracy (%) of fake-quant ``q``, or its top-1 agreement with the float model without labels."""
        from quant.data import evaluate_accuracy

        if self.test_y is not None:
            return evaluate_accuracy(q, self.test_x, self.test_y)
        with torch.no_grad():
            return 100.0 * float((q(self.test_x).argmax(-1) == self._float_pred).double().mean())

    def uniform(self, w_bits: int, a_bits: int) -> dict[str, tuple[int, int]]:
        """The assignment giving every layer ``(w_bits, a_bits)``."""
        return {n: (w_bits, a_bits) for n in self.layer_names}

    def quantize(self, assignment: Assignment, method: str = "rtn", granularity: str = "channel") -> nn.Module:
        """The fake-quant model of ``assignment`` (deterministic: a private RNG seeded by the bench's seed)."""
        pairs = normalize_assignment(assignment, self.layer_names)
        return self._quantize(pairs, method, granularity)

    def _quantize(self, pairs: tuple[tuple[int, int], ...], method: str, granularity: str) -> nn.Module:
        w = {n: p[0] for n, p in zip(self.layer_names, pairs)}
        a = {n: p[1] for n, p in zip(self.layer_names, pairs)}
        with torch.random.fork_rng(devices=[]):  # as quantize_builtin seeds, without touching the caller's RNG
            torch.manual_seed(self.seed)
            return quantize_model(self.model, self.calib_x, w, a, method, granularity, self.seed)

    def measure(
        self, assignment: Assignment, method: str = "rtn", granularity: str = "channel", integer: bool = False
    ) -> MeasuredPoint:
        """Quantize ``assignment`` and measure its fake-quant (and optionally golden-integer) test accuracy."""
        _check_method(method)
        parse_granularity(granularity)
        return self.measure_pairs(normalize_assignment(assignment, self.layer_names), method, granularity, integer)

    def measure_pairs(
        self, pairs: tuple[tuple[int, int], ...], method: str, granularity: str, integer: bool
    ) -> MeasuredPoint:
        """:meth:`measure` of an assignment already normalized to one (w_bits, a_bits) per layer, arguments checked
        (the memo and the Dask workers call this)."""
        from quant.export import build_integer_model

        start = time.perf_counter()
        q = self._quantize(pairs, method, granularity)
        accuracy = self.quality(q)
        int_accuracy = None
        if integer:
            golden = build_integer_model(q, self.calib_x[:1], name=self.model_name)
            _, pred = golden.run(self.test_x.numpy())
            ref = self.test_y.numpy() if self.test_y is not None else self._float_pred.numpy()
            int_accuracy = 100.0 * int((pred == ref).sum()) / len(ref)  # as evaluate_accuracy
        return MeasuredPoint(
            accuracy=accuracy,
            integer_accuracy=int_accuracy,
            float_accuracy=self.float_accuracy,
            weight_size_bits=model_size_bits(q)[1],
            seconds=round(time.perf_counter() - start, 3),
            pairs=",".join(format_pair(p) for p in pairs),
        )


def measure_assignment(
    model_name: str,
    assignment: Assignment,
    method: str = "rtn",
    granularity: str = "channel",
    seed: int = 0,
    integer: bool = False,
) -> MeasuredPoint:
    """Apply ``assignment`` ({quant-layer name: (w_bits, a_bits)} or a search assignment table) to built-in model
    ``model_name`` (trained with ``seed``) and measure it; see :class:`MeasuredPoint`."""
    return measure_many(model_name, [assignment], method, granularity, seed, integer)[0]


def _stderr_line(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


#: Benches a Dask worker process has loaded, by (model, seed): a worker measures many points of one model.
_WORKER_BENCHES: dict[tuple[str, int], ModelBench] = {}


def _measure_on_worker(
    model_name: str,
    seed: int,
    inputs: Any,
    pairs: tuple[tuple[int, int], ...],
    method: str,
    granularity: str,
    integer: bool,
) -> dict[str, Any]:
    """One point on a Dask worker (its bench loaded once per process for a built-in model)."""
    if inputs is None:
        bench = _WORKER_BENCHES.get((model_name, seed))
        if bench is None:
            bench = _WORKER_BENCHES[(model_name, seed)] = ModelBench(model_name, seed)
    else:
        bench = ModelBench(model_name, seed, inputs)
    return bench.measure_pairs(pairs, method, granularity, integer).as_dict()


def measure_many(
    model_name: str,
    assignments: Sequence[Assignment],
    method: str = "rtn",
    granularity: str = "channel",
    seed: int = 0,
    integer: bool = False,
    progress: bool = False,
    inputs: Any = None,
    scheduler: str | None = None,
) -> list[MeasuredPoint]:
    """:func:`measure_assignment` for each of ``assignments``, in order.  The model and data are loaded once,
    every assignment is validated before any is measured, and identical assignments are measured once (their
    entries are the same :class:`MeasuredPoint`).  ``progress`` shows a rich progress bar on stderr (status lines
    with an ETA on Dask); ``inputs`` measures a user's model on its data (:class:`ModelBench`).  ``scheduler``
    (``local:N`` or a Dask scheduler address) measures the points on Dask workers, one torch thread each
    (:mod:`experiments.cell_runner`)."""
    _check_method(method)
    parse_granularity(granularity)
    if isinstance(assignments, pd.DataFrame | Mapping) or not isinstance(assignments, Sequence):
        raise QuantInputError("assignments must be a sequence (list) of assignments")
    if scheduler is not None:
        from sim.scheduler import parse_scheduler

        parse_scheduler(scheduler, None)
    bench = ModelBench(model_name, seed, inputs)
    keys = [normalize_assignment(a, bench.layer_names) for a in assignments]
    memo: dict[tuple[tuple[int, int], ...], MeasuredPoint] = {}
    if scheduler is not None:
        from experiments.cell_runner import CellJob, run_cells

        distinct = list(dict.fromkeys(keys))
        jobs = [
            CellJob(
                key=f"point-{k}",
                label=",".join(format_pair(p) for p in pairs),
                fn=_measure_on_worker,
                kwargs={
                    "model_name": model_name,
                    "seed": seed,
                    "inputs": inputs,
                    "pairs": pairs,
                    "method": method,
                    "granularity": granularity,
                    "integer": integer,
                },
            )
            for k, pairs in enumerate(distinct)
        ]

        def store(job: CellJob, cell: dict[str, Any]) -> None:
            memo[job.kwargs["pairs"]] = MeasuredPoint(**cell)

        run_cells(jobs, store, scheduler=scheduler, status=_stderr_line if progress else None)
        return [memo[k] for k in keys]
    with progress_bar(
        progress, len(dict.fromkeys(keys)), f"measuring {model_name} ({method})", transient=True
    ) as advance:
        for key in keys:
            if key not in memo:
                memo[key] = bench.measure_pairs(key, method, granularity, integer)
                advance()
    return [memo[k] for k in keys]

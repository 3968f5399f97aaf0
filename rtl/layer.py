"""Real exported layers through ``lowbit_layer_top``: bit-exact against the golden model ``quant.integer``.

A layer of an integer export (``docs/formats.md``, "Integer export") runs as one GEMM whose reduction holds the
layer's ``n_H`` input blocks ``h`` (PTQ-SL; ``n_H = 1`` for per-channel and per-tensor scales): the gemm top sends
each block's own sum and the layer top rescales and adds them. The host side here

1. gets the layer's input codes by running the golden :class:`~quant.integer.IntegerModel` up to the layer on real
   images (:func:`golden_layer_inputs`, the same loop as ``IntegerModel._forward``);
2. lowers the layer exactly as the golden model does (:func:`lower_layer`): im2col with the layer's stride,
   padding and dilation, channel-major columns, padding with the input zero point. The array is fed the **raw**
   codes ``x`` (unsigned or signed ``in_bits``-bit operands), not ``x - z_x``, which would need one more bit;
3. writes each block's per-output-channel constants (:func:`block_constants`): the zero-point correction
   ``corr = z_x * sum_{k in h} w_{n,k}``, the multiplier ``M_{v(n),h}``, the bias ``B_n``, the bias shift
   ``T_v`` and the shift ``S_v``;
4. runs the layer through ``lowbit_layer_top`` (gemm top + correction + one ``lowbit_requant`` per column) in a
   cocotb bench (:mod:`rtl.benches.layer_bench`), compares every output code with the golden model's and reads the
   array's busy cycles;
5. compares the busy cycles with sim's layer cost: the layer as a sim ``Layer`` (:func:`sim_layer`) with
   ``in_blocks = n_H``, which sim runs as one reduction per input block (``docs/sim.md``, "Input blocks"). The
   layer's measured cycles are its busy cycles minus one, sim's ``compute_cycles`` convention.

The arithmetic is the golden model's, bit for bit: ``P_h = R_h - corr`` where ``R_h = sum_k x_k w_k`` is the
array's raw sum, computed modulo 2^32 (exact because the export proves ``|P_h| < 2^31``), then
``A = (B << T) + sum_h M_{v,h} P_h`` in 64 bits and ``y = clamp(((A + 2^(S-1)) >> S) + z_y, lo, hi)``.
:func:`rtl_arithmetic` is the same computation in numpy, a host-side model of the datapath.

:func:`verify_layer` checks one layer of an export on test images; :func:`run_model_rtl` runs a whole model layer
by layer, each layer fed the RTL's own output codes of the layer before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from quant.integer import IntegerLayer, IntegerModel, builtin_test_images, im2col, load_export
from rtl import encoding, gemm_plan, kinds, prediction
from rtl.limits import (
    RunEstimate,
    check_array,
    check_probability,
    check_run,
    check_seed,
    check_simulator,
    gemm_estimate,
)
from rtl.runner import SRC_DIR, TOP_PARTS, run_job
from rtl.tools import RtlError, one_line

__all__ = [
    "TOP",
    "BENCH",
    "SOURCES",
    "ACC_BITS",
    "OUT_BITS",
    "CONST_BITS",
    "LayerCheck",
    "ModelCheck",
    "sim_layer",
    "golden_layer_inputs",
    "lower_layer",
    "block_constants",
    "constant_word",
    "rtl_arithmetic",
    "layer_parameters",
    "layer_job",
    "check_run_arguments",
    "check_layer_size",
    "check_layer",
    "verify_layer",
    "run_model_rtl",
    "sample_images",
]

TOP = "lowbit_layer_top"
BENCH = "rtl.benches.layer_bench"
SOURCES = [
    SRC_DIR / f
    for f in (
        "lowbit_mac_pe.v",
        "lowbit_fusion_pe.v",
        "lowbit_serial_pe.v",
        "lowbit_systolic_ws.v",
        "lowbit_gemm_top.v",
        "lowbit_systolic_os.v",
        "lowbit_gemm_os_top.v",
        "lowbit_requant.v",
        "lowbit_layer_top.v",
        *TOP_PARTS,
    )
]
LAYER_PE_KINDS = tuple(kinds.PE_KINDS)  #: the PE kinds lowbit_layer_top builds (all of the array's)
ACC_BITS = 32  #: the array's accumulators = the requant unit's partial sum P_h
OUT_BITS = 32  #: output code port of the layer top: uint8/int8 codes and the int32 logits share one build


def _constant_layout() -> tuple[int, int, int]:
    """(mult, bias, shift) field widths of one constant entry, read from ``lowbit_layer_top.v``, their only
    definition."""
    text = (SRC_DIR / f"{TOP}.v").read_text()
    found = dict(re.findall(r"localparam (CONST_(?:MULT|BIAS|SHIFT)_BITS)\s*=\s*(\d+);", text))
    try:
        return tuple(int(found[f"CONST_{f}_BITS"]) for f in ("MULT", "BIAS", "SHIFT"))  # type: ignore[return-value]
    except KeyError as exc:
        raise RuntimeError(f"{TOP}.v no longer defines {exc.args[0]}: the constant layout moved") from None


MULT_BITS, BIAS_BITS, SHIFT_BITS = _constant_layout()
#: one constant entry: {shift, bias_shift, bias, mult, corr}, corr in the low bits
CONST_BITS = ACC_BITS + MULT_BITS + BIAS_BITS + 2 * SHIFT_BITS
DEFAULT_PSUM_ROWS = 1024  #: fewest partial-sum (and accumulator-buffer) rows of a build, so that builds are shared
DEFAULT_MAX_NF = 8  #: column folds the constant memories hold (N <= MAX_NF * cols)


# ------------------------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerCheck:
    """One layer through the RTL. Cycles are clock cycles; ``outputs`` are the RTL's output codes in the golden
    model's layout (conv: [images, out, *spatial]; linear: [images, out]), in the export's stored channel order."""

    layer: str
    kind: str
    M: int  # GEMM rows: images x output positions
    K: int  # reduction length (in_channels x kernel)
    N: int  # output channels
    n_v: int
    n_h: int
    w_bits: int
    a_bits: int
    rows: int
    cols: int
    pe_kind: str
    simulator: str
    macs: int  # M * K * N
    mismatches: int  # output codes that differ from the golden model's
    measured_cycles: int  # the array's busy cycles - 1 (sim's compute_cycles convention)
    predicted_cycles: int  # sim's compute_cycles of the layer with in_blocks = n_H (sim_layer)
    single_gemm_cycles: int  # sim's compute_cycles of the layer if its blocks were ignored (one reduction over K)
    clock_cycles: int  # wall-clock cycles of the run (config writes, requant latency, stalls included)
    out_permuted: bool  # the export reordered this layer's output channels (PTQ-SL reordering)
    outputs: np.ndarray = field(repr=False, compare=False)
    messages: tuple[str, ...] = ()
    loop_order: str = "NKM"  # the mapping's loop order, outer to inner, in GEMM dimensions
    tile_m: int = 0  # elements per full stream tile (sim's tile_m)
    preload: str = "serial"  # weight-preload profile of the array
    dataflow: str = "ws"  # the array: weight- or output-stationary

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.measured_cycles == self.predicted_cycles

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the output codes; the PE kind under the key ``pe`` of ``lowbit rtl verify``'s
        JSON line)."""
        d = {("pe" if k == "pe_kind" else k): v for k, v in asdict(self).items()}
        d.pop("outputs")
        d["messages"] = list(self.messages)
        return d


@dataclass(frozen=True)
class ModelCheck:
    """A whole model through the RTL, layer by layer (:func:`run_model_rtl`)."""

    layers: tuple[LayerCheck, ...]
    predictions: np.ndarray  # argmax of the RTL's logit codes
    golden_predictions: np.ndarray  # the golden model's (IntegerModel.run)
    intermediate_mismatches: int  # output codes of all layers that differ from the golden trace

    @property
    def mismatches(self) -> int:
        return sum(c.mismatches for c in self.layers)

    @property
    def measured_cycles(self) -> int:
        return sum(c.measured_cycles for c in self.layers)

    @property
    def predicted_cycles(self) -> int:
        return sum(c.predicted_cycles for c in self.layers)

    @property
    def ok(self) -> bool:
        return (
            self.mismatches == 0
            and self.intermediate_mismatches == 0
            and all(c.ok for c in self.layers)
            and np.array_equal(self.predictions, self.golden_predictions)
        )


# ------------------------------------------------------------------------------------------------------------------
# golden inputs and lowering
# ------------------------------------------------------------------------------------------------------------------
def golden_layer_inputs(model: IntegerModel, x: Any) -> dict[str, np.ndarray]:
    """The input codes of every layer when the golden model runs on ``x`` (float images or input codes): the
    chain's code-domain ops or the graph's nodes (residual adds, requantization, pooling) before each layer."""
    return model.layer_inputs(x)


def lower_layer(layer: IntegerLayer, x_codes: np.ndarray) -> np.ndarray:
    """The layer's GEMM activations ``[M, K]``: **raw** input codes, lowered exactly as ``run_layer`` does.

    Conv: im2col with the layer's stride, padding and dilation in channel-major column order (``quant.integer``'s
    own ``im2col``), padded with the input zero point ``z_x``, so ``columns - z_x`` are the golden model's
    columns; ``M`` = images x output positions (image outer, positions row-major). Linear: ``[..., K] -> [M, K]``."""
    x = np.asarray(x_codes, dtype=np.int64)
    if x.size and (x.min() < layer.in_qmin or x.max() > layer.in_qmax):
        raise RtlError(f"layer {layer.name}: input codes outside [{layer.in_qmin}, {layer.in_qmax}]")
    z = np.int64(layer.in_zero_point)
    if layer.kind == "linear":
        if x.shape[-1] != layer.reduction:
            raise RtlError(f"layer {layer.name}: input has {x.shape[-1]} features, expected {layer.reduction}")
        return x.reshape(-1, layer.reduction)
    cols, _ = im2col(x - z, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
    return cols.reshape(-1, layer.reduction) + z


def _gemm_layout(layer: IntegerLayer, y: np.ndarray) -> np.ndarray:
    """Golden output codes ([images, out, *spatial] or [..., out]) as the GEMM's ``[M, N]``."""
    if layer.kind == "linear":
        return y.reshape(-1, layer.out_features)
    return np.moveaxis(y, 1, -1).reshape(-1, layer.out_features)


def _golden_layout(layer: IntegerLayer, y_mn: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_gemm_layout` for an output shaped like ``like``."""
    if layer.kind == "linear":
        return y_mn.reshape(like.shape)
    n_img, out = like.shape[0], like.shape[1]
    return np.moveaxis(y_mn.reshape((n_img,) + like.shape[2:] + (out,)), -1, 1)


def _blocks(layer: IntegerLayer) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in zip(layer.col_bounds[:-1], layer.col_bounds[1:])]


def block_constants(layer: IntegerLayer, h: int) -> list[tuple[int, int, int, int, int]]:
    """Per output channel ``n`` (stored order), the constants of input block ``h``: ``(corr, mult, bias, bias_shift,
    shift)`` as signed integers. ``corr = z_x * sum_{k in block h} w_{n,k}`` (the zero-point term of
    ``P_h = sum (x - z_x) w``), ``mult = M_{v(n),h}``, ``bias = B_n``, ``bias_shift = T_v``, ``shift = S_v``."""
    c0, c1 = _blocks(layer)[h]
    w = layer.w_codes.astype(np.int64)[:, c0:c1]
    corr = layer.in_zero_point * w.sum(axis=1)
    rows = layer.row_block()
    return [
        (
            int(corr[n]),
            int(layer.multiplier[rows[n], h]),
            int(layer.bias[n]),
            int(layer.bias_shift[rows[n]]),
            int(layer.shift[rows[n]]),
        )
        for n in range(layer.out_features)
    ]


def constant_word(corr: int, mult: int, bias: int, bias_shift: int, shift: int) -> int:
    """One constant entry of ``lowbit_layer_top``: ``{shift, bias_shift, bias, mult, corr}`` (LSB first: corr in
    ``ACC_BITS`` bits two's complement, mult ``MULT_BITS``, bias ``BIAS_BITS`` two's complement, bias shift and shift
    ``SHIFT_BITS`` each)."""
    shift_limit = 1 << SHIFT_BITS
    if not 0 <= mult < (1 << MULT_BITS) or not 0 <= bias_shift < shift_limit or not 0 <= shift < shift_limit:
        raise RtlError(f"constant out of range: mult={mult}, bias_shift={bias_shift}, shift={shift}")
    word = corr & ((1 << ACC_BITS) - 1)
    word |= mult << ACC_BITS
    word |= (bias & ((1 << BIAS_BITS) - 1)) << (ACC_BITS + MULT_BITS)
    word |= bias_shift << (ACC_BITS + MULT_BITS + BIAS_BITS)
    word |= shift << (ACC_BITS + MULT_BITS + BIAS_BITS + SHIFT_BITS)
    return word


def _wrap(value: np.ndarray | int, bits: int) -> np.ndarray:
    """Two's-complement wrap to ``bits`` (int64 arrays, bits <= 63)."""
    v = np.asarray(value, dtype=np.int64) & np.int64((1 << bits) - 1)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)


def rtl_arithmetic(layer: IntegerLayer, A: np.ndarray) -> np.ndarray:
    """Output codes ``[M, N]`` computed the way the RTL computes them, in numpy (a host-side model of the datapath):
    raw-code GEMM per block wrapped to ``ACC_BITS``, minus the correction (wrapped), then the requant unit's
    ``A = (B << T) + sum_h M P_h`` and ``clamp((A >> S) + A[S-1] + z_y, lo, hi)``."""
    acc = np.zeros((A.shape[0], layer.out_features), dtype=np.int64)
    w = layer.w_codes.astype(np.int64)
    for h, (c0, c1) in enumerate(_blocks(layer)):
        consts = np.array(block_constants(layer, h), dtype=np.int64)
        raw = _wrap(A[:, c0:c1].astype(np.int64) @ w[:, c0:c1].T, ACC_BITS)
        psum = _wrap(raw - _wrap(consts[:, 0], ACC_BITS), ACC_BITS)
        if h == 0:
            acc += consts[:, 2] << consts[:, 3]
        acc += psum * consts[:, 1]
    shift = np.array([c[4] for c in block_constants(layer, 0)], dtype=np.int64)
    y = (acc >> shift) + ((acc >> (shift - 1)) & 1) + layer.out_zero_point
    return np.clip(y, layer.out_qmin, layer.out_qmax)


def sim_layer(layer: IntegerLayer, x_codes: np.ndarray, in_blocks: int | None = None) -> Any:
    """``layer`` on input codes ``x_codes`` as a sim ``Layer``: same GEMM view (M = images x output positions,
    K = in_channels x kernel in channel-major order, N = out_features) and ``in_blocks = n_H`` (``in_blocks``
    overrides it). A 1-D conv is a conv of height 1; stride and padding are the last spatial axis's (sim's layer
    has one of each, and the GEMM view does not depend on them: the output size is stored)."""
    from sim.workload.layer import Layer, gemm

    blocks = layer.n_h if in_blocks is None else in_blocks
    x = np.asarray(x_codes)
    if layer.kind == "linear":
        rows = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
        return gemm(
            layer.name, tokens=rows, in_features=layer.reduction, out_features=layer.out_features, in_blocks=blocks
        )
    out = _out_shape(layer, x)
    spatial_in, spatial_out = (1,) * (4 - x.ndim) + x.shape[2:], (1,) * (4 - x.ndim) + out[2:]
    kernel = (1,) * (2 - len(layer.kernel_size)) + tuple(layer.kernel_size)
    return Layer(
        layer.name,
        "dwconv" if layer.groups > 1 else "conv",
        in_h=int(spatial_in[0]),
        in_w=int(spatial_in[1]),
        in_c=layer.in_channels * layer.groups,
        groups=layer.groups,
        out_c=layer.out_features,
        k_h=int(kernel[0]),
        k_w=int(kernel[1]),
        stride=int(layer.stride[-1]),
        out_h=int(spatial_out[0]),
        out_w=int(spatial_out[1]),
        batch=int(x.shape[0]),
        pad=int(layer.padding[-1][0]) if len(layer.kernel_size) == 2 else 0,
        in_blocks=blocks,
    )


@dataclass(frozen=True)
class LayerMapping:
    """A layer's ws mapping as the gemm top runs it: loop order (``sim.mapping.ORDERS`` index), stream tiles of
    ``tile_h`` x ``tile_w`` elements of the output grid (``grid_w`` wide), and sim's candidate it is."""

    order: int
    tile_h: int
    tile_w: int
    grid_w: int
    sim: Any  # sim.mapping.Mapping


def layer_mapping(lowered: Any, mapping: Any = None, dataflow: str = "ws") -> LayerMapping:
    """The gemm top's mapping for sim layer ``lowered`` (:func:`sim_layer`) at sim's candidate ``mapping`` (a
    ``sim.mapping.Mapping``; default SCALE-Sim's, untiled): the tile sizes are sim's own (``sim.mapping.RowTiles``
    via the layer batch), so both sides run the same tiles. An os mapping has no stream tiles (its stream loop is
    the row folds of M)."""
    from sim.layerbatch import LayerBatch
    from sim.mapping import SCALESIM_ORDER, Mapping
    from sim.workload import Workload

    if dataflow == "os":
        mapping = Mapping(SCALESIM_ORDER[1]) if mapping is None else mapping
        if mapping.tile or mapping.order not in (1, 4):
            raise RtlError(f"an os mapping has the reduction innermost and no stream tile, got {mapping}")
        return LayerMapping(mapping.order, 0, 1, 1, mapping)
    mapping = Mapping(0) if mapping is None else mapping
    batch = LayerBatch.from_workload(Workload("rtl", (lowered,)))
    t = mapping.tile
    grid_w = lowered.out_w if lowered.kind == "conv" else 1
    return LayerMapping(mapping.order, int(batch.rt_h[0, t]), int(batch.rt_wt[0, t]), int(grid_w), mapping)


def parse_layer_mapping(text: str | None, lowered: Any, dataflow: str = "ws") -> Any:
    """sim's candidate (``sim.mapping.Mapping``) named by ``ORDER[:TILE_M]`` (a cost table's ``loop_order`` and
    ``tile_m``) for sim layer ``lowered``: the first tile choice of that many elements; None is SCALE-Sim's."""
    from sim.layerbatch import LayerBatch
    from sim.mapping import N_TILE_CHOICES, Mapping
    from sim.workload import Workload

    if text is None:
        return None
    order_text, _, tile_text = str(text).partition(":")
    try:
        order = gemm_plan.order_index(order_text.strip(), dataflow)
    except ValueError as exc:
        raise RtlError(f"mapping: {exc}") from None
    if not tile_text.strip():
        return Mapping(order, 0)
    if dataflow == "os":
        raise RtlError(f"mapping {text!r}: an os mapping has no stream tile (give the loop order alone)")
    try:
        tile_m = int(tile_text)
    except ValueError:
        raise RtlError(f"mapping {text!r}: tile_m must be an integer, got {tile_text!r}") from None
    batch = LayerBatch.from_workload(Workload("rtl", (lowered,)))
    sizes = [int(batch.rt_h[0, t] * batch.rt_wt[0, t]) for t in range(N_TILE_CHOICES)]
    if tile_m not in sizes:
        raise RtlError(
            f"mapping: tile_m = {tile_m} is not a stream tile sim offers for layer {lowered.name} "
            f"(offered: {', '.join(str(x) for x in sorted(set(sizes), reverse=True))})"
        )
    return Mapping(order, sizes.index(tile_m))


# ------------------------------------------------------------------------------------------------------------------
# bench jobs
# ------------------------------------------------------------------------------------------------------------------
def _pow2_at_least(value: int, floor: int) -> int:
    return max(floor, 1 << (int(value) - 1).bit_length())


def layer_parameters(
    layer: IntegerLayer,
    rows: int,
    cols: int,
    pe_kind: str,
    psum_rows: int = 0,
    min_psum_rows: int = DEFAULT_PSUM_ROWS,
    max_nf: int = DEFAULT_MAX_NF,
    preload: str = "serial",
    dataflow: str = "ws",
) -> dict[str, int]:
    """Verilog parameters of the ``lowbit_layer_top`` build for ``layer``. Builds are shared: Bit Fusion needs one
    build per array, profile and block count; a fixed-PE build is keyed by (w_bits, in_bits, activation
    signedness). ``PSUM_ROWS`` (at least the mapping's ``psum_rows``; the accumulator buffer of a ws build has as
    many rows), ``MAX_NF`` and ``MAX_BLOCKS`` (``n_H``) are powers of two, raised above their floors only when the
    layer needs more."""
    nf = -(-layer.out_features // cols)
    rows_p = _pow2_at_least(max(psum_rows, 1), min_psum_rows)
    params = encoding.top_parameters(
        rows,
        cols,
        pe_kind,
        layer.w_bits,
        layer.in_bits,
        True,
        layer.in_qmin < 0,
        acc_bits=ACC_BITS,
        psum_rows=rows_p,
        preload=preload,
        dataflow=dataflow,
    )
    params.update(
        {
            "MAX_NF": _pow2_at_least(nf, max_nf),
            "OUT_BITS": OUT_BITS,
            "DATAFLOW": int(dataflow == "os"),
            "PSUM_ROWS": rows_p,
        }
    )
    if layer.n_h > 1:
        params["MAX_BLOCKS"] = _pow2_at_least(layer.n_h, 1)
    return params


def layer_job(
    layer: IntegerLayer,
    x_codes: np.ndarray,
    rows: int,
    cols: int,
    pe_kind: str,
    *,
    name: str | None = None,
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
    seed: int = 0,
    expected: np.ndarray | None = None,
    mapping: Any = None,
    preload: str = "serial",
    max_nf: int = DEFAULT_MAX_NF,
    dataflow: str = "ws",
) -> tuple[dict[str, Any], gemm_plan.GemmPlan, np.ndarray]:
    """(bench job, GEMM plan, expected codes ``[M, N]``) of ``layer`` on input codes ``x_codes`` at sim's candidate
    ``mapping`` (``sim.mapping.Mapping``; default SCALE-Sim's) on an array with the ``preload`` profile.

    The layer's ``n_H`` input blocks are the GEMM's reduction blocks. ``expected`` defaults to the golden model's
    ``run_layer`` output; the job carries the constant writes (one per column fold and block at address
    ``h * MAX_NF + cf``, ``MAX_NF`` as :func:`layer_parameters` chooses it; padding channels zero), the gemm top's
    configuration, both input streams and the output order."""
    check_run_arguments(rows, cols, pe_kind, gap_prob, stall_prob, seed)
    lowered = sim_layer(layer, x_codes)
    tiles = layer_mapping(lowered, mapping, dataflow)
    A = lower_layer(layer, x_codes)
    M, N = A.shape[0], layer.out_features
    a_signed = layer.in_qmin < 0
    w = layer.w_codes.astype(np.int64)
    nf = -(-N // cols)
    mem_nf = _pow2_at_least(nf, max_nf)
    blocks = [c1 - c0 for c0, c1 in _blocks(layer)]
    try:
        geometry = {
            "tile_w": tiles.tile_w,
            "grid_w": tiles.grid_w,
            "dataflow": dataflow,
            "blocks": blocks if len(blocks) > 1 else None,
        }
        tile_h = tiles.tile_h if dataflow == "ws" else None
        w_beats, beats, _ = encoding.gemm_streams(
            A, w.T, rows, cols, pe_kind, layer.w_bits, layer.in_bits, True, a_signed, tiles.order, tile_h, **geometry
        )
        plan = gemm_plan.plan_gemm(
            M,
            A.shape[1],
            N,
            rows,
            cols,
            pe_kind,
            layer.w_bits,
            layer.in_bits,
            True,
            a_signed,
            tiles.order,
            tile_h,
            preload,
            **geometry,
        )
        writes = []
        for h in range(len(blocks)):
            consts = block_constants(layer, h) + [(0, 0, 0, 0, 0)] * (nf * cols - N)
            writes += [
                [h * mem_nf + cf, sum(constant_word(*consts[cf * cols + c]) << (c * CONST_BITS) for c in range(cols))]
                for cf in range(nf)
            ]
    except ValueError as exc:
        raise RtlError(f"layer {layer.name}: {exc}") from None
    if expected is None:
        expected = _gemm_layout(layer, _golden_run_layer(layer, x_codes))
    pad = int(np.clip(layer.out_zero_point, layer.out_qmin, layer.out_qmax))  # padding columns: clamp(0 + z_y)
    job = {
        "name": name or f"layer {layer.name}",
        "M": M,
        "N": N,
        "zero_point": layer.out_zero_point,
        "out_min": layer.out_qmin,
        "out_max": layer.out_qmax,
        "pad_code": pad,
        "consts": writes,
        "cfg": encoding.top_config(plan),
        "w_beats": w_beats,
        "beats": beats,
        "outputs": [list(o) for o in encoding.output_order(plan)],
        "max_cycles": plan.cycle_limit,
        "expected": np.asarray(expected, dtype=np.int64).tolist(),
        "gap_prob": gap_prob,
        "stall_prob": stall_prob,
        "seed": seed,
    }
    return job, plan, np.asarray(expected, dtype=np.int64)


def _golden_run_layer(layer: IntegerLayer, x_codes: np.ndarray) -> np.ndarray:
    return IntegerModel([layer], [], "one-layer").run_layer(layer.name, x_codes)


def check_run_arguments(
    rows: int,
    cols: int,
    pe_kind: str,
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
    seed: int = 0,
    images: int = 1,
    simulator: str = "verilator",
    preload: str = "serial",
    dataflow: str = "ws",
) -> None:
    """The arguments of a layer run that need no export: PE kind, simulator, array, stream probabilities, seed,
    image count (:mod:`rtl.limits`), weight preload and dataflow; raises :class:`RtlError` naming the argument."""
    try:
        kinds.check_preload(preload)
        kinds.check_dataflow(dataflow)
    except ValueError as exc:
        raise RtlError(str(exc)) from None
    if dataflow == "is":
        raise RtlError(
            "dataflow is runs GEMMs only (lowbit rtl gemm): an input-stationary layer emits its outputs "
            "channel by channel, and the layer top requantizes per column (ws, os)"
        )
    if pe_kind not in LAYER_PE_KINDS:
        raise RtlError(f"unknown PE kind {pe_kind!r} for a layer ({', '.join(LAYER_PE_KINDS)})")
    check_simulator(simulator)
    check_array(rows, cols)
    check_probability(gap_prob, "gap_prob")
    check_probability(stall_prob, "stall_prob")
    check_seed(seed)
    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
        raise RtlError(f"images must be a positive integer, got {images!r}")


def check_layer_size(
    layer: IntegerLayer,
    x_codes: np.ndarray,
    rows: int,
    cols: int,
    pe_kind: str,
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
) -> RunEstimate:
    """The estimated cost of running ``layer`` on ``x_codes`` (the GEMM of each input block, which together run
    as its reduction), refused beyond the limits of :mod:`rtl.limits` before anything is lowered or built."""
    M = int(np.prod(_out_shape(layer, x_codes))) // layer.out_features
    if M < 1:
        raise RtlError(f"layer {layer.name}: no output positions for input shape {np.shape(x_codes)}")
    total = RunEstimate(0, 0)
    for c0, c1 in _blocks(layer):
        total += gemm_estimate(
            M, c1 - c0, layer.out_features, rows, cols, pe_kind, layer.w_bits, layer.in_bits, gap_prob, stall_prob
        )
    check_run(
        f"layer {layer.name} (M={M} K={layer.reduction} N={layer.out_features}) on a {rows}x{cols} {pe_kind} array",
        total,
    )
    return total


def check_layer(
    layer: IntegerLayer,
    x_codes: np.ndarray,
    *,
    rows: int = 8,
    cols: int = 8,
    pe_kind: str = "fixed",
    simulator: str = "verilator",
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
    seed: int = 0,
    min_psum_rows: int = DEFAULT_PSUM_ROWS,
    max_nf: int = DEFAULT_MAX_NF,
    build_root: Path | None = None,
    expected: np.ndarray | None = None,
    mapping: Any = None,
    preload: str = "serial",
    dataflow: str = "ws",
) -> LayerCheck:
    """Run ``layer`` on input codes ``x_codes`` through ``lowbit_layer_top`` and compare with the golden codes.

    ``mapping`` is sim's candidate (``sim.mapping.Mapping``, or ``ORDER[:TILE_M]`` as a cost table writes it;
    default SCALE-Sim's) and ``preload`` the array's weight-preload profile; sim predicts the cycles at both.
    A mismatch does not raise: it is counted and its messages (output index, expected, actual, cycle) returned.
    Arguments beyond :mod:`rtl.limits` raise :class:`RtlError` before anything is built."""
    check_run_arguments(
        rows, cols, pe_kind, gap_prob, stall_prob, seed, simulator=simulator, preload=preload, dataflow=dataflow
    )
    if layer.groups > 1:
        return _check_grouped_layer(
            layer,
            x_codes,
            rows=rows,
            cols=cols,
            pe_kind=pe_kind,
            simulator=simulator,
            gap_prob=gap_prob,
            stall_prob=stall_prob,
            seed=seed,
            build_root=build_root,
            expected=expected,
            mapping=mapping,
            preload=preload,
            max_nf=max_nf,
            min_psum_rows=min_psum_rows,
            dataflow=dataflow,
        )
    check_layer_size(layer, x_codes, rows, cols, pe_kind, gap_prob, stall_prob)
    if isinstance(mapping, str):
        mapping = parse_layer_mapping(mapping, sim_layer(layer, x_codes), dataflow)
    job, plan, expected_mn = layer_job(
        layer,
        x_codes,
        rows,
        cols,
        pe_kind,
        gap_prob=gap_prob,
        stall_prob=stall_prob,
        seed=seed,
        expected=expected,
        mapping=mapping,
        preload=preload,
        max_nf=max_nf,
        dataflow=dataflow,
    )
    M = job["M"]
    params = layer_parameters(
        layer, rows, cols, pe_kind, gemm_plan.psum_rows_needed(plan), min_psum_rows, max_nf, preload, dataflow
    )
    record, failure = run_job(
        TOP, SOURCES, BENCH, params, job, simulator=simulator, build_root=build_root, what="layer bench"
    )
    got = np.array(record["outputs"], dtype=np.int64).reshape(M, layer.out_features)
    shape_ref = np.empty(_out_shape(layer, x_codes), dtype=np.int8)
    lowered = sim_layer(layer, x_codes)
    if (lowered.M, lowered.K, lowered.N, lowered.window * layer.in_channels) != (
        M,
        layer.reduction,
        layer.out_features,
        layer.reduction,
    ):
        raise RtlError(
            f"layer {layer.name}: sim's view {lowered.M}x{lowered.K}x{lowered.N} differs from the "
            f"lowered GEMM {M}x{layer.reduction}x{layer.out_features}"
        )
    if lowered.block_k != tuple(np.diff(layer.col_bounds).tolist()):
        raise RtlError(
            f"layer {layer.name}: sim's input blocks {lowered.block_k} differ from the export's "
            f"{tuple(np.diff(layer.col_bounds).tolist())}"
        )
    sim_mapping = layer_mapping(lowered, mapping, dataflow).sim

    def predict(sim_view: Any) -> int:
        return prediction.predicted_layer_cycles(
            sim_view, plan.rows, plan.cols, pe_kind, layer.w_bits, layer.in_bits, preload, sim_mapping, dataflow
        )

    return LayerCheck(
        layer=layer.name,
        kind=layer.kind,
        M=M,
        K=layer.reduction,
        N=layer.out_features,
        n_v=layer.n_v,
        n_h=layer.n_h,
        w_bits=layer.w_bits,
        a_bits=layer.in_bits,
        rows=rows,
        cols=cols,
        pe_kind=pe_kind,
        simulator=simulator,
        macs=M * layer.reduction * layer.out_features,
        mismatches=int(record["mismatches"]),
        measured_cycles=int(record["measured"]),
        predicted_cycles=predict(lowered),
        single_gemm_cycles=predict(sim_layer(layer, x_codes, in_blocks=1)),
        clock_cycles=int(record["clock_cycles"]),
        out_permuted=bool(np.any(layer.out_perm != np.arange(layer.out_features))),
        outputs=_golden_layout(layer, got, shape_ref),
        messages=tuple(record.get("messages", ())) or ((failure,) if failure else ()),
        loop_order=plan.order_name,
        tile_m=plan.tile_elements,
        preload=preload,
        dataflow=dataflow,
    )


def group_layer(layer: IntegerLayer, g: int) -> IntegerLayer:
    """Group ``g`` of a grouped conv as a layer of its own: its output rows, their row blocks and constants."""
    per = layer.out_features // layer.groups
    r0, r1 = g * per, (g + 1) * per
    bounds = np.asarray(layer.row_bounds, dtype=np.int64)
    first = int(np.searchsorted(bounds, r0, side="right")) - 1
    last = int(np.searchsorted(bounds, r1, side="left"))  # row blocks first .. last - 1 intersect
    rows = np.clip(bounds[first : last + 1], r0, r1) - r0
    blocks = slice(first, last)
    return replace(
        layer,
        name=f"{layer.name}[g{g}]",
        out_features=per,
        groups=1,
        w_codes=layer.w_codes[r0:r1],
        w_scales=layer.w_scales[blocks],
        row_bounds=rows,
        out_perm=np.arange(per, dtype=np.int32),
        bias_real=layer.bias_real[r0:r1],
        bias=layer.bias[r0:r1],
        multiplier=layer.multiplier[blocks],
        shift=layer.shift[blocks],
        bias_shift=layer.bias_shift[blocks],
    )


def _check_grouped_layer(
    layer: IntegerLayer,
    x_codes: np.ndarray,
    *,
    rows: int,
    cols: int,
    pe_kind: str,
    preload: str,
    dataflow: str,
    mapping: Any,
    seed: int,
    **kwargs: Any,
) -> LayerCheck:
    """A grouped / depthwise conv runs as its groups' GEMMs one after another, as sim schedules it (``dwconv``:
    ``groups`` GEMMs back to back), each at the layer's mapping.  With serial preload nothing of one group overlaps
    the next, so the layer's busy cycles are the groups' busy cycles summed, and ``measured = sum(busy_g) - 1`` is
    sim's convention for the whole layer.  Overlapped preload would hide one group's first weight load behind the
    previous group's compute, which separate runs cannot show: refused."""
    if preload != "serial":
        raise RtlError(
            f"layer {layer.name}: a grouped conv (groups={layer.groups}) runs in RTL with serial weight "
            f"preload only (sim overlaps one group's preload with the previous group's compute)"
        )
    x = np.asarray(x_codes)
    lowered = sim_layer(layer, x)
    if isinstance(mapping, str):
        mapping = parse_layer_mapping(mapping, lowered, dataflow)
    kwargs.pop("expected", None)  # each group compares with the golden model's own run of that group
    cin = layer.in_channels
    checks = [
        check_layer(
            group_layer(layer, g),
            x[:, g * cin : (g + 1) * cin],
            rows=rows,
            cols=cols,
            pe_kind=pe_kind,
            preload=preload,
            dataflow=dataflow,
            mapping=mapping,
            seed=seed + g,
            **kwargs,
        )
        for g in range(layer.groups)
    ]
    sim_mapping = layer_mapping(lowered, mapping, dataflow).sim

    def predict(sim_view: Any) -> int:
        return prediction.predicted_layer_cycles(
            sim_view, rows, cols, pe_kind, layer.w_bits, layer.in_bits, preload, sim_mapping, dataflow
        )

    return replace(
        checks[0],
        layer=layer.name,
        N=layer.out_features,
        n_v=layer.n_v,
        macs=sum(c.macs for c in checks),
        mismatches=sum(c.mismatches for c in checks),
        measured_cycles=sum(c.measured_cycles + 1 for c in checks) - 1,
        predicted_cycles=predict(lowered),
        single_gemm_cycles=predict(sim_layer(layer, x, in_blocks=1)),
        clock_cycles=sum(c.clock_cycles for c in checks),
        outputs=np.concatenate([c.outputs for c in checks], axis=1),
        messages=tuple(m for c in checks for m in c.messages),
    )


def product_slices(layer: IntegerLayer, a: np.ndarray, b: np.ndarray) -> list[tuple[IntegerLayer, np.ndarray]]:
    """Each (sample, head) slice of the product ``layer`` (``a @ b`` over the last two dims) as the template
    Linear layer with that slice of ``b`` as its weight codes, with its ``a`` slice: the GEMMs the array runs."""
    slices = []
    for idx in np.ndindex(*a.shape[:-2]):
        w = np.ascontiguousarray(np.asarray(b[idx]).T).astype(layer.w_codes.dtype)
        label = f"{layer.name}[{','.join(map(str, idx))}]"
        slices.append((replace(layer, name=label, w_codes=w, product=False), np.asarray(a[idx])))
    return slices


def sim_product(layer: IntegerLayer, a: np.ndarray, b: np.ndarray) -> Any:
    """The product as sim's ``matmul`` layer: one head per (sample, head) slice, ``[T, K] x [K, N]`` each."""
    from sim.workload.layer import matmul

    lead = int(np.prod(a.shape[:-2])) if a.ndim > 2 else 1
    return matmul(layer.name, int(a.shape[-2]), int(a.shape[-1]), int(b.shape[-1]), heads=lead, batch=1)


def check_product(
    layer: IntegerLayer,
    a: np.ndarray,
    b: np.ndarray,
    *,
    rows: int = 8,
    cols: int = 8,
    pe_kind: str = "fixed",
    preload: str = "serial",
    dataflow: str = "ws",
    seed: int = 0,
    **kwargs: Any,
) -> LayerCheck:
    """A product of two activations in RTL: its (sample, head) slices run one after another as Linear GEMMs with
    ``b`` held as weights, as sim schedules a ``matmul`` (one GEMM per head, back to back).  With serial preload
    nothing of one slice overlaps the next, so ``measured = sum(busy_i) - 1`` is sim's convention for the whole
    layer; overlapped preload is refused (as for grouped convs)."""
    if preload != "serial":
        raise RtlError(
            f"product {layer.name}: a product of two activations runs in RTL with serial weight preload "
            f"only (sim overlaps one head's preload with the previous head's compute)"
        )
    kwargs.pop("expected", None)
    mapping = kwargs.pop("mapping", None)
    lowered = sim_product(layer, a, b)
    if isinstance(mapping, str):
        mapping = parse_layer_mapping(mapping, lowered, dataflow)
    checks = [
        check_layer(
            lay,
            x,
            rows=rows,
            cols=cols,
            pe_kind=pe_kind,
            preload=preload,
            dataflow=dataflow,
            mapping=mapping,
            seed=seed + i,
            **kwargs,
        )
        for i, (lay, x) in enumerate(product_slices(layer, a, b))
    ]
    sim_mapping = layer_mapping(lowered, mapping, dataflow).sim
    predicted = prediction.predicted_layer_cycles(
        lowered, rows, cols, pe_kind, layer.w_bits, layer.in_bits, preload, sim_mapping, dataflow
    )
    return replace(
        checks[0],
        layer=layer.name,
        kind="matmul",
        macs=sum(c.macs for c in checks),
        mismatches=sum(c.mismatches for c in checks),
        measured_cycles=sum(c.measured_cycles + 1 for c in checks) - 1,
        predicted_cycles=predicted,
        single_gemm_cycles=predicted,
        clock_cycles=sum(c.clock_cycles for c in checks),
        outputs=np.stack([c.outputs for c in checks]).reshape(a.shape[:-1] + (b.shape[-1],)),
        messages=tuple(m for c in checks for m in c.messages),
    )


def _out_shape(layer: IntegerLayer, x_codes: np.ndarray) -> tuple[int, ...]:
    x = np.asarray(x_codes)
    if layer.kind == "linear":
        return x.shape[:-1] + (layer.out_features,)
    sp = []
    for i, size in enumerate(x.shape[2:]):
        span = layer.dilation[i] * (layer.kernel_size[i] - 1) + 1
        sp.append((size + sum(layer.padding[i]) - span) // layer.stride[i] + 1)
    return (x.shape[0], layer.out_features, *sp)


# ------------------------------------------------------------------------------------------------------------------
# exports and images
# ------------------------------------------------------------------------------------------------------------------
def sample_images(model: IntegerModel, images: int) -> np.ndarray:
    """The first ``images`` test images of the built-in model the export was made from (float, as the model takes
    them). Raises :class:`RtlError` when the export's model name is not a built-in model."""
    try:
        found = builtin_test_images(model.name, images)
    except Exception as exc:  # unknown model name, or torch missing
        raise RtlError(
            one_line(
                f"no test images for model {model.name!r} ({exc}); pass input images "
                f"explicitly (lowbit rtl verify --data FILE.npz)"
            )
        ) from None
    if images < 1:
        raise RtlError(f"images must be >= 1, got {images}")
    return found


def verify_layer(
    export_dir: str | Path,
    layer_name: str,
    *,
    rows: int = 8,
    cols: int = 8,
    pe_kind: str = "fixed",
    simulator: str = "verilator",
    images: int = 2,
    x: Any = None,
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
    seed: int = 0,
    build_root: Path | None = None,
    mapping: Any = None,
    preload: str = "serial",
    dataflow: str = "ws",
) -> LayerCheck:
    """Verify layer ``layer_name`` of the integer export in ``export_dir`` in RTL.

    Its input codes come from the golden model run on ``x`` (default: the first ``images`` test images of the
    export's built-in model). Returns mismatches against the golden output codes of that layer, and the measured
    busy cycles against sim's prediction.  The arguments are checked before the
    export is read, the export when it is read (:func:`quant.integer.load_export`), the run's size before any build."""
    check_run_arguments(rows, cols, pe_kind, gap_prob, stall_prob, seed, images, simulator, preload, dataflow)
    model = load_export(export_dir)
    layer = model.layer(layer_name)
    images_x = sample_images(model, images) if x is None else x
    run = dict(
        rows=rows,
        cols=cols,
        pe_kind=pe_kind,
        simulator=simulator,
        gap_prob=gap_prob,
        stall_prob=stall_prob,
        seed=seed,
        build_root=build_root,
        mapping=mapping,
        preload=preload,
        dataflow=dataflow,
    )
    if layer.product:
        a, b = model.execute(images_x).operands[layer.name]
        return check_product(layer, a, b, **run)
    return check_layer(layer, golden_layer_inputs(model, images_x)[layer.name], **run)


def run_model_rtl(
    export_dir: str | Path | IntegerModel,
    x_batch: Any,
    *,
    rows: int = 8,
    cols: int = 8,
    pe_kind: str = "fixed",
    simulator: str = "verilator",
    gap_prob: float = 0.0,
    stall_prob: float = 0.0,
    seed: int = 0,
    build_root: Path | None = None,
    layers: Sequence[str] | None = None,
    mappings: dict[str, Any] | None = None,
    preload: str = "serial",
    dataflow: str = "ws",
) -> ModelCheck:
    """Run the whole model on ``x_batch`` with every layer in RTL, layer by layer, each at its mapping in
    ``mappings`` (layer name -> ``sim.mapping.Mapping`` or ``ORDER[:TILE_M]``; default SCALE-Sim's) on arrays
    with the ``preload`` profile.

    Each layer is fed the codes the rest of the model computes from the RTL's outputs of the layers before it: the
    chain's code-domain ops or the graph's nodes (residual adds, requantization, pooling), run by the golden
    model's own code (``IntegerModel.execute``) in Python. Each layer's RTL
    output is checked against the golden model's ``run_layer`` on the same input and against the golden trace of
    ``x_batch``; the predictions are the argmax of the RTL's logit codes (ties to the lowest index, as
    ``IntegerModel.run``)."""
    check_run_arguments(
        rows, cols, pe_kind, gap_prob, stall_prob, seed, simulator=simulator, preload=preload, dataflow=dataflow
    )
    model = export_dir if isinstance(export_dir, IntegerModel) else load_export(export_dir)
    trace = model.trace(x_batch)
    _, golden_pred = model.run(x_batch)
    checks: list[LayerCheck] = []
    inter = [0]
    index = {lay.name: i for i, lay in enumerate(model.layers)}

    def run_gemm(name: str, codes: np.ndarray) -> np.ndarray:
        if layers is not None and name not in layers:
            y = model.run_layer(name, codes)
        else:
            check = check_layer(
                model.layer(name),
                codes,
                rows=rows,
                cols=cols,
                pe_kind=pe_kind,
                simulator=simulator,
                gap_prob=gap_prob,
                stall_prob=stall_prob,
                seed=seed + index[name],
                build_root=build_root,
                mapping=(mappings or {}).get(name),
                preload=preload,
                dataflow=dataflow,
            )
            checks.append(check)
            y = check.outputs
        inter[0] += int(np.count_nonzero(y != trace[name]))
        return y

    codes = model.execute(x_batch, run_gemm).codes
    return ModelCheck(
        layers=tuple(checks),
        predictions=np.argmax(codes, axis=-1),
        golden_predictions=golden_pred,
        intermediate_mismatches=inter[0],
    )

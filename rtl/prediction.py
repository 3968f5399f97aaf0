"""sim's cycle prediction for the RTL's runs: ``compute_cycles`` of the same GEMM or layer on a sim chip modelled
after the build (same array, PE kind, weight preload and dataflow), evaluated at the run's own mapping.

:func:`predicted_cycles` asks ``sim`` itself (a gemm layer on a chip with the same array, PE and weight preload,
evaluated at the same mapping), so the tests compare the RTL's counter against the simulator rather than against
a re-derived formula. sim is imported inside the functions: planning and encoding a run do not need its engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rtl.gemm_plan import block_split, order_index, plan_gemm, sim_mapping
from rtl.kinds import PE_KINDS, SERIAL_KINDS, _kind, check_dataflow, check_preload, fusion_width

__all__ = [
    "rtl_chip",
    "predicted_layer_cycles",
    "predicted_cycles",
    "predicted_is_cycles",
]


def _sim_pe(pe_kind: str) -> dict[str, Any]:
    """sim's ``pe`` section for an RTL PE kind."""
    if _kind(pe_kind) == "fixed":
        return {"kind": "fixed", "bits": 8}
    if pe_kind in SERIAL_KINDS:
        return {"kind": "bitserial", "serial": SERIAL_KINDS[pe_kind]}
    return {"kind": pe_kind}


def rtl_chip(rows: int, cols: int, pe_kind: str, preload: str = "serial", dataflow: str = "ws") -> Any:
    """sim's model of an ``rows x cols`` weight-stationary array of lowbit's ``pe_kind`` PEs (sim.config.Chip).

    The fixed PE is modelled as sim's ``fixed`` 8-bit PE (its cycles do not depend on the pair); Stripes and Loom
    as sim's ``bitserial`` PE with ``serial: activation`` and ``both``; ``preload`` is the build's weight-preload
    profile and ``dataflow`` its array (ws or os). DRAM bandwidth is SCALE-Sim's "calc" (no stalls): the
    prediction is ``compute_cycles``, the array's busy cycles. The chip runs SCALE-Sim's schedule
    (``mapping: scalesim``); a prediction at another mapping forces it (:func:`predicted_cycles`)."""
    from sim.config import chip_from_dict  # sim is only needed for the prediction

    check_preload(preload)
    check_dataflow(dataflow)
    return chip_from_dict(
        {
            "name": f"lowbit_rtl_{pe_kind}_{rows}x{cols}"
            + ("_overlapped" if preload == "overlapped" else "")
            + ("_os" if dataflow == "os" else ""),
            "array": {"rows": rows, "cols": cols, "dataflow": dataflow, "weight_preload": preload},
            "pe": _sim_pe(pe_kind),
            "mapping": "scalesim",
            "memory": {
                "ifmap_sram_kib": 64,
                "filter_sram_kib": 64,
                "ofmap_sram_kib": 64,
                "dram_bw_bits_per_cycle": "calc",
                "acc_bits": 32,
            },
        },
        where="rtl chip",
    )


def _sim_pair(pe_kind: str, w_bits: int, a_bits: int) -> tuple[int, int]:
    """The pair sim evaluates: Bit Fusion's widths rounded up to 2/4/8 (the modes the PE runs in)."""
    return (fusion_width(w_bits), fusion_width(a_bits)) if pe_kind == "bitfusion" else (int(w_bits), int(a_bits))


def predicted_layer_cycles(
    layer: Any,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    preload: str = "serial",
    mapping: Any = None,
    dataflow: str = "ws",
) -> int:
    """sim's ``compute_cycles`` of the sim layer ``layer`` (a ``sim.workload.layer.Layer``, PTQ-SL input blocks
    included) on :func:`rtl_chip` at the pair ``w{w_bits}a{a_bits}``, at SCALE-Sim's mapping or at ``mapping`` (a
    :class:`sim.mapping.Mapping`, forced as the reference engine replays it). For Bit Fusion the widths are rounded
    up to 2/4/8, the modes the PE runs in (a Bit-Fusion chip lists only those pairs)."""
    from sim.chipbatch import ChipBatch
    from sim.engine import evaluate
    from sim.layerbatch import LayerBatch
    from sim.workload import Workload

    if pe_kind not in PE_KINDS:
        raise ValueError(f"unknown PE kind {pe_kind!r} (allowed: {', '.join(PE_KINDS)})")
    pair = _sim_pair(pe_kind, w_bits, a_bits)
    chip = rtl_chip(rows, cols, pe_kind, preload, dataflow)
    chip.check_pairs([pair])
    arrays = evaluate(
        ChipBatch.from_chips([chip], [pair]),
        LayerBatch.from_workload(Workload("rtl", (layer,))),
        np.asarray([pair]),
        mapping=mapping,
    )
    return int(arrays["compute_cycles"][0, 0, 0])


def predicted_cycles(
    M: int,
    K: int,
    N: int,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    order: str | int | None = None,
    tile_m: int | None = None,
    preload: str = "serial",
    dataflow: str = "ws",
    n_blocks: int = 1,
) -> int:
    """sim's ``compute_cycles`` for the GEMM ``[M, K] x [K, N]`` on an ``rows x cols`` weight-stationary array of
    ``pe_kind`` PEs at the pair ``w{w_bits}a{a_bits}``, loop order ``order``, stream tiles of ``tile_m`` rows (one
    sim offers, :func:`rtl.gemm_plan.offered_tile_rows`) and the ``preload`` profile: :func:`predicted_layer_cycles`
    of a one-layer ``gemm`` workload (tokens = M, in_features = K, out_features = N, in_blocks = ``n_blocks``: the
    reduction blocks of :func:`rtl.gemm_plan.block_split`) at that mapping."""
    from sim.workload.layer import gemm

    plan = plan_gemm(
        M,
        K,
        N,
        rows,
        cols,
        pe_kind,
        w_bits,
        a_bits,
        order=order,
        tile_m=tile_m,
        preload=preload,
        dataflow=dataflow,
        blocks=block_split(K, n_blocks),
    )
    layer = gemm("rtl_gemm", tokens=plan.M, in_features=plan.K, out_features=plan.N, in_blocks=plan.n_blocks)
    if (layer.M, layer.K, layer.N, layer.groups, layer.has_weights) != (plan.M, plan.K, plan.N, 1, True):
        raise AssertionError(
            f"sim's gemm layer is [{layer.M}, {layer.K}] x [{layer.K}, {layer.N}], expected [{M}, {K}] x [{K}, {N}]"
        )
    if dataflow == "os":
        from sim.mapping import Mapping

        mapping = Mapping(plan.order)
    else:
        mapping = sim_mapping(plan.order, plan.M, plan.tile_elements)
    return predicted_layer_cycles(
        layer, plan.rows, plan.cols, pe_kind, plan.w_bits, plan.a_bits, preload, mapping, dataflow
    )


def predicted_is_cycles(
    M: int,
    K: int,
    N: int,
    rows: int,
    cols: int,
    pe_kind: str,
    w_bits: int,
    a_bits: int,
    order: str | int = 0,
    tile_n: int | None = None,
    preload: str = "serial",
) -> int:
    """sim's ``compute_cycles`` for ``[M, K] x [K, N]`` on an input-stationary array: the columns hold M, the
    stream is N in tiles of ``tile_n`` (one sim offers for N), at loop order ``order`` (sim's is orders)."""
    from sim.workload.layer import gemm

    order = order_index(order, "is")
    tile = int(N) if tile_n is None else int(tile_n)
    layer = gemm("rtl_gemm", tokens=int(M), in_features=int(K), out_features=int(N))
    return predicted_layer_cycles(
        layer, rows, cols, pe_kind, w_bits, a_bits, preload, sim_mapping(order, N, tile), "is"
    )

"""What the RTL's arrays are built from: the PE kinds, dataflows and weight-preload profiles (each with the value
of its Verilog parameter), and each PE kind's arithmetic on one element: products per PE slot, slot widths on the
streams, stream steps per element, operand ranges.

Pure Python + numpy (no cocotb, no sim import). The GEMM plan (:mod:`rtl.gemm_plan`), the stream encoding
(:mod:`rtl.encoding`) and sim's cycle prediction (:mod:`rtl.prediction`) all check their PE kind, dataflow and
preload here, so they accept and refuse the same values with the same messages.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PE_KINDS",
    "SERIAL_KINDS",
    "TRANSPOSED_KINDS",
    "ARRAY_PE_KINDS",
    "transposed_kind",
    "PRELOADS",
    "check_preload",
    "DATAFLOWS",
    "DATAFLOW_PE_KINDS",
    "check_dataflow",
    "fusion_width",
    "fusion_mode",
    "pack_factor",
    "slot_bits",
    "beats_per_element",
    "operand_range",
]

#: PE kinds of the RTL and their ``PE_KIND`` parameter values: sim's ``fixed`` and ``bitfusion``, and its
#: ``bitserial`` PE as Stripes (``serial: activation``) and Loom (``serial: both``).
PE_KINDS: dict[str, int] = {"fixed": 0, "bitfusion": 1, "stripes": 2, "loom": 3}
#: sim's ``pe.serial`` of each bit-serial kind
SERIAL_KINDS: dict[str, str] = {"stripes": "activation", "loom": "both"}
#: The array PE of an input-stationary GEMM, which runs as the ws GEMM of its transpose: the activations become the
#: array's stationary operand, so the Stripes PE serializes the stationary register's bits (``PE_KIND`` 4,
#: lowbit_serial_pe ``SERIAL = 2``); the other kinds are the same PEs either way.
TRANSPOSED_KINDS: dict[str, str] = {"stripes": "stripes_stationary"}
#: Every ``PE_KIND`` a ws array builds: :data:`PE_KINDS` and the transposed Stripes PE.
ARRAY_PE_KINDS: dict[str, int] = {**PE_KINDS, "stripes_stationary": 4}
_SERIAL_ARRAY_KINDS = ("stripes", "loom", "stripes_stationary")
_FUSION_WIDTHS = (2, 4, 8)
_FUSION_SLOT_BITS = 32
_SERIAL_SLOT_BITS = 8  #: a bit-serial build's widest runtime width (its W_BITS = A_BITS), one stream slot
#: Weight-preload timing profiles (sim's ``array.weight_preload``) and the top's ``OVERLAP`` parameter.
PRELOADS: dict[str, int] = {"serial": 0, "overlapped": 1}
#: Dataflows the RTL builds and their GEMM top: weight-stationary, output-stationary, and input-stationary as the
#: weight-stationary top on the transposed GEMM (Y^T = B^T A^T: the activations stationary, the weights streamed).
DATAFLOWS: dict[str, str] = {"ws": "lowbit_gemm_top", "os": "lowbit_gemm_os_top", "is": "lowbit_gemm_top"}
#: PE kinds each dataflow's array builds (is: as :data:`TRANSPOSED_KINDS` says).
DATAFLOW_PE_KINDS: dict[str, tuple[str, ...]] = {flow: tuple(PE_KINDS) for flow in DATAFLOWS}


def _kind(pe_kind: str) -> str:
    if pe_kind not in ARRAY_PE_KINDS:
        raise ValueError(f"pe_kind must be one of {', '.join(PE_KINDS)}, got {pe_kind!r}")
    return pe_kind


def transposed_kind(pe_kind: str) -> str:
    """The array PE that runs ``pe_kind``'s input-stationary GEMM as the ws GEMM of its transpose."""
    return TRANSPOSED_KINDS.get(_kind(pe_kind), pe_kind)


def _check_bits(name: str, bits: int) -> int:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= int(bits) <= 8:
        raise ValueError(f"{name} must be an integer in 2..8, got {bits!r}")
    return int(bits)


def fusion_width(bits: int) -> int:
    """Field width (bits) of one element in a Bit-Fusion slot: ``bits`` rounded up to 2, 4 or 8."""
    bits = _check_bits("bits", bits)
    return next(w for w in _FUSION_WIDTHS if bits <= w)


def fusion_mode(bits: int) -> int:
    """The Bit-Fusion PE's mode code for ``bits``: 0 (2-bit), 1 (4-bit) or 2 (8-bit fields)."""
    return _FUSION_WIDTHS.index(fusion_width(bits))


def pack_factor(pe_kind: str, w_bits: int, a_bits: int) -> int:
    """Products one PE sums per cycle: 1 for a fixed or bit-serial PE, ``floor(8/a) * floor(8/w)`` (widths
    rounded up to 2/4/8) for Bit Fusion -- the same rule as ``sim.precision``."""
    if _kind(pe_kind) != "bitfusion":
        _check_bits("w_bits", w_bits)
        _check_bits("a_bits", a_bits)
        return 1
    return (8 // fusion_width(a_bits)) * (8 // fusion_width(w_bits))


def slot_bits(pe_kind: str, w_bits: int, a_bits: int) -> tuple[int, int]:
    """(W_SLOT, A_SLOT): bits of one PE's weight slot and activation slot on the streams."""
    if _kind(pe_kind) == "bitfusion":
        return _FUSION_SLOT_BITS, _FUSION_SLOT_BITS
    _check_bits("w_bits", w_bits)
    _check_bits("a_bits", a_bits)
    if pe_kind in _SERIAL_ARRAY_KINDS:
        return _SERIAL_SLOT_BITS, _SERIAL_SLOT_BITS
    return int(w_bits), int(a_bits)


def beats_per_element(pe_kind: str, w_bits: int, a_bits: int) -> int:
    """Steps one streamed element takes: ``a_bits`` (Stripes), ``a_bits * w_bits`` (Loom), ``w_bits`` (Stripes on
    a transposed GEMM, whose stationary operand is the activation), else 1 -- sim's ``serial``."""
    if _kind(pe_kind) == "stripes":
        return _check_bits("a_bits", a_bits)
    if pe_kind == "stripes_stationary":
        return _check_bits("w_bits", w_bits)
    if pe_kind == "loom":
        return _check_bits("a_bits", a_bits) * _check_bits("w_bits", w_bits)
    return 1


def operand_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive (lowest, highest) integer of a ``bits``-bit operand."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def check_dataflow(dataflow: str, pe_kind: str | None = None) -> str:
    """``dataflow`` if the RTL builds it (with ``pe_kind`` PEs), else ValueError naming what it builds."""
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {', '.join(DATAFLOWS)}, got {dataflow!r}")
    if pe_kind is not None and pe_kind not in DATAFLOW_PE_KINDS[dataflow]:
        raise ValueError(f"the {dataflow} array builds {', '.join(DATAFLOW_PE_KINDS[dataflow])} PEs, not {pe_kind!r}")
    return dataflow


def check_preload(preload: str) -> str:
    """``preload`` if it is a timing profile (:data:`PRELOADS`), else ValueError naming the field."""
    if preload not in PRELOADS:
        raise ValueError(f"weight_preload must be one of {', '.join(PRELOADS)}, got {preload!r}")
    return preload

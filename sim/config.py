"""Chip configuration: array, PE kind, supported pairs, memory and technology.

Chips are YAML files validated on load (errors name the field and the allowed values), built-in
presets in ``sim/chips/``, or SCALE-Sim ``.cfg`` files read unchanged (see :mod:`sim.scalesim_cfg`).
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import TypeAdapter, ValidationError, WrapValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from lowbit_core.errors import InputError
from lowbit_core.pairs import DEFAULT_MAX_BITS, MIN_BITS, Pair, format_pair, parse_pair
from lowbit_core.schema import RANGE_ERROR, SramKiB, StrictModel, float_range, format_validation, int_range, number_text
from sim.precision import FUSION_WIDTHS
from sim.technology import Technology, load_technology

__all__ = [
    "Chip",
    "ArrayConfig",
    "PEConfig",
    "MemoryConfig",
    "chip_from_dict",
    "preset_names",
    "with_mapping",
    "CHIPS_DIR",
    "MAX_ARRAY_DIM",
    "CLOCK_MHZ_RANGE",
    "DRAM_BW_RANGE",
]

CHIPS_DIR = Path(__file__).parent / "chips"


#: Largest array side (PEs); with the layer bounds of :mod:`sim.workload.layer` every int64 count fits.
MAX_ARRAY_DIM = 4096
CLOCK_MHZ_RANGE = (1e-3, 1e5)
DRAM_BW_RANGE = (0.01, float(2**20))
_ArrayDim = Annotated[int, *int_range(1, MAX_ARRAY_DIM, unit="PEs")]
_Clock = Annotated[float, *float_range(*CLOCK_MHZ_RANGE, unit="MHz", note="1 kHz to 100 GHz")]
_PeBits = Annotated[int, *int_range(2, 16, unit="bits")]
_AccBits = Annotated[int, *int_range(8, 64, unit="bits")]
_ScaleBits = Annotated[int, *int_range(0, 64, unit="bits")]
_StaticMw = Annotated[float, *float_range(0.0, 1e6, unit="mW")]
_Bandwidth = Annotated[float, *float_range(*DRAM_BW_RANGE, unit="bits per cycle")]
_BANDWIDTH = TypeAdapter(_Bandwidth)


class ArrayConfig(StrictModel):
    """Systolic array geometry, clock and timing profile.

    ``weight_preload: serial`` shifts each fold's stationary tile in before it streams (SCALE-Sim);
    ``overlapped`` double-buffers it in the PEs, so the next fold's tile shifts in while the current one
    streams, as in TPU-style arrays (docs/sim.md, "Timing profiles").

    ``reduction`` is how a convolution's reduction (channels x kernel taps) is cut into row folds:
    ``lowered`` packs the im2col rows channel-major across taps; ``per_tap`` runs each kernel tap as its
    own pass over the input channels (direct convolution, as Bit Fusion does), so each tap pads its
    channels to whole folds.
    """

    rows: _ArrayDim
    cols: _ArrayDim
    dataflow: Literal["ws", "os", "is"] = "ws"
    clock_mhz: _Clock = 1000.0
    weight_preload: Literal["serial", "overlapped"] = "serial"
    reduction: Literal["lowered", "per_tap"] = "lowered"


class PEConfig(StrictModel):
    """Processing-element kind.

    * ``fixed``: one native width ``bits``; narrower operands run at the same speed and MAC energy.
    * ``bitserial``: ``serial: activation`` (Stripes) streams activation bits, one per cycle;
      ``serial: both`` (Loom) streams weight and activation bits, ``w*a`` cycles per MAC.
    * ``bitfusion``: sixteen 2-bit bricks fuse into floor(8/a)*floor(8/w) products per cycle, bits
      rounded up to 2, 4 or 8.
    """

    kind: Literal["fixed", "bitserial", "bitfusion"] = "fixed"
    bits: _PeBits = 8
    serial: Literal["activation", "both"] = "activation"


def _bandwidth(value: Any, handler: Any) -> float | str:
    """``calc`` or a bounded number of bits per cycle, with one message naming both."""
    if value == "calc":
        return "calc"
    try:
        return _BANDWIDTH.validate_python(value)
    except ValidationError:
        lo, hi = DRAM_BW_RANGE
        raise PydanticCustomError(
            RANGE_ERROR,
            f"must be 'calc' (unlimited) or a finite number in [{number_text(lo)}, {number_text(hi)}] bits per cycle",
        ) from None


class MemoryConfig(StrictModel):
    """On-chip SRAMs (KiB, double-buffered) and the DRAM interface.

    ``dram_bw_bits_per_cycle: calc`` means unlimited bandwidth (SCALE-Sim's CALC mode: no stalls).
    ``output_width`` is the width a layer's outputs are written to DRAM at: ``activation`` (requantized on
    chip, to the layer's or its consumer's activation width) or ``accumulator`` (``acc_bits`` wide, for a chip
    without an on-chip requantizer, such as the Bit Fusion design as its authors simulate it).
    """

    ifmap_sram_kib: SramKiB
    filter_sram_kib: SramKiB
    ofmap_sram_kib: SramKiB
    dram_bw_bits_per_cycle: Annotated[float | Literal["calc"], WrapValidator(_bandwidth)] = 128.0
    acc_bits: _AccBits = 32
    output_width: Literal["activation", "accumulator"] = "activation"

    @property
    def bandwidth(self) -> float:
        """DRAM bits per cycle; ``inf`` for CALC."""
        return math.inf if self.dram_bw_bits_per_cycle == "calc" else float(self.dram_bw_bits_per_cycle)


class Chip(StrictModel):
    """A complete accelerator description.

    ``mapping: search`` picks each layer's loop order and stream tile for ``mapping_objective``
    (:mod:`sim.mapping`); ``scalesim`` runs SCALE-Sim's fixed schedule (the default of ``.cfg`` chips).
    """

    name: str = "chip"
    array: ArrayConfig
    pe: PEConfig = PEConfig()
    pairs: tuple[str, ...] | None = None
    memory: MemoryConfig
    technology: str = "45nm"
    mapping: Literal["search", "scalesim"] = "search"
    mapping_objective: Literal["latency", "energy", "edp"] = "edp"
    weight_scale_bits: _ScaleBits = 32
    static_mw: _StaticMw | None = None

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(s.strip() for s in v.split(",") if s.strip())
        return v

    @model_validator(mode="after")
    def _check_pairs(self) -> Chip:
        if self.pairs is not None:
            if not self.pairs:
                raise ValueError("pairs: list at least one pair such as w8a8")
            for text in self.pairs:
                try:
                    w, a = parse_pair(text)
                except InputError as exc:
                    raise ValueError(f"pairs: {exc}") from None
                reason = _pe_rejects(self.pe, w, a)
                if reason:
                    raise ValueError(f"pairs: {format_pair((w, a))} {reason}")
        return self

    # Derived --------------------------------------------------------------------------------
    @cached_property
    def supported_pairs(self) -> tuple[Pair, ...]:
        """Pairs this chip runs: the listed ones, or every pair its PE can run."""
        if self.pairs is not None:
            return tuple(parse_pair(p) for p in self.pairs)
        widths: tuple[int, ...]
        if self.pe.kind == "bitfusion":
            widths = FUSION_WIDTHS
        else:
            top = min(self.pe.bits, DEFAULT_MAX_BITS) if self.pe.kind == "fixed" else DEFAULT_MAX_BITS
            widths = tuple(range(MIN_BITS, top + 1))
        return tuple((w, a) for w in sorted(widths, reverse=True) for a in sorted(widths, reverse=True))

    @cached_property
    def tech(self) -> Technology:
        return load_technology(self.technology)

    def static_power_mw(self) -> float:
        """Leakage power (mW): the override, or PE + SRAM leakage from the technology table."""
        if self.static_mw is not None:
            return self.static_mw
        leak = self.tech.pe_leakage_uw
        key = f"fixed{self.pe.bits}" if self.pe.kind == "fixed" else self.pe.kind
        if key not in leak:
            raise InputError(f"chip {self.name!r}: technology {self.tech.name!r} has no leakage for PE '{key}'")
        kib = self.memory.ifmap_sram_kib + self.memory.filter_sram_kib + self.memory.ofmap_sram_kib
        return (leak[key] * self.array.rows * self.array.cols + self.tech.sram_leakage_uw_per_kib * kib) / 1e3

    def check_pairs(self, pairs: list[Pair]) -> None:
        """Raise InputError naming the first pair this chip does not support."""
        supported = set(self.supported_pairs)
        for pair in pairs:
            if pair not in supported:
                listed = ",".join(format_pair(p) for p in self.supported_pairs)
                raise InputError(
                    f"pair {format_pair(pair)} is not supported by chip {self.name!r} (supported: {listed})"
                )


def _pe_rejects(pe: PEConfig, w: int, a: int) -> str | None:
    if pe.kind == "fixed" and max(w, a) > pe.bits:
        return f"does not fit a fixed {pe.bits}-bit PE"
    if pe.kind == "bitfusion" and max(w, a) > FUSION_WIDTHS[-1]:
        return f"exceeds a Bit-Fusion PE's {FUSION_WIDTHS[-1]} bits"
    return None


def chip_from_dict(doc: Any, where: str = "chip") -> Chip:
    """Validate a chip mapping; errors are one line naming the field."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a mapping with array/pe/memory sections, got {type(doc).__name__}")
    try:
        chip = Chip.model_validate(doc)
    except ValidationError as exc:
        raise InputError(format_validation(exc, where, Chip)) from None
    chip.tech  # noqa: B018 - resolve the technology now so a bad name fails at load time
    chip.static_power_mw()
    return chip


def with_mapping(
    chip: Chip, mapping: str | None = None, objective: str | None = None, weight_preload: str | None = None
) -> Chip:
    """``chip`` with its mapping mode, mapping objective or timing profile overridden (``None`` keeps it),
    validated like a chip file (a bad value is a one-line InputError naming the field)."""
    doc = chip.model_dump()
    if mapping is not None:
        doc["mapping"] = mapping
    if objective is not None:
        doc["mapping_objective"] = objective
    if weight_preload is not None:
        doc["array"]["weight_preload"] = weight_preload
    return chip_from_dict(doc, where=f"chip {chip.name!r}")


def preset_names() -> list[str]:
    return sorted(p.stem for p in CHIPS_DIR.glob("*.yaml"))

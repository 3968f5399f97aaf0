"""Technology tables: MAC, SRAM, DRAM and leakage energy (pJ, uW) and areas, loaded from YAML.

The YAML is validated by :class:`TechnologySchema` (unknown keys are errors; every number is finite and
bounded: energies 0..1e4 pJ, leakage 0..1e6 uW, SRAM points 1 bit..1 TiB) and held as :class:`Technology`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, ValidationError

from lowbit_core.errors import InputError
from lowbit_core.pairs import Pair, format_pair, parse_pair
from lowbit_core.schema import SramKiB, StrictModel, float_range, format_validation, int_range
from lowbit_core.yamlio import read_yaml

__all__ = ["Technology", "AreaTable", "TechnologySchema", "load_technology", "technology_from_dict", "TECH_DIR"]

TECH_DIR = Path(__file__).parent / "tech"


@dataclass(frozen=True)
class AreaTable:
    """Synthesized logic areas (NAND2-equivalents), the NAND2 cell area (um^2) and SRAM density (um^2/bit)."""

    nand2_um2: float
    fixed_pe_nand2: dict[str, float]  # 'w8a8' -> NAND2-eq of a fixed PE of those widths
    bitfusion_pe_nand2: float
    requant_nand2: float
    sram_um2_per_bit: float
    #: 'activation' (Stripes) / 'both' (Loom) / 'activation_stationary' (Stripes on an is array, optional) ->
    #: NAND2-eq of a bit-serial PE of widths up to 8; empty if absent
    bitserial_pe_nand2: dict[str, float] = field(default_factory=dict)
    #: overlapped weight preload, NAND2-eq added per PE: per_pe + per_weight_bit x (the PE's weight slot bits);
    #: None if absent
    overlap_per_pe_nand2: float | None = None
    overlap_per_weight_bit_nand2: float | None = None
    #: an output-stationary array's NAND2-eq per PE over the ws array (flags, result bus); None if absent
    os_per_pe_nand2: float | None = None


@dataclass(frozen=True)
class Technology:
    """Energy figures of one process node.

    ``fixed_mac_pj`` maps native width (bits) -> pJ/MAC; ``bitfusion_mac_pj`` maps (w, a) -> pJ/MAC
    for bits in {2, 4, 8}; ``serial_step_pj`` maps 'activation'/'both' -> pJ per serial step.
    """

    name: str
    fixed_mac_pj: dict[int, float]
    bitfusion_mac_pj: dict[tuple[int, int], float]
    serial_step_pj: dict[str, float]
    sram_pj_per_bit_by_kib: tuple[tuple[float, float], ...]
    dram_pj_per_bit: float
    pe_leakage_uw: dict[str, float]
    sram_leakage_uw_per_kib: float
    area: AreaTable | None = None
    sram_write_pj_per_bit_by_kib: tuple[tuple[float, float], ...] | None = None
    register_pj_per_bit: float = 0.0

    def sram_read_pj_per_bit(self, kib: float) -> float:
        """Energy per bit read from an SRAM of ``kib`` KiB (log-log interpolation, clamped)."""
        return _interpolate(self.sram_pj_per_bit_by_kib, kib)

    def sram_write_pj_per_bit(self, kib: float) -> float:
        """Energy per bit written into an SRAM of ``kib`` KiB (the read figure when no write table is given)."""
        return _interpolate(self.sram_write_pj_per_bit_by_kib or self.sram_pj_per_bit_by_kib, kib)


def _interpolate(pts: tuple[tuple[float, float], ...], kib: float) -> float:
    """Log-log interpolation in a (KiB, pJ/bit) table, clamped at its ends."""
    if kib <= pts[0][0]:
        return pts[0][1]
    if kib >= pts[-1][0]:
        return pts[-1][1]
    for (k0, e0), (k1, e1) in zip(pts, pts[1:]):
        if k0 <= kib <= k1:
            t = (math.log(kib) - math.log(k0)) / (math.log(k1) - math.log(k0))
            return math.exp(math.log(e0) + t * (math.log(e1) - math.log(e0)))
    raise AssertionError("unreachable")


# The schema: every number finite and in a physically meaningful range --------------------------------
_Pj = Annotated[float, *float_range(0.0, 1e4, unit="pJ")]
_SramPjPerBit = Annotated[float, *float_range(0.0, 1e4, above=True, unit="pJ per bit")]
_Uw = Annotated[float, *float_range(0.0, 1e6, unit="uW")]
_Nand2 = Annotated[float, *float_range(0.0, 1e9, unit="NAND2-equivalents")]
_Um2 = Annotated[float, *float_range(0.0, 1e3, above=True, unit="um^2")]
_NativeBits = Annotated[int, *int_range(2, 16, unit="bits")]
_LEAK_KEY = re.compile(r"^(fixed([2-9]|1[0-6])|bitfusion|bitserial)$")


def _pair_key(text: str) -> Pair:
    try:
        return parse_pair(text)
    except InputError as exc:
        raise ValueError(str(exc)) from None


def _fusion_key(text: str) -> Pair:
    w, a = _pair_key(text)
    if w not in (2, 4, 8) or a not in (2, 4, 8):
        raise ValueError("Bit-Fusion modes are w{2,4,8}a{2,4,8}")
    return w, a


def _leak_key(text: str) -> str:
    if not _LEAK_KEY.match(text):
        raise ValueError("must be fixed2 .. fixed16, bitfusion or bitserial")
    return text


if TYPE_CHECKING:  # validated from text such as "w4a8" into the pair itself
    _PairKey = Pair
    _FusionKey = Pair
else:
    _PairKey = Annotated[str, AfterValidator(_pair_key)]
    _FusionKey = Annotated[str, AfterValidator(_fusion_key)]
_LeakKey = Annotated[str, AfterValidator(_leak_key)]


class _SerialSteps(StrictModel):
    activation: _Pj
    both: _Pj


class _MacSchema(StrictModel):
    fixed: dict[_NativeBits, _Pj]
    bitfusion: dict[_FusionKey, _Pj]
    bitserial_step: _SerialSteps


class _LeakageSchema(StrictModel):
    pe: dict[_LeakKey, _Uw]
    sram_per_kib: _Uw


class _SerialAreaSchema(StrictModel):
    activation: _Nand2
    both: _Nand2
    # Stripes on an input-stationary array: the activation is the stationary operand, serialized in place
    activation_stationary: _Nand2 | None = None


class _PeAreaSchema(StrictModel):
    fixed: dict[_PairKey, _Nand2]
    bitfusion: _Nand2
    bitserial: _SerialAreaSchema | None = None  # widths up to 8 (lowbit_serial_pe with MAX_BITS = 8)


class _OverlapAreaSchema(StrictModel):
    per_pe: _Nand2
    per_weight_bit: _Nand2


class _AreaSchema(StrictModel):
    nand2_um2: _Um2
    pe_nand2: _PeAreaSchema
    overlap_nand2: _OverlapAreaSchema | None = None  # double-buffered weight registers (weight_preload: overlapped)
    os_nand2_per_pe: _Nand2 | None = None  # an output-stationary array's extra logic per PE
    requant_nand2: _Nand2
    sram_um2_per_bit: _Um2


class TechnologySchema(StrictModel):
    """The technology YAML as written (``sim/tech/45nm.yaml``); units are in the field names."""

    name: str | None = None
    mac_pj: _MacSchema
    sram_pj_per_bit: Annotated[dict[SramKiB, _SramPjPerBit], Field(min_length=1)]
    sram_write_pj_per_bit: Annotated[dict[SramKiB, _SramPjPerBit], Field(min_length=1)] | None = None
    register_pj_per_bit: _Pj = 0.0
    dram_pj_per_bit: _Pj
    leakage_uw: _LeakageSchema
    area: _AreaSchema | None = None


def technology_from_dict(doc: Any, where: str = "technology") -> Technology:
    """Validate a technology mapping (as in ``sim/tech/45nm.yaml``); errors are one line naming the field."""
    if not isinstance(doc, dict):
        raise InputError(
            f"{where}: expected a mapping with mac_pj, sram_pj_per_bit, dram_pj_per_bit and "
            f"leakage_uw, got {type(doc).__name__}"
        )
    try:
        t = TechnologySchema.model_validate(doc)
    except ValidationError as exc:
        raise InputError(format_validation(exc, where, TechnologySchema)) from None
    area = None
    if t.area is not None:
        area = AreaTable(
            nand2_um2=t.area.nand2_um2,
            fixed_pe_nand2={format_pair(k): v for k, v in t.area.pe_nand2.fixed.items()},
            bitfusion_pe_nand2=t.area.pe_nand2.bitfusion,
            requant_nand2=t.area.requant_nand2,
            sram_um2_per_bit=t.area.sram_um2_per_bit,
            bitserial_pe_nand2=(
                {}
                if t.area.pe_nand2.bitserial is None
                else {
                    "activation": t.area.pe_nand2.bitserial.activation,
                    "both": t.area.pe_nand2.bitserial.both,
                    **(
                        {}
                        if t.area.pe_nand2.bitserial.activation_stationary is None
                        else {"activation_stationary": t.area.pe_nand2.bitserial.activation_stationary}
                    ),
                }
            ),
            overlap_per_pe_nand2=None if t.area.overlap_nand2 is None else t.area.overlap_nand2.per_pe,
            overlap_per_weight_bit_nand2=(
                None if t.area.overlap_nand2 is None else t.area.overlap_nand2.per_weight_bit
            ),
            os_per_pe_nand2=t.area.os_nand2_per_pe,
        )
    return Technology(
        name=t.name if t.name is not None else where,
        fixed_mac_pj=dict(t.mac_pj.fixed),
        bitfusion_mac_pj=dict(t.mac_pj.bitfusion),
        serial_step_pj={"activation": t.mac_pj.bitserial_step.activation, "both": t.mac_pj.bitserial_step.both},
        sram_pj_per_bit_by_kib=tuple(sorted(t.sram_pj_per_bit.items())),
        sram_write_pj_per_bit_by_kib=(
            None if t.sram_write_pj_per_bit is None else tuple(sorted(t.sram_write_pj_per_bit.items()))
        ),
        register_pj_per_bit=t.register_pj_per_bit,
        dram_pj_per_bit=t.dram_pj_per_bit,
        pe_leakage_uw=dict(t.leakage_uw.pe),
        sram_leakage_uw_per_kib=t.leakage_uw.sram_per_kib,
        area=area,
    )


@lru_cache(maxsize=32)
def _load_path(path: str) -> Technology:
    return technology_from_dict(read_yaml(path, "technology file"), where=path)


def load_technology(name_or_path: str) -> Technology:
    """A built-in node name (``45nm``) or a YAML file path."""
    builtin = TECH_DIR / f"{name_or_path}.yaml"
    if builtin.is_file():
        return _load_path(str(builtin))
    if Path(name_or_path).is_file():
        return _load_path(str(Path(name_or_path).resolve()))
    names = sorted(p.stem for p in TECH_DIR.glob("*.yaml"))
    raise InputError(f"unknown technology {name_or_path!r} (built-in: {', '.join(names)}; or a YAML path)")

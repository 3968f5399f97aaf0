"""Technology tables: MAC, SRAM, DRAM and leakage energy (pJ, uW), loaded from YAML."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.io import read_yaml
from sim.pairs import parse_pair

__all__ = ["Technology", "AreaTable", "load_technology", "TECH_DIR"]

TECH_DIR = Path(__file__).parent / "tech"


@dataclass(frozen=True)
class AreaTable:
    """Synthesized logic areas (NAND2-equivalents), the NAND2 cell area (um^2) and SRAM density (um^2/bit)."""

    nand2_um2: float
    fixed_pe_nand2: dict[str, float]  # 'w8a8' -> NAND2-eq of a fixed PE of those widths
    bitfusion_pe_nand2: float
    requant_nand2: float
    sram_um2_per_bit: float


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

    def sram_pj_per_bit(self, kib: float) -> float:
        """Energy per bit of an SRAM of ``kib`` KiB (log-log interpolation, clamped)."""
        pts = self.sram_pj_per_bit_by_kib
        if kib <= pts[0][0]:
            return pts[0][1]
        if kib >= pts[-1][0]:
            return pts[-1][1]
        for (k0, e0), (k1, e1) in zip(pts, pts[1:]):
            if k0 <= kib <= k1:
                t = (math.log(kib) - math.log(k0)) / (math.log(k1) - math.log(k0))
                return math.exp(math.log(e0) + t * (math.log(e1) - math.log(e0)))
        raise AssertionError("unreachable")


def _positive(where: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise InputError(f"{where}: expected a finite number >= 0, got {value!r}")
    return v


def _section(doc: dict, key: str, where: str) -> Any:
    if key not in doc:
        raise InputError(f"{where}: missing field '{key}'")
    return doc[key]


def technology_from_dict(doc: Any, where: str = "technology") -> Technology:
    """Validate a technology mapping (as in ``sim/tech/45nm.yaml``)."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a mapping")
    mac = _section(doc, "mac_pj", where)
    if not isinstance(mac, dict):
        raise InputError(f"{where}: mac_pj must be a mapping")
    fixed = {int(k): _positive(f"{where}: mac_pj.fixed.{k}", v) for k, v in _section(mac, "fixed", where).items()}
    fusion = {}
    for k, v in _section(mac, "bitfusion", where).items():
        pair = parse_pair(str(k))
        fusion[pair] = _positive(f"{where}: mac_pj.bitfusion.{k}", v)
    serial = {str(k): _positive(f"{where}: mac_pj.bitserial_step.{k}", v)
              for k, v in _section(mac, "bitserial_step", where).items()}
    for mode in ("activation", "both"):
        if mode not in serial:
            raise InputError(f"{where}: mac_pj.bitserial_step needs '{mode}'")
    sram = _section(doc, "sram_pj_per_bit", where)
    sram_pts = tuple(sorted((_positive(f"{where}: sram_pj_per_bit key", k),
                             _positive(f"{where}: sram_pj_per_bit.{k}", v)) for k, v in sram.items()))
    if not sram_pts or any(k <= 0 or e <= 0 for k, e in sram_pts):
        raise InputError(f"{where}: sram_pj_per_bit needs positive sizes and energies")
    leak = _section(doc, "leakage_uw", where)
    area = _area_from_dict(doc["area"], where) if "area" in doc else None
    return Technology(
        name=str(doc.get("name", where)),
        fixed_mac_pj=fixed,
        bitfusion_mac_pj=fusion,
        serial_step_pj=serial,
        sram_pj_per_bit_by_kib=sram_pts,
        dram_pj_per_bit=_positive(f"{where}: dram_pj_per_bit", _section(doc, "dram_pj_per_bit", where)),
        pe_leakage_uw={str(k): _positive(f"{where}: leakage_uw.pe.{k}", v)
                       for k, v in _section(leak, "pe", where).items()},
        sram_leakage_uw_per_kib=_positive(f"{where}: leakage_uw.sram_per_kib",
                                          _section(leak, "sram_per_kib", where)),
        area=area,
    )


def _area_from_dict(doc: Any, where: str) -> AreaTable:
    if not isinstance(doc, dict):
        raise InputError(f"{where}: area must be a mapping")
    pe = _section(doc, "pe_nand2", f"{where}: area")
    fixed = {}
    for k, v in _section(pe, "fixed", f"{where}: area.pe_nand2").items():
        w, a = parse_pair(str(k))
        fixed[f"w{w}a{a}"] = _positive(f"{where}: area.pe_nand2.fixed.{k}", v)
    return AreaTable(
        nand2_um2=_positive(f"{where}: area.nand2_um2", _section(doc, "nand2_um2", f"{where}: area")),
        fixed_pe_nand2=fixed,
        bitfusion_pe_nand2=_positive(f"{where}: area.pe_nand2.bitfusion",
                                     _section(pe, "bitfusion", f"{where}: area.pe_nand2")),
        requant_nand2=_positive(f"{where}: area.requant_nand2", _section(doc, "requant_nand2", f"{where}: area")),
        sram_um2_per_bit=_positive(f"{where}: area.sram_um2_per_bit",
                                   _section(doc, "sram_um2_per_bit", f"{where}: area")),
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

"""Read SCALE-Sim v2/v3 ``.cfg`` files (INI) as lowbit chips, unchanged.

SCALE-Sim fixes the word at 1 byte, so its array is a fixed 8-bit PE; SRAM sizes are in kB of
1024 bytes (KiB); ``Bandwidth`` is in words per cycle; ``InterfaceBandwidth: CALC`` means a
stall-free DRAM interface.  SCALE-Sim has no clock: lowbit assumes 1000 MHz, so 1 cycle = 1 ns.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from lowbit_core.errors import InputError
from sim.config import Chip, chip_from_dict

__all__ = ["read_scalesim_cfg", "SCALESIM_CLOCK_MHZ"]

SCALESIM_CLOCK_MHZ = 1000.0
_REQUIRED = ("ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB", "Dataflow")


def read_scalesim_cfg(path: str | Path) -> Chip:
    """Parse a SCALE-Sim cfg into a :class:`~sim.config.Chip` with a fixed 8-bit PE."""
    path = Path(path)
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # keep key case (configparser's idiom)
    try:
        with path.open() as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise InputError(f"{path}: cannot read SCALE-Sim cfg ({exc.strerror})") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: malformed SCALE-Sim cfg ({str(exc).splitlines()[0]})") from None
    if not parser.has_section("architecture_presets"):
        raise InputError(f"{path}: missing section [architecture_presets]")
    arch = parser["architecture_presets"]
    missing = [k for k in _REQUIRED if k not in arch]
    if missing:
        raise InputError(f"{path}: [architecture_presets] is missing {', '.join(missing)}")

    def number(key: str, kind: type = int) -> float:
        try:
            return kind(arch[key].strip())
        except ValueError:
            raise InputError(f"{path}: [architecture_presets] {key} must be a number, got {arch[key]!r}") from None

    calc = True
    if parser.has_section("run_presets") and "InterfaceBandwidth" in parser["run_presets"]:
        calc = parser["run_presets"]["InterfaceBandwidth"].strip().upper() == "CALC"
    if calc:
        bandwidth: float | str = "calc"
    else:
        if "Bandwidth" not in arch:
            raise InputError(f"{path}: USER interface bandwidth needs [architecture_presets] Bandwidth")
        bandwidth = number("Bandwidth", float) * 8  # words (1 byte) per cycle -> bits per cycle
    run_name = path.stem
    if parser.has_section("general") and "run_name" in parser["general"]:
        run_name = parser["general"]["run_name"].strip()
    doc = {
        "name": run_name,
        "array": {
            "rows": number("ArrayHeight"),
            "cols": number("ArrayWidth"),
            "dataflow": arch["Dataflow"].strip().lower(),
            "clock_mhz": SCALESIM_CLOCK_MHZ,
        },
        "pe": {"kind": "fixed", "bits": 8},
        "mapping": "scalesim",
        "memory": {
            "ifmap_sram_kib": number("IfmapSramSzkB", float),
            "filter_sram_kib": number("FilterSramSzkB", float),
            "ofmap_sram_kib": number("OfmapSramSzkB", float),
            "dram_bw_bits_per_cycle": bandwidth,
        },
    }
    return chip_from_dict(doc, where=str(path))

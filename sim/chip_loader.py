"""Load a chip from a preset name, a chip YAML or a SCALE-Sim ``.cfg`` file.

Above both :mod:`sim.config` (the chip schema) and :mod:`sim.scalesim_cfg` (the SCALE-Sim reader, which builds a
chip with the schema), so neither imports the other's caller.
"""

from __future__ import annotations

from pathlib import Path

from lowbit_core.errors import InputError
from lowbit_core.yamlio import read_yaml
from sim.config import CHIPS_DIR, Chip, chip_from_dict, preset_names
from sim.scalesim_cfg import read_scalesim_cfg

__all__ = ["load_chip"]


def load_chip(path_or_preset: str | Path | Chip) -> Chip:
    """A preset name (see :func:`preset_names`), a chip YAML path, or a SCALE-Sim ``.cfg`` path."""
    if isinstance(path_or_preset, Chip):
        return path_or_preset
    text = str(path_or_preset)
    preset = CHIPS_DIR / f"{text.replace('-', '_')}.yaml"
    path = preset if preset.is_file() else Path(text)
    if path.suffix == ".cfg":
        return read_scalesim_cfg(path)
    if not path.is_file():
        raise InputError(
            f"unknown chip {text!r}: not a preset ({', '.join(preset_names())}) nor an existing .yaml or .cfg file"
        )
    doc = read_yaml(path, "chip file")
    if isinstance(doc, dict) and "name" not in doc:
        doc = {**doc, "name": path.stem}
    return chip_from_dict(doc, where=str(path))

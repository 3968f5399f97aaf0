"""Write ZigZag 3.9.1 inputs (hardware, workload, mappings) from lowbit's own chip and workload objects.

Runs under lowbit's venv. Everything ZigZag sees is derived here from ``sim.config.load_chip`` and
``sim.workload.zoo``, so the two tools always describe the same architecture:

* operational array: ``rows x cols`` MAC units, MAC energy ``sim.chipbatch.mac_energy_pj(chip, 8, 8)``,
  both array dimensions systolic;
* per-PE registers: one weight (8 b; two, double-buffered, when the chip's ``array.weight_preload`` is
  ``overlapped``) and one partial sum (``acc_bits``). As in lowbit, only writes of the
  stationary weights cost register energy: ``register_pj_per_bit`` times the ``(R + 1) / 2`` registers a
  weight shifts through on average (ZigZag writes the PE's register once per load, so the hops are folded
  into that one write). Weight-register reads and the partial-sum register are part of the MAC energy
  (Bit Fusion's synthesized PEs include them), so they cost 0;
* three SRAMs (weights, inputs, outputs) of the chip's full size with ``force_double_buffering`` (ZigZag
  then only lets a tile that is re-filled during the layer occupy half of the macro -- lowbit's
  ``cap = kib * 8192 / 2``), energy per bit from the technology table at the full macro size;
* DRAM: one shared read/write port of ``dram_bw_bits_per_cycle`` bits/cycle, ``dram_pj_per_bit`` per bit.

Memory energies are given to ZigZag per access of a port's widest word (``bandwidth_max``) with a
``bandwidth_min`` of one 8-bit element, so ZigZag's energy is the per-bit energy times the bits moved.

Layers: ``conv`` -> ZigZag ``Conv`` (native 7-loop nest with padding, not im2col), ``dwconv`` -> grouped
``Conv`` with a ``G`` loop, ``gemm`` -> ``Gemm``; ``matmul`` layers and layers with ``in_blocks > 1`` are
skipped (listed in ``layers.json``). Identical layer shapes are sent to ZigZag once.

Spatial mapping (fixed, the same for every ZigZag run, mirroring lowbit's weight-stationary array):
rows unroll the reduction -- input channels ``C`` first, then ``FY`` and ``FX`` while rows are left --
and columns unroll the output channels ``K``. The forced temporal ordering reproduces lowbit/SCALE-Sim's
ws loop nest: groups outermost, then the column fold over ``K``, the row fold over the remaining
reduction (``C``, ``FY``, ``FX``), and the whole output stream (``B``, ``OY``, ``OX``) innermost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sim.chip_loader import load_chip
from sim.chipbatch import mac_energy_pj
from sim.config import Chip
from sim.workload import zoo
from sim.workload.layer import Layer, Workload

__all__ = ["NETWORKS", "CHIP", "ZigZagLayer", "build_network", "hardware_doc", "write_inputs", "tech_energies"]

#: Networks this benchmark knows, by CLI name -> zoo builder (batch 1).
NETWORKS: dict[str, Callable[[], Workload]] = {
    "resnet18": lambda: zoo.resnet18(batch=1),
    "mobilenet_v2": lambda: zoo.mobilenet_v2(batch=1),
    "vgg16": lambda: zoo.vgg16(batch=1),
}
CHIP = "bitfusion_edge"
#: Where the reference JSONs live, and the ZigZag runs per network (its two LOMA objectives and the forced order).
REFERENCE = Path(__file__).resolve().parent / "reference"
OBJECTIVES = ("latency", "energy", "forced")
W_BITS = A_BITS = 8
_BIG_DRAM_BITS = 2**40


@dataclass(frozen=True)
class ZigZagLayer:
    """One distinct layer shape as ZigZag sees it, with its fixed spatial unrolling."""

    name: str
    doc: dict[str, Any]  # ZigZag workload entry (without id)
    rows: tuple[tuple[str, int], ...]  # D1 unrolling (reduction dims)
    cols: tuple[tuple[str, int], ...]  # D2 unrolling (output channels)
    forced_order: tuple[tuple[str, int], ...]  # innermost first


def tech_energies(chip: Chip) -> dict[str, float]:
    """Per-bit energies (pJ) lowbit charges on ``chip``."""
    tech = chip.tech
    mem = chip.memory
    out: dict[str, float] = {"mac_pj": mac_energy_pj(chip, W_BITS, A_BITS), "dram_pj_per_bit": tech.dram_pj_per_bit}
    for key, kib in (("ifmap", mem.ifmap_sram_kib), ("filter", mem.filter_sram_kib), ("ofmap", mem.ofmap_sram_kib)):
        out[f"sram_{key}_read_pj_per_bit"] = tech.sram_read_pj_per_bit(kib)
        out[f"sram_{key}_write_pj_per_bit"] = tech.sram_write_pj_per_bit(kib)
    out["register_pj_per_bit"] = tech.register_pj_per_bit
    return out


def _port(name: str, kind: str, bw_max: int, alloc: list[str]) -> dict[str, Any]:
    return {"name": name, "type": kind, "bandwidth_min": 8, "bandwidth_max": int(bw_max), "allocation": alloc}


def _memory(
    size_bits: int,
    read_pj_bit: float,
    write_pj_bit: float,
    operands: list[str],
    ports: list[dict[str, Any]],
    served: list[str],
    double_buffer: bool = False,
) -> dict[str, Any]:
    """One ZigZag memory; costs are per access of the port's ``bandwidth_max`` word (all read ports and all
    write ports of one memory share one width, so one r_cost / w_cost is exact per bit)."""
    r_bw = {p["bandwidth_max"] for p in ports if p["type"] in ("read", "read_write")}
    w_bw = {p["bandwidth_max"] for p in ports if p["type"] in ("write", "read_write")}
    assert len(r_bw) == 1 and len(w_bw) == 1, "one read width and one write width per memory"
    doc: dict[str, Any] = {
        "size": int(size_bits),
        "r_cost": float(read_pj_bit * r_bw.pop()),
        "w_cost": float(write_pj_bit * w_bw.pop()),
        "area": 0.0,
        "latency": 1,
        "operands": operands,
        "ports": ports,
        "served_dimensions": served,
    }
    if double_buffer:
        doc["force_double_buffering"] = True
    return doc


def hardware_doc(chip: Chip) -> dict[str, Any]:
    """ZigZag accelerator YAML document for ``chip`` (weight-stationary array, see module docstring)."""
    if chip.array.dataflow != "ws":
        raise ValueError(f"chip {chip.name!r}: only weight-stationary chips are translated (got {chip.array.dataflow})")
    if chip.memory.dram_bw_bits_per_cycle == "calc":
        raise ValueError("DRAM bandwidth 'calc' (unlimited) has no ZigZag port width; give a finite bandwidth")
    e = tech_energies(chip)
    rows, cols, acc = chip.array.rows, chip.array.cols, chip.memory.acc_bits
    dram_bw = int(round(float(chip.memory.dram_bw_bits_per_cycle)))
    reg_shift = e["register_pj_per_bit"] * (rows + 1) / 2
    overlapped = getattr(chip.array, "weight_preload", "serial") == "overlapped"
    kib = 8192
    both = ["D1", "D2"]
    memories = {
        # weight_preload 'overlapped': two weight registers per PE, the next fold's weight loads while the current
        # one computes (ZigZag hides the reload when a fold lasts at least the R-cycle shift-in, lowbit's
        # max(T, R)); 'serial': one register, the reload stalls the array.
        "reg_W": _memory(
            W_BITS * (2 if overlapped else 1),
            0.0,
            reg_shift,
            ["I2"],
            [_port("r_port_1", "read", W_BITS, ["I2, tl"]), _port("w_port_1", "write", W_BITS, ["I2, fh"])],
            [],
            double_buffer=overlapped,
        ),
        "reg_O": _memory(
            acc,
            0.0,
            0.0,
            ["O"],
            [
                _port("r_port_1", "read", acc, ["O, tl"]),
                _port("r_port_2", "read", acc, ["O, th"]),
                _port("w_port_1", "write", acc, ["O, fh"]),
                _port("w_port_2", "write", acc, ["O, fl"]),
            ],
            [],
        ),
        # Weights shift into the array one row (cols weights) per cycle, as in lowbit's R-cycle fill.
        "sram_W": _memory(
            int(chip.memory.filter_sram_kib * kib),
            e["sram_filter_read_pj_per_bit"],
            e["sram_filter_write_pj_per_bit"],
            ["I2"],
            [_port("r_port_1", "read", cols * W_BITS, ["I2, tl"]), _port("w_port_1", "write", cols * acc, ["I2, fh"])],
            both,
            double_buffer=True,
        ),
        # One activation per array row per cycle.
        "sram_I": _memory(
            int(chip.memory.ifmap_sram_kib * kib),
            e["sram_ifmap_read_pj_per_bit"],
            e["sram_ifmap_write_pj_per_bit"],
            ["I1"],
            [_port("r_port_1", "read", rows * A_BITS, ["I1, tl"]), _port("w_port_1", "write", cols * acc, ["I1, fh"])],
            both,
            double_buffer=True,
        ),
        # One partial sum per array column per cycle in each direction; separate ports (lowbit models no
        # SRAM port contention).
        "sram_O": _memory(
            int(chip.memory.ofmap_sram_kib * kib),
            e["sram_ofmap_read_pj_per_bit"],
            e["sram_ofmap_write_pj_per_bit"],
            ["O"],
            [
                _port("r_port_1", "read", cols * acc, ["O, tl"]),
                _port("r_port_2", "read", cols * acc, ["O, th"]),
                _port("w_port_1", "write", cols * acc, ["O, fl"]),
                _port("w_port_2", "write", cols * acc, ["O, fh"]),
            ],
            both,
            double_buffer=True,
        ),
        "dram": _memory(
            _BIG_DRAM_BITS,
            e["dram_pj_per_bit"],
            e["dram_pj_per_bit"],
            ["I1", "I2", "O"],
            [
                _port(
                    "rw_port_1",
                    "read_write",
                    dram_bw,
                    ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"],
                )
            ],
            both,
        ),
    }
    return {
        "name": f"lowbit_{chip.name}",
        "memories": memories,
        "operational_array": {
            "unit_energy": float(e["mac_pj"]),
            "unit_area": 1.0,
            "dimensions": ["D1", "D2"],
            "sizes": [rows, cols],
            # Inputs move along the rows and partial sums down the columns one PE per cycle.
            "systolic_dimensions": ["D1", "D2"],
        },
    }


def _unroll(sizes: dict[str, int], dims: tuple[str, ...], budget: int) -> tuple[tuple[str, int], ...]:
    """Greedy unrolling of ``dims`` (in order) into ``budget`` PEs; size-1 dims are skipped."""
    out: list[tuple[str, int]] = []
    left = budget
    for d in dims:
        if left < 2 or sizes.get(d, 1) < 2:
            continue
        u = min(sizes[d], left)
        out.append((d, u))
        left //= u
    return tuple(out)


def _forced_order(sizes: dict[str, int], spatial: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """lowbit/SCALE-Sim ws loop nest, innermost first: output stream, row fold, column fold, groups."""
    unrolled = dict(spatial)
    order: list[tuple[str, int]] = []
    for d in ("OX", "OY", "B", "FX", "FY", "C", "K", "G"):
        if d not in sizes:
            continue
        t = math.ceil(sizes[d] / unrolled.get(d, 1))
        if t > 1:
            order.append((d, t))
    return tuple(order)


def _layer_doc(layer: Layer) -> tuple[dict[str, Any], dict[str, int]]:
    """ZigZag workload entry (without id/name) and its loop sizes."""
    prec = {"W": W_BITS, "I": A_BITS, "O": 0, "O_final": A_BITS}
    if layer.kind == "gemm":
        sizes = {"B": layer.M, "K": layer.N, "C": layer.K}
        doc: dict[str, Any] = {
            "operator_type": "Gemm",
            "equation": "O[b][k]+=W[k][c]*I[b][c]",
            "dimension_relations": [],
        }
    elif layer.kind in ("conv", "dwconv"):
        sizes = {
            "B": layer.batch,
            "K": layer.N,
            "C": layer.in_c // layer.groups,
            "OY": layer.out_h,
            "OX": layer.out_w,
            "FY": layer.k_h,
            "FX": layer.k_w,
        }
        s = layer.stride
        doc = {
            "operator_type": "Conv",
            "dimension_relations": [f"ix={s}*ox+1*fx", f"iy={s}*oy+1*fy"],
            "pr_loop_dims": ["IX", "IY"],
            "padding": [[layer.pad, layer.pad], [layer.pad, layer.pad]],
        }
        if layer.groups > 1:
            sizes = {"G": layer.groups, **sizes}
            doc["equation"] = "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]"
        else:
            doc["equation"] = "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]"
    else:
        raise ValueError(f"layer {layer.name!r}: kind {layer.kind!r} is not translated")
    doc["loop_dims"] = list(sizes)
    doc["loop_sizes"] = list(sizes.values())
    doc["operand_precision"] = prec
    return doc, sizes


def build_network(workload: Workload, chip: Chip) -> tuple[list[ZigZagLayer], dict[str, str | None], list[str]]:
    """Distinct ZigZag layers, the map lowbit layer name -> ZigZag layer name (None if skipped), and skip notes."""
    rows, cols, acc = chip.array.rows, chip.array.cols, chip.memory.acc_bits
    distinct: dict[str, ZigZagLayer] = {}
    name_map: dict[str, str | None] = {}
    skipped: list[str] = []
    for layer in workload.layers:
        if layer.kind == "matmul" or layer.in_blocks > 1:
            name_map[layer.name] = None
            why = f", in_blocks={layer.in_blocks}" if layer.in_blocks > 1 else ""
            skipped.append(f"{layer.name}: {layer.kind}{why}")
            continue
        doc, sizes = _layer_doc(layer)
        doc["operand_precision"]["O"] = acc
        key = json.dumps(doc, sort_keys=True)
        if key not in distinct:
            r = _unroll(sizes, ("C", "FY", "FX"), rows)
            c = _unroll(sizes, ("K",), cols)
            distinct[key] = ZigZagLayer(layer.name, doc, r, c, _forced_order(sizes, r + c))
        name_map[layer.name] = distinct[key].name
    return list(distinct.values()), name_map, skipped


def _workload_yaml(layers: list[ZigZagLayer]) -> list[dict[str, Any]]:
    out = []
    for i, zl in enumerate(layers):
        # Both operands come from DRAM: operand_source pointing at the layer itself marks them constant.
        out.append({"id": i, "name": zl.name, **zl.doc, "operand_source": {"I": i, "W": i}})
    return out


def _mapping_yaml(layers: list[ZigZagLayer], forced: bool) -> list[dict[str, Any]]:
    links = {"O": "O", "W": "I2", "I": "I1"}
    out: list[dict[str, Any]] = []
    for zl in layers:
        entry: dict[str, Any] = {
            "name": zl.name,
            "spatial_mapping": {
                "D1": [f"{d}, {u}" for d, u in zl.rows] or ["C, 1"],
                "D2": [f"{d}, {u}" for d, u in zl.cols] or ["K, 1"],
            },
            "memory_operand_links": dict(links),
        }
        if forced:
            entry["temporal_ordering"] = [[d, t] for d, t in zl.forced_order]
        out.append(entry)
    out.append(
        {
            "name": "default",
            "spatial_mapping": {"D1": [f"C, {1}"], "D2": [f"K, {1}"]},
            "memory_operand_links": dict(links),
        }
    )
    return out


def write_inputs(network: str, out_dir: Path, chip_name: str = CHIP) -> dict[str, Any]:
    """Write hardware.yaml, workload.yaml, mapping_search.yaml, mapping_forced.yaml and layers.json."""
    chip = load_chip(chip_name)
    workload = NETWORKS[network]()
    layers, name_map, skipped = build_network(workload, chip)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "hardware.yaml": hardware_doc(chip),
        "workload.yaml": _workload_yaml(layers),
        "mapping_search.yaml": _mapping_yaml(layers, forced=False),
        "mapping_forced.yaml": _mapping_yaml(layers, forced=True),
    }
    for fname, doc in files.items():
        (out_dir / fname).write_text(yaml.safe_dump(doc, sort_keys=False, width=120))
    meta = {
        "network": network,
        "workload": workload.name,
        "chip": chip.name,
        "w_bits": W_BITS,
        "a_bits": A_BITS,
        "acc_bits": chip.memory.acc_bits,
        "energies": tech_energies(chip),
        "layer_map": name_map,
        "skipped": skipped,
        "distinct": [
            {
                "name": zl.name,
                "rows": [list(x) for x in zl.rows],
                "cols": [list(x) for x in zl.cols],
                "forced_order": [list(x) for x in zl.forced_order],
            }
            for zl in layers
        ],
    }
    (out_dir / "layers.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta

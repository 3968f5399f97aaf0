"""Run ZigZag on generated inputs and dump per-layer results as JSON.

Runs INSIDE ZigZag's own venv (it imports ``zigzag``, never ``sim``); ``run_zigzag.py`` starts it as a
subprocess. Usage::

    python zigzag_worker.py INPUT_DIR MAPPING_YAML OPT LPF_LIMIT OUT_JSON

``OPT`` is ZigZag's objective (``latency``, ``energy`` or ``EDP``); with a mapping that fixes the full
temporal ordering ZigZag evaluates exactly that one mapping. Optional LAYER names restrict the workload.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _directions() -> tuple[Any, Any]:
    from zigzag.hardware.architecture.memory_port import DataDirection
    from zigzag.mapping.data_movement import DataMoveAttr

    return DataDirection, DataMoveAttr


def _layer_record(cme: Any) -> dict[str, Any]:
    """Latency, energy breakdown and traffic (bits, per operand and memory) of one CostModelEvaluation."""
    data_dir, attr = _directions()
    hierarchy = cme.accelerator.memory_hierarchy
    links = cme.layer.memory_operand_links
    energy_by_mem: dict[str, float] = {}
    traffic: dict[str, dict[str, dict[str, float]]] = {}
    for layer_op, per_level in cme.mem_energy_breakdown_further.items():
        mem_op = links.layer_to_mem_op(layer_op)
        levels = hierarchy.get_memory_levels(mem_op)
        op_name = str(layer_op.name if hasattr(layer_op, "name") else layer_op)
        traffic[op_name] = {}
        for lvl, (level, energy) in enumerate(zip(levels, per_level)):
            energy_by_mem[level.name] = energy_by_mem.get(level.name, 0.0) + sum(energy.data.values())
            if lvl >= cme.mapping.mem_level[layer_op]:
                continue
            move = cme.mapping.unit_mem_data_movement[layer_op][lvl]
            amount = move.get_attribute(attr.DATA_TRANS_AMOUNT_PER_PERIOD)
            prec = move.get_attribute(attr.DATA_PRECISION)
            count = move.get_attribute(attr.DATA_TRANS_PERIOD_COUNT)
            units = cme.mapping.spatial_mapping.unit_count[layer_op][lvl + 1]
            traffic[op_name][level.name] = {
                d.value: float(amount.get(d) * prec.get(d) * count.get(d) * units) for d in data_dir
            }
    return {
        "name": cme.layer.name,
        "macs": int(cme.layer.total_mac_count),
        "latency_cycles": float(cme.latency_total2),
        "latency_no_onoffload_cycles": float(cme.latency_total0),
        "ideal_cycles": float(cme.ideal_cycle),
        "temporal_cycles": float(cme.ideal_temporal_cycle),
        "stall_cycles": float(cme.stall_slack_comb),
        "onload_cycles": float(cme.data_onloading_cycle),
        "offload_cycles": float(cme.data_offloading_cycle),
        "systolic_drain_cycles": float(cme.systolic_drain_cycle),
        "spatial_utilization": float(cme.mac_spatial_utilization),
        "energy_pj": float(cme.energy_total),
        "energy_mac_pj": float(cme.mac_energy),
        "energy_mem_pj": float(cme.mem_energy),
        "energy_by_memory_pj": energy_by_mem,
        "traffic_bits": traffic,
        "spatial_mapping": str(cme.layer.spatial_mapping),
        "temporal_mapping": str(cme.temporal_mapping),
        "temporal_mapping_levels": {
            str(op.name if hasattr(op, "name") else op): [[[str(d), int(s)] for d, s in lv] for lv in levels]
            for op, levels in cme.temporal_mapping.mapping_dic_stationary.items()
        },
    }


def main(argv: list[str]) -> int:
    from importlib.metadata import version

    from zigzag.api import get_hardware_performance_zigzag

    in_dir, mapping, opt, lpf, out_json = Path(argv[0]), Path(argv[1]), argv[2], int(argv[3]), Path(argv[4])
    workload = in_dir / "workload.yaml"  # ZigZag parses it; this script never reads YAML itself
    with tempfile.TemporaryDirectory(prefix="zigzag-") as tmp:
        t0 = time.perf_counter()
        _, _, cmes = get_hardware_performance_zigzag(
            workload=str(workload),
            accelerator=str(in_dir / "hardware.yaml"),
            mapping=str(mapping),
            opt=opt,
            dump_folder=str(Path(tmp) / "out"),
            lpf_limit=lpf,
            nb_spatial_mappings_generated=1,
            loma_show_progress_bar=False,
        )
        seconds = time.perf_counter() - t0
    layers = [_layer_record(cme) for cme, _ in cmes[0][1]]
    out_json.write_text(
        json.dumps(
            {
                "zigzag_version": version("zigzag-dse"),
                "seconds": seconds,
                "opt": opt,
                "lpf_limit": lpf,
                "layers": layers,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.WARNING)
    sys.exit(main(sys.argv[1:]))

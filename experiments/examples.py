"""The CLI's examples, in the order a new user runs them.

Each verb's ``--help`` shows its examples from here, the README's tour lists them, and a test runs the whole chain
from an empty directory, so an example that stops working (or stops feeding the next one) fails a test.  Every
file an example reads was written by an earlier one, under ``results/``.
"""

from __future__ import annotations

__all__ = ["EXAMPLES", "examples_for", "epilog"]

#: (verb, command line) in chain order; a verb may have several.
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "sim",
        "lowbit sim --chip bitfusion_edge --workload resnet18 --pairs w8a8,w4a4,w2a2 --objective energy "
        "--out results/resnet18_costs.csv",
    ),
    (
        "sim",
        "lowbit sim --chip bitfusion_edge --workload digits-cnn --pairs w8a8,w4a8,w4a4,w2a2 --coupled "
        "--out results/costs.csv",
    ),
    ("sweep", "lowbit sweep sweep_small --out results/sweep"),
    (
        "sensitivity",
        "lowbit sensitivity --model digits-cnn --method sqnr --pairs w8a8,w4a8,w4a4,w2a2 --out results/sens.csv",
    ),
    (
        "solve",
        "lowbit solve --costs results/costs.csv --sensitivity results/sens.csv --budget latency_us=50% "
        "--budget energy_pj=60% --out results/assign",
    ),
    (
        "pareto",
        "lowbit pareto --costs results/costs.csv --sensitivity results/sens.csv --x latency_us "
        "--model digits-cnn --points 12 --out results/pareto",
    ),
    ("quantize", "lowbit quantize --model digits-cnn --method gpfq --bits w4a8 --out results/q_digits_w4a8"),
    ("train", "lowbit train --model digits-cnn --method qgt --bits w2a8 --epochs 5 --out results/qgt_digits_w2a8"),
    ("quant-table", "lowbit quant-table --models digits-cnn --methods rtn,gpfq --bits 2,4 --out results/quant_table"),
    ("demo", "lowbit demo --out results/demo"),
    ("rtl synth", "lowbit rtl synth --out results/area.csv"),
    ("rtl gemm", "lowbit rtl gemm --m 16 --k 64 --n 24 --pair w4a4 --seed 1 --array 8x8"),
    ("rtl gemm", "lowbit rtl gemm --m 40 --k 64 --n 24 --pe fixed --mapping MKN:10 --weight-preload overlapped"),
    ("rtl verify", "lowbit rtl verify --export results/q_digits_w4a8 --layer 3 --array 8x8 --pe fixed"),
)


def examples_for(verb: str) -> list[str]:
    """The example command lines of ``verb`` (e.g. ``"sim"``, ``"rtl gemm"``)."""
    found = [line for v, line in EXAMPLES if v == verb]
    if not found:
        raise KeyError(f"no example for {verb!r}")
    return found


def epilog(verb: str) -> str:
    """The ``--help`` epilog of ``verb``: its examples, one per line (click keeps lines after a \\b marker)."""
    lines = examples_for(verb)
    head = "Example:" if len(lines) == 1 else "Examples:"
    return "\b\n" + head + "\n" + "\n".join(f"  {line}" for line in lines)

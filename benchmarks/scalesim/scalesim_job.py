"""Run one SCALE-Sim v3 simulation; executed by SCALE-Sim's own venv, never by lowbit's.

Usage: ``<scalesim-venv>/bin/python scalesim_job.py CFG TOPOLOGY LAYOUT OUT_DIR``

Goes through the Python API because the 3.0.0 ``scale.py`` CLI ignores ``-s``; with
``save_disk_space=True`` no traces are written. SCALE-Sim writes its reports to
``OUT_DIR/<run_name>/``. Prints the wall time of the simulation in seconds on the last line.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    """Simulate ``CFG`` on ``TOPOLOGY`` and write the reports under ``OUT_DIR``."""
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    cfg, topology, layout, out_dir = argv
    from scalesim.scale_sim import scalesim  # only importable inside SCALE-Sim's venv

    start = time.perf_counter()
    sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topology, layout=layout)
    sim.run_scale(top_path=out_dir)
    print(f"seconds {time.perf_counter() - start:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

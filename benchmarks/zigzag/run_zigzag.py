"""Regenerate the ZigZag 3.9.1 reference numbers in ``benchmarks/zigzag/reference/``.

Runs under lowbit's venv; ZigZag itself runs in its own venv (``install.sh``) as a subprocess::

    python benchmarks/zigzag/run_zigzag.py --network resnet18 --objective latency
    python benchmarks/zigzag/run_zigzag.py --all            # every network x {latency, energy, forced}

Objectives: ``latency`` / ``energy`` run ZigZag's LOMA temporal-mapping search (``--lpf-limit``, default
per network, see ``LPF_LIMIT``)
with that criterion; ``forced`` evaluates the one temporal mapping that reproduces lowbit/SCALE-Sim's ws
loop order (see ``generate.py``). Each run writes ``reference/<network>/`` (the exact ZigZag inputs) and
``reference/<network>_<objective>.json`` (per-layer results plus provenance).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from generate import NETWORKS, OBJECTIVES, REFERENCE, write_inputs  # noqa: E402

from benchmarks.provenance import cpu_model  # noqa: E402

DEFAULT_NETWORKS = ("resnet18", "mobilenet_v2", "vgg16")
ZIGZAG_VERSION = "3.9.1"
#: LOMA's loop-prime-factor limit per network. 6 suffices on ResNet-18 and MobileNetV2; on VGG-16's
#: 224x224 / 112x112 layers it does not (features.2: 57.8 M cycles at 6, 5.5 M at 7, 4.5 M at 8).
LPF_LIMIT = {"resnet18": 6, "mobilenet_v2": 6, "vgg16": 8}


def venv_dir() -> Path:
    """ZigZag's venv: ``$LOWBIT_BENCH_VENVS/zigzag`` (default ``~/.cache/lowbit/bench-venvs/zigzag``)."""
    root = os.environ.get("LOWBIT_BENCH_VENVS") or str(Path.home() / ".cache" / "lowbit" / "bench-venvs")
    return Path(root) / "zigzag"


def zigzag_python(install: bool) -> Path:
    """The venv's interpreter, creating the venv with ``install.sh`` when asked and missing."""
    py = venv_dir() / "bin" / "python"
    if not py.exists():
        if not install:
            sys.exit(f"ZigZag venv not found at {venv_dir()}: run benchmarks/zigzag/install.sh (or pass --install)")
        subprocess.run(["bash", str(HERE / "install.sh")], check=True)
    return py


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_forced(meta: dict[str, Any], layers: list[dict[str, Any]]) -> None:
    """Fail unless ZigZag ran exactly the forced loop nest (an incomplete ordering would silently become a search)."""
    want = {d["name"]: [tuple(x) for x in d["forced_order"]] for d in meta["distinct"]}
    for layer in layers:
        got = [tuple(x) for level in layer["temporal_mapping_levels"]["O"] for x in level]
        if got != want[layer["name"]]:
            raise RuntimeError(f"{layer['name']}: ZigZag ran {got}, not the forced order {want[layer['name']]}")


def run_one(network: str, objective: str, meta: dict[str, Any], lpf_limit: int, py: Path, jobs: int) -> dict[str, Any]:
    """Run ZigZag once on the inputs in ``reference/<network>/`` and write the reference JSON; returns it."""
    in_dir = REFERENCE / network
    mapping = in_dir / ("mapping_forced.yaml" if objective == "forced" else "mapping_search.yaml")
    scratch = Path(tempfile.gettempdir()) / "lowbit-zigzag"
    scratch.mkdir(exist_ok=True)
    out_json = scratch / f"{network}_{objective}_{os.getpid()}.json"
    log = scratch / f"{network}_{objective}_{os.getpid()}.log"
    cmd = [
        str(py),
        str(HERE / "zigzag_worker.py"),
        str(in_dir),
        str(mapping),
        "latency" if objective == "forced" else objective,
        str(lpf_limit),
        str(out_json),
    ]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"ZigZag failed for {network}/{objective} (exit {proc.returncode}); see {log}")
    result = json.loads(out_json.read_text())
    if result["zigzag_version"] != ZIGZAG_VERSION:
        print(
            f"warning: ZigZag {result['zigzag_version']} ran, the references are for {ZIGZAG_VERSION}", file=sys.stderr
        )
    out_json.unlink()
    log.unlink()
    if objective == "forced":
        check_forced(meta, result["layers"])
    provenance = {
        "tool": f"zigzag-dse=={result['zigzag_version']}",
        "api": "zigzag.api.get_hardware_performance_zigzag (LOMA temporal mapping, fixed spatial mapping)",
        "zigzag_opt": "latency" if objective == "forced" else objective,
        "temporal_mapping": "forced lowbit/SCALE-Sim ws order" if objective == "forced" else "LOMA search",
        "lpf_limit": lpf_limit,
        "command": f"python benchmarks/zigzag/run_zigzag.py --network {network} --objective {objective} "
        f"--lpf-limit {lpf_limit}",
        "invoked_as": shlex.join([Path(sys.executable).name, *sys.argv]),
        "worker_command": shlex.join(
            [
                "<zigzag-venv>/bin/python",
                "benchmarks/zigzag/zigzag_worker.py",
                *[str(Path(c).relative_to(REPO)) if c.startswith(str(REPO)) else c for c in cmd[2:-1]],
                "<out.json>",
            ]
        ),
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "concurrent_jobs": jobs,
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "zigzag_seconds": round(result["seconds"], 3),
        "subprocess_wall_seconds": round(wall, 3),
        "python": platform.python_version(),
        "lowbit_commit": _git("rev-parse", "HEAD"),
        "lowbit_dirty": bool(_git("status", "--porcelain", "--", "sim")),
        "inputs_sha256": {p.name: _sha256(p) for p in sorted(in_dir.glob("*.yaml"))},
    }
    doc = {
        "network": network,
        "objective": objective,
        "provenance": provenance,
        "setup": meta,
        "layers": result["layers"],
    }
    (REFERENCE / f"{network}_{objective}.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--network",
        action="append",
        choices=sorted(NETWORKS),
        help="network (repeatable); default with --all: " + ", ".join(DEFAULT_NETWORKS),
    )
    parser.add_argument("--objective", action="append", choices=OBJECTIVES, help="repeatable; default with --all: all")
    parser.add_argument("--all", action="store_true", help="every selected network x every objective")
    parser.add_argument(
        "--lpf-limit",
        type=int,
        help="LOMA loop-prime-factor limit (default per network: "
        + ", ".join(f"{n} {v}" for n, v in LPF_LIMIT.items())
        + ")",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="ZigZag runs in parallel (LOMA is single-threaded; >1 perturbs the recorded times)",
    )
    parser.add_argument(
        "--concurrent",
        type=int,
        default=0,
        help="ZigZag runs started elsewhere that share this machine (recorded in the provenance)",
    )
    parser.add_argument("--install", action="store_true", help="create ZigZag's venv first if it is missing")
    args = parser.parse_args(argv)
    if not args.all and not (args.network and args.objective):
        parser.error("give --network and --objective, or --all")
    networks = args.network or list(DEFAULT_NETWORKS)
    objectives = args.objective or list(OBJECTIVES)
    py = zigzag_python(args.install)
    REFERENCE.mkdir(parents=True, exist_ok=True)
    runs = [(n, o) for n in networks for o in objectives]
    metas = {n: write_inputs(n, REFERENCE / n) for n in networks}

    def go(run: tuple[str, str]) -> str:
        lpf = args.lpf_limit or LPF_LIMIT[run[0]]
        doc = run_one(run[0], run[1], metas[run[0]], lpf, py, max(1, args.jobs) + args.concurrent)
        tot_lat = sum(layer["latency_cycles"] for layer in doc["layers"])
        tot_e = sum(layer["energy_pj"] for layer in doc["layers"])
        return (
            f"{run[0]:>13s} {run[1]:>8s}: {len(doc['layers'])} distinct layers, {tot_lat:.4g} cycles, "
            f"{tot_e:.4g} pJ (distinct layers once), ZigZag {doc['provenance']['zigzag_seconds']:.1f} s"
        )

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for line in pool.map(go, runs):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

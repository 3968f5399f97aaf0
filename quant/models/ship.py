"""Regenerate (or check) the pretrained weights shipped with lowbit: ``python -m quant.models.ship`` / ``make models``.

Trains every built-in model for each seed from scratch on this machine (never from the local cache), writes
``quant/models/weights/<name>-seed<seed>.npz`` and the manifest (sha256, cache key, test accuracy, this machine's
fingerprint). Run it after editing a model, its data loader or the training loop, then commit the files; the docs'
accuracy figures come from these weights (``make docs-numbers``). ``--check`` only verifies the shipped files
against the manifest and the current code (exit 1 if any is stale or altered).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

from quant.errors import QuantInputError
from quant.models.shipped import ShippedEntry, load_shipped_state, npz_bytes, read_manifest, write_manifest

__all__ = ["SHIPPED_SEEDS", "check_shipped", "main", "ship"]

#: the seeds the docs and tests use (the quant table and studies use 0-2, the QGT lambda study 0-4)
SHIPPED_SEEDS = (0, 1, 2, 3, 4)


def ship(models: list[str], seeds: list[int], weights_dir: Path | None = None, log=print) -> list[ShippedEntry]:
    """Train and write ``models`` x ``seeds``; entries of other models or seeds in the manifest are kept."""
    from quant.data import atomic_write, evaluate_accuracy
    from quant.models.fingerprint import cpu_fingerprint
    from quant.models.shipped import WEIGHTS_DIR
    from quant.models.train import cache_key, model_split, train_model

    out_dir = WEIGHTS_DIR if weights_dir is None else weights_dir
    entries = read_manifest(out_dir)
    fingerprint = cpu_fingerprint()
    for name in models:
        key, split = cache_key(name), model_split(name)
        for seed in seeds:
            t0 = time.perf_counter()
            model = train_model(name, seed=seed)
            blob = npz_bytes({k: v.detach().numpy() for k, v in model.state_dict().items()})
            file = f"{name}-seed{seed}.npz"
            atomic_write(out_dir / file, lambda f, b=blob: f.write(b))
            acc = round(evaluate_accuracy(model, split.test_x, split.test_y), 4)
            entries[(name, seed)] = ShippedEntry(
                name, seed, file, hashlib.sha256(blob).hexdigest(), key, acc, fingerprint
            )
            log(
                f"{file}: {len(blob) / 1024:.1f} KiB, test accuracy {acc:.2f} %, key {key} "
                f"({time.perf_counter() - t0:.1f} s)"
            )
    write_manifest(list(entries.values()), out_dir)
    return list(entries.values())


def check_shipped(weights_dir: Path | None = None) -> list[str]:
    """Problems with the shipped weights: an altered or missing file, or a cache key the current code no longer
    gives (the model or training code was edited without regenerating). Empty if all is well."""
    from quant.models.train import MODELS, cache_key

    problems = []
    for (name, _), entry in sorted(read_manifest(weights_dir).items()):
        if name not in MODELS:
            problems.append(f"{entry.file}: unknown model {name!r}")
            continue
        try:
            load_shipped_state(entry, weights_dir)
        except QuantInputError as exc:
            problems.append(str(exc))
        if entry.cache_key != cache_key(name):
            problems.append(
                f"{entry.file}: trained under cache key {entry.cache_key}, the current code gives {cache_key(name)}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    from quant.models.train import MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated built-in models")
    parser.add_argument("--seeds", default=",".join(map(str, SHIPPED_SEEDS)), help="comma-separated seeds")
    parser.add_argument("--check", action="store_true", help="only verify the shipped files; exit 1 on a problem")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_shipped()
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(read_manifest())} shipped files, {len(problems)} problem(s)")
        return 1 if problems else 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        print(f"error: bad --seeds {args.seeds!r}: give integers such as 0,1,2", file=sys.stderr)
        return 2
    bad = [m for m in models if m not in MODELS]
    if bad or not models or not seeds or min(seeds) < 0:
        print(f"error: models must be among {', '.join(MODELS)} and seeds non-negative", file=sys.stderr)
        return 2
    ship(models, seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

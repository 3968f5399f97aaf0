"""A sweep's output directory: its ``sweep.json``, the checks before a run, the lock, the preparation and the cleanup
of a run that published nothing, and reading the results back (:func:`load_sweep`, :func:`load_sweep_chips`)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lowbit_core.errors import InputError
from lowbit_core.files import atomic_path, check_output_path
from sim.sweep_plan import OUTPUT_COLUMNS, SWEEP_FORMAT

__all__ = [
    "load_sweep",
    "load_sweep_chips",
    "read_meta",
    "check_dir",
    "prepare_dir",
    "dir_lock",
    "remove_if_unpublished",
]

_TMP_RE = re.compile(r"^\..+\.tmp$")  # never matches .lock


def read_meta(out: Path) -> dict[str, Any]:
    """``out/sweep.json``, or an InputError when it is missing, unreadable or not a sweep's."""
    try:
        meta = json.loads((out / "sweep.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{out / 'sweep.json'}: cannot read sweep metadata ({exc})".replace("\n", " ")) from None
    if not isinstance(meta, dict) or meta.get("format") != SWEEP_FORMAT or "partitions" not in meta:
        raise InputError(f"{out / 'sweep.json'}: not a {SWEEP_FORMAT} sweep directory")
    return meta


def check_dir(out: Path, meta: dict[str, Any]) -> None:
    """Refuse an output directory that holds another spec's results or foreign sweep files (reads only)."""
    check_output_path(out, "sweep directory", directory=True)
    if (out / "sweep.json").exists():
        old = read_meta(out)
        if old.get("spec_hash") != meta["spec_hash"]:
            raise InputError(
                f"{out}: holds results of a different sweep spec (spec hash "
                f"{str(old.get('spec_hash'))[:12]}, this spec {meta['spec_hash'][:12]}); "
                f"use a new output directory or delete it"
            )
    elif out.exists() and ((out / "parts").exists() or (out / "chips.parquet").exists()):
        raise InputError(f"{out}: has sweep outputs but no sweep.json; use a new output directory")


def prepare_dir(out: Path, meta: dict[str, Any]) -> None:
    """Under the lock: check ``out`` again, write its ``sweep.json`` and remove the temp files of a killed run."""
    check_dir(out, meta)  # again, under the lock
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(meta, indent=2) + "\n"
    path = out / "sweep.json"
    if not path.exists() or path.read_text() != text:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    # Temp files of a killed run are never published; drop them.
    parts = out / "parts"
    if parts.is_dir():
        for d in parts.iterdir():
            if d.is_dir():
                for f in d.iterdir():
                    if _TMP_RE.match(f.name):
                        f.unlink(missing_ok=True)


@contextmanager
def dir_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` so two runs never write into one directory at once (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"{out}: another lowbit sweep is writing into this directory") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_if_unpublished(created: list[Path], out: Path) -> None:
    """After a failed, refused or interrupted run: remove the directories it created, unless a finished
    partition was published into them (kept, so that a rerun resumes)."""
    if not created or any((out / "parts").glob("*/*.parquet")):
        return
    shutil.rmtree(out, ignore_errors=True)
    for directory in created[1:]:  # the ancestors this run made, innermost first, while empty
        try:
            directory.rmdir()
        except OSError:
            break


# Reading the results ----------------------------------------------------------------------------
def load_sweep(out_dir: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """All result rows of a finished sweep, in partition order (workload, then chip id).

    ``columns`` selects a subset of :data:`sim.sweep_plan.OUTPUT_COLUMNS`.  An unfinished sweep is an
    :class:`InputError` naming the missing partitions (rerun the same spec to resume).
    """
    out = Path(out_dir)
    meta = read_meta(out)
    paths = [out / p["path"] for p in meta["partitions"]]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise InputError(
            f"{out}: sweep unfinished: {len(missing)} of {len(paths)} partitions missing "
            f"(first: {missing[0].relative_to(out)}); rerun the same spec to resume"
        )
    if columns is not None:
        unknown = [c for c in columns if c not in OUTPUT_COLUMNS]
        if unknown:
            raise InputError(f"unknown sweep column {unknown[0]!r} (allowed: {', '.join(OUTPUT_COLUMNS)})")
        columns = list(columns)
    table = pa.concat_tables([pq.read_table(p, columns=columns) for p in paths])
    return table.to_pandas()


def load_sweep_chips(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """``chips.parquet``: chip_id, chip, each variant's swept fields and rows/cols/dataflow/pe.kind."""
    out = Path(out_dir)
    read_meta(out)
    return pq.read_table(out / "chips.parquet").to_pandas()

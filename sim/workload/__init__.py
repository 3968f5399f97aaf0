"""Workloads for the simulator: the zoo, SCALE-Sim topology CSVs, ONNX, torch and lowbit YAML.

:func:`load_workload` accepts any of them by name or path. Importing this package imports
neither torch nor onnx; the importers load them inside the call.

lowbit's YAML workload format
-----------------------------
A mapping with ``layers:`` (required, a non-empty list) and optional ``name:`` (default: the
file's stem) and ``description:``. Each layer is a mapping in one of two forms:

* a shorthand with ``type: conv | gemm | matmul`` and the keyword arguments of
  :func:`conv`, :func:`gemm` or :func:`matmul` (``conv`` uses PyTorch's padding rule and becomes
  ``dwconv`` when ``groups > 1``)::

      - {type: conv, name: conv1, in_hw: 224, in_c: 3, out_c: 64, k: 7, stride: 2, pad: 3}
      - {type: gemm, name: fc, tokens: 1, in_features: 512, out_features: 1000}
      - {type: matmul, name: scores, rows: 128, inner: 64, cols: 128, heads: 12}

  ``in_hw``, ``k`` and ``pad`` take an integer or a two-element list ``[h, w]``; ``conv`` and ``gemm``
  take ``in_blocks`` (PTQ-SL's n_H input blocks, default 1);
* the explicit :class:`Layer` fields, with ``kind`` instead of ``type``::

      - {name: c1, kind: conv, in_h: 58, in_w: 58, in_c: 64, out_c: 64, k_h: 3, k_w: 3, out_h: 56, out_w: 56}

  (``k_h, k_w, stride, groups, out_h, out_w, batch, in_blocks`` default to 1 and ``pad``, the leading
  zero padding, to 0).

The file is validated by a pydantic schema (:mod:`sim.workload.yaml_format`, built on :mod:`lowbit_core.schema`
like the chip's): unknown keys, missing required keys, non-integer sizes, sizes outside 1..``MAX_DIM`` (2^24;
``pad`` from 0) and a layer name given twice are one-line errors naming the file, the layer and the field; so is a
layer above ``MAX_LAYER_MACS`` (2^48 MACs, or input pixels x weights).  A key given twice in one mapping is an
error too (:func:`lowbit_core.yamlio.read_yaml`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowbit_core.errors import InputError
from lowbit_core.lazy import lazy_exports
from sim.workload.layer import KINDS, MAX_DIM, MAX_LAYER_MACS, Layer, Workload, conv, gemm, matmul
from sim.workload.onnx_import import read_onnx
from sim.workload.scalesim_csv import read_topology_csv, write_topology_csv
from sim.workload.torch_import import from_torch
from sim.workload.zoo import ZOO, zoo_names

if TYPE_CHECKING:
    from sim.workload.yaml_format import read_yaml_workload

__all__ = [
    "KINDS",
    "MAX_DIM",
    "MAX_LAYER_MACS",
    "Layer",
    "Workload",
    "ZOO",
    "conv",
    "from_torch",
    "gemm",
    "load_workload",
    "matmul",
    "read_onnx",
    "read_topology_csv",
    "read_yaml_workload",
    "write_topology_csv",
    "zoo_names",
]

_ALIASES = {
    "allminilml6v2": "minilm_l6",
    "minilm": "minilm_l6",
    "bert": "bert_base",
    "mobilenet": "mobilenet_v2",
    "vgg": "vgg16",
}
_SUFFIXES = (".csv", ".onnx", ".yaml", ".yml")


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def _zoo_lookup(name: str) -> str | None:
    keys = {_key(n): n for n in ZOO}
    keys.update({a: n for a, n in _ALIASES.items()})
    return keys.get(_key(name))


def _call_checked(fn: Callable[..., Workload], what: str, kwargs: dict[str, Any]) -> Workload:
    params = inspect.signature(fn).parameters
    allowed = [p for p in params if p not in ("path", "model", "example_input")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise InputError(
            f"{what}: unknown option(s) {', '.join(unknown)} (allowed: {', '.join(allowed) if allowed else 'none'})"
        )
    return fn(**kwargs)


def load_workload(name_or_path: str | os.PathLike[str], **kwargs: Any) -> Workload:
    """Load a workload by zoo name or from a file.

    * a zoo name, case-insensitive with ``-``/``_`` optional (``resnet18``, ``ResNet-18``,
      ``mobilenet-v2``, ``all-MiniLM-L6-v2``); ``kwargs`` go to the builder
      (e.g. ``seq_len=256`` for the transformers, ``batch=4``);
    * a ``.csv`` path: a SCALE-Sim topology (no options);
    * a ``.onnx`` path: ``kwargs`` go to :func:`read_onnx` (``batch``, ``dim_values``);
    * a ``.yaml`` / ``.yml`` path: lowbit's YAML workload format (no options).
    """
    if isinstance(name_or_path, os.PathLike):
        text = os.fspath(name_or_path)
        is_path = True
    elif isinstance(name_or_path, str):
        text = name_or_path
        is_path = any(sep in text for sep in ("/", os.sep)) or Path(text).suffix.lower() in _SUFFIXES
    else:
        raise InputError(f"workload must be a zoo name or a file path, got {type(name_or_path).__name__}")

    if not is_path:
        zoo_name = _zoo_lookup(text)
        if zoo_name is None:
            if Path(text).exists():
                is_path = True
            else:
                raise InputError(
                    f"unknown workload {text!r}: not in the zoo ({', '.join(zoo_names())}) "
                    f"and not a {'/'.join(_SUFFIXES)} file"
                )
        else:
            return _call_checked(ZOO[zoo_name], f"workload {zoo_name!r}", kwargs)

    path = Path(text)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise InputError(f"{path}: unknown workload file type {suffix or '(none)'!r} (allowed: {', '.join(_SUFFIXES)})")
    if not path.exists():
        raise InputError(f"{path}: no such workload file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if suffix == ".csv":
        return _call_checked(read_topology_csv, str(path), kwargs) if kwargs else read_topology_csv(path)
    if suffix == ".onnx":
        return _call_checked(lambda batch=1, dim_values=None: read_onnx(path, batch, dim_values), str(path), kwargs)
    from sim.workload import yaml_format  # loads pydantic, so only for a YAML file

    read = yaml_format.read_yaml_workload
    return _call_checked(read, str(path), kwargs) if kwargs else read(path)


# read_yaml_workload is imported on first use (it loads pydantic)
__getattr__, __dir__ = lazy_exports("sim.workload", {"read_yaml_workload": "sim.workload.yaml_format"}, globals())

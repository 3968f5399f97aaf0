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

Unknown keys, missing required keys, non-integer sizes and sizes above ``MAX_DIM`` (2^24) are errors
naming the field; so is a layer above ``MAX_LAYER_MACS`` (2^48 MACs, or input pixels x weights).  A key
given twice in one mapping is an error too (:func:`lowbit_core.yamlio.read_yaml`).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lowbit_core.errors import InputError
from lowbit_core.yamlio import read_yaml
from sim.workload.layer import KINDS, MAX_DIM, MAX_LAYER_MACS, Layer, Workload, conv, gemm, matmul
from sim.workload.onnx_import import read_onnx
from sim.workload.scalesim_csv import read_topology_csv, write_topology_csv
from sim.workload.torch_import import from_torch
from sim.workload.zoo import ZOO, zoo_names

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
    return _call_checked(read_yaml_workload, str(path), kwargs) if kwargs else read_yaml_workload(path)


# lowbit YAML workload format ---------------------------------------------------------------
_SHORTHAND: dict[str, Callable[..., Layer]] = {"conv": conv, "gemm": gemm, "matmul": matmul}
_PAIR_FIELDS = {"in_hw", "k", "pad"}
_LAYER_FIELDS = tuple(f.name for f in dataclasses.fields(Layer))
_LAYER_REQUIRED = tuple(
    f.name
    for f in dataclasses.fields(Layer)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
_TOP_KEYS = ("name", "layers", "description")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _layer_from_yaml(item: Any, where: str) -> Layer:  # noqa: C901 - one check per layer field
    if not isinstance(item, dict):
        raise InputError(f"{where}: must be a mapping of layer fields, got {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{where}: field 'name' is required and must be a non-empty string")
    where = f"{where} ({name})"
    if "type" in item and "kind" in item:
        raise InputError(f"{where}: give 'type' (shorthand) or 'kind' (explicit fields), not both")
    if "type" in item:
        kind = item["type"]
        if kind not in _SHORTHAND:
            raise InputError(f"{where}: field 'type' must be one of {', '.join(_SHORTHAND)}, got {kind!r}")
        fn = _SHORTHAND[kind]
        params = inspect.signature(fn).parameters
        allowed = ["type", *params]
        unknown = [k for k in item if k not in params and k != "type"]
        if unknown:
            raise InputError(
                f"{where}: unknown field(s) {', '.join(map(str, unknown))} for type {kind} "
                f"(allowed: {', '.join(allowed)})"
            )
        required = [p for p, v in params.items() if v.default is inspect.Parameter.empty]
        missing = [p for p in required if p not in item]
        if missing:
            raise InputError(f"{where}: missing field(s) {', '.join(missing)} for type {kind}")
        args: dict[str, Any] = {}
        for key, value in item.items():
            if key in ("type", "name"):
                continue
            if key in _PAIR_FIELDS and isinstance(value, list):
                if len(value) != 2 or not all(_is_int(v) for v in value):
                    raise InputError(
                        f"{where}: field {key!r} must be an integer or a list of two integers, got {value!r}"
                    )
                value = tuple(value)
            elif not _is_int(value):
                hint = " or a list of two integers" if key in _PAIR_FIELDS else ""
                raise InputError(f"{where}: field {key!r} must be an integer{hint}, got {value!r}")
            values = value if isinstance(value, tuple) else (value,)
            if key == "pad":
                if min(values) < 0 or max(values) > MAX_DIM:
                    raise InputError(f"{where}: field 'pad' must be >= 0 and at most {MAX_DIM}, got {value!r}")
            elif min(values) < 1 or max(values) > MAX_DIM:
                raise InputError(f"{where}: field {key!r} must be positive and at most {MAX_DIM}, got {value!r}")
            args[key] = value
        return fn(name, **args)

    unknown = [k for k in item if k not in _LAYER_FIELDS]
    if unknown:
        raise InputError(
            f"{where}: unknown field(s) {', '.join(map(str, unknown))} "
            f"(allowed: type, or the Layer fields {', '.join(_LAYER_FIELDS)})"
        )
    missing = [k for k in _LAYER_REQUIRED if k not in item]
    if missing:
        raise InputError(
            f"{where}: missing field(s) {', '.join(missing)} (or use the 'type' shorthand: {', '.join(_SHORTHAND)})"
        )
    kind = item["kind"]
    if kind not in KINDS:
        raise InputError(f"{where}: field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    for key, value in item.items():
        if key not in ("name", "kind") and not _is_int(value):
            raise InputError(f"{where}: field {key!r} must be an integer, got {value!r}")
    return Layer(**item)  # checks the ranges, with a message naming the field


def read_yaml_workload(path: str | os.PathLike[str]) -> Workload:
    """Read a workload in lowbit's YAML format (see the module docstring)."""
    p = Path(path)
    data = read_yaml(p, "workload file")
    if not isinstance(data, dict):
        raise InputError(
            f"{p}: a workload file must be a mapping with 'layers' (and optional 'name'), got {type(data).__name__}"
        )
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise InputError(
            f"{p}: unknown top-level field(s) {', '.join(map(str, unknown))} (allowed: {', '.join(_TOP_KEYS)})"
        )
    name = data.get("name", p.stem)
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{p}: field 'name' must be a non-empty string, got {name!r}")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise InputError(f"{p}: field 'layers' is required and must be a non-empty list of layers")
    built: list[Layer] = []
    seen: set[str] = set()
    for i, item in enumerate(layers):
        where = f"{p}: layers[{i}]"
        try:
            layer = _layer_from_yaml(item, where)
        except InputError as exc:
            msg = str(exc)
            raise InputError(msg if msg.startswith(str(p)) else f"{where}: {msg}") from None
        if layer.name in seen:
            raise InputError(f"{where}: duplicate layer name {layer.name!r}")
        seen.add(layer.name)
        built.append(layer)
    return Workload(name, tuple(built))

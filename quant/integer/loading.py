"""Loading an integer export: :func:`load_export` reads ``model.npz`` + ``meta.json``, as
:meth:`~quant.integer.model.IntegerModel.save` writes them, back as an :class:`~quant.integer.model.IntegerModel`.

Every stored field is type-checked, and every field the datapath does not use (``meta.json``, the scales, the real
bias, the bit widths, shapes and permutations) must agree with the fields it does use: the layers of a chain must fit
together, a graph must pass :func:`validate_graph_model` (which the graph export runs too), and each layer's
multipliers, shifts and biases must be the ones its scales give.  Anything else is a one-line
:class:`~quant.errors.QuantInputError` naming the file and field.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from quant.errors import QuantInputError
from quant.integer.layer import KIND_DIMS, IntegerLayer, layer_out_shape, validate_layer, window_count
from quant.integer.model import FORMAT_VERSION, META_NAME, NPZ_NAME, IntegerModel
from quant.integer.requant_constants import logit_scale, requant_constants
from quant.integer_graph import check_graph
from quant.quantizer import MAX_BITS, MIN_BITS
from quant.requant import exact

__all__ = ["load_export", "validate_graph_model"]

#: the per-layer arrays of ``model.npz``: exact dtype and number of dimensions, as written by :meth:`IntegerModel.save`
_ARRAYS: dict[str, tuple[Any, int]] = {
    "w_scales": (np.float64, 2),
    "row_bounds": (np.int64, 1),
    "col_bounds": (np.int64, 1),
    "out_perm": (np.int32, 1),
    "in_perm": (np.int32, 1),
    "bias_real": (np.float64, 1),
    "bias": (np.int32, 1),
    "multiplier": (np.int32, 2),
    "shift": (np.int32, 1),
    "bias_shift": (np.int32, 1),
}
_INT_TUPLES = ("kernel_size", "stride", "dilation", "in_shape")
_SCALARS = {
    "kind": "str",
    "relu": "bool",
    "logits": "bool",
    "product": "bool",
    "in_scale": "float",
    "out_scale": "float",
    **{
        k: "int"
        for k in (
            "out_features",
            "in_channels",
            "w_bits",
            "in_bits",
            "in_zero_point",
            "in_qmin",
            "in_qmax",
            "out_bits",
            "out_zero_point",
            "out_qmin",
            "out_qmax",
            "groups",
        )
    },
}
_SCALAR_DTYPES = {"str": "U", "bool": "b", "int": "i", "float": "f"}
_MODEL_KEYS = ("format_version", "model_name", "layers", "pre_ops", "graph")
_OP_FIELDS = {
    "relu": {"op"},
    "flatten": {"op", "start_dim", "end_dim"},
    "maxpool": {"op", "dims", "kernel", "stride", "padding", "dilation"},
}
_MAX_SHAPE_ELEMENTS = 1 << 40  #: a per-sample shape beyond this is damage, not a model


def load_export(directory: str | os.PathLike[str]) -> IntegerModel:
    """Read ``model.npz`` + ``meta.json`` written by :func:`quant.export.export_model` and validate them.

    Raises :class:`QuantInputError` (one line, naming the file and field) for a missing or unreadable file, a
    ``meta.json`` that is not the JSON object :meth:`IntegerModel.meta` writes, an npz without its arrays or with
    an array of the wrong dtype or shape, constants that break the datapath's bounds, and an export that is not
    self-consistent: every field the datapath does not use must equal what the fields it uses give (see
    ``docs/formats.md``, "Loading")."""
    d = Path(directory)
    meta_path, npz_path = d / META_NAME, d / NPZ_NAME
    if not d.is_dir():
        raise QuantInputError(f"cannot read the integer export in {d}: no such directory")
    try:
        meta = json.loads(meta_path.read_text())
        data = npz_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise QuantInputError(f"cannot read the integer export in {d}: {exc}") from None
    if not isinstance(meta, dict):
        raise QuantInputError(f"{meta_path}: not a JSON object (got {type(meta).__name__}); re-export the model")
    if meta.get("format_version") != FORMAT_VERSION:
        raise QuantInputError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, this reader supports {FORMAT_VERSION!r}"
        )
    sha = hashlib.sha256(data).hexdigest()
    if meta.get("npz_sha256") != sha:
        raise QuantInputError(f"{npz_path} does not match the sha256 recorded in {META_NAME} (partial write?)")
    arrays = _read_npz(data, npz_path)
    names = _stored_names(arrays, npz_path)
    expected = set(_MODEL_KEYS) | {f"{n}/{f.name}" for n in names for f in fields(IntegerLayer) if f.name != "name"}
    missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
    if missing or extra:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected array {', '.join(extra[:3])}"
        more = len(missing or extra) - 3
        raise QuantInputError(f"{npz_path}: {what}{f' and {more} more' if more > 0 else ''}")
    if _scalar(arrays, "format_version", "str", npz_path) != FORMAT_VERSION:
        raise QuantInputError(f"{npz_path}: format_version {str(arrays['format_version'])!r}")
    layers = [_stored_layer(arrays, name, npz_path) for name in names]
    pre_ops = _check_ops(_json_field(arrays, "pre_ops", npz_path), f"{npz_path}: pre_ops")
    graph = _json_field(arrays, "graph", npz_path)
    model = IntegerModel(layers, pre_ops, _scalar(arrays, "model_name", "str", npz_path), graph)
    if graph:
        _check_dag(model, npz_path)
    else:
        _check_chain(model, npz_path)
    _check_meta(meta, model.meta(sha), meta_path)
    return model


def _read_npz(data: bytes, path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise QuantInputError(f"{path}: not an npz (zip) archive")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise QuantInputError(f"{path}: cannot read its arrays ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _describe(arr: np.ndarray) -> str:
    return f"a {arr.dtype} array of shape {list(arr.shape)}"


def _scalar(arrays: Mapping[str, np.ndarray], key: str, kind: str, path: Path) -> Any:
    """The 0-d array ``arrays[key]`` as a Python str / bool / int / float; refused unless it is one of ``kind``."""
    arr = arrays[key]
    if arr.ndim != 0 or arr.dtype.kind != _SCALAR_DTYPES[kind] or (kind in ("int", "float") and arr.itemsize != 8):
        raise QuantInputError(
            f"{path}: {key} must be a single {kind}{'64' if kind in ('int', 'float') else ''}, got {_describe(arr)}"
        )
    return {"str": str, "bool": bool, "int": int, "float": float}[kind](arr)


def _json_field(arrays: Mapping[str, np.ndarray], key: str, path: Path) -> Any:
    try:
        return json.loads(_scalar(arrays, key, "str", path))
    except ValueError as exc:
        raise QuantInputError(f"{path}: {key} is not valid JSON ({_first_line(exc)})") from None


def _stored_names(arrays: Mapping[str, np.ndarray], path: Path) -> list[str]:
    if "layers" not in arrays:
        raise QuantInputError(f"{path}: missing layers")
    arr = arrays["layers"]
    if arr.ndim != 1 or arr.dtype.kind != "U" or len(arr) == 0:
        raise QuantInputError(f"{path}: layers must be a non-empty list of names, got {_describe(arr)}")
    names = [str(n) for n in arr]
    if len(set(names)) != len(names) or any(not n or "/" in n for n in names):
        raise QuantInputError(f"{path}: layer names must be unique, non-empty and free of '/'")
    return names


def _stored_layer(arrays: Mapping[str, np.ndarray], name: str, path: Path) -> IntegerLayer:
    """One layer from its arrays; each is type-checked before use, then the layer is validated."""
    kwargs: dict[str, Any] = {"name": name}
    for field_name, kind in _SCALARS.items():
        kwargs[field_name] = _scalar(arrays, f"{name}/{field_name}", kind, path)
    if kwargs["kind"] not in KIND_DIMS:
        raise QuantInputError(f"{path}: {name}/kind {kwargs['kind']!r} (allowed: {', '.join(KIND_DIMS)})")
    if not MIN_BITS <= kwargs["w_bits"] <= MAX_BITS:
        raise QuantInputError(f"{path}: {name}/w_bits {kwargs['w_bits']} is outside {MIN_BITS}..{MAX_BITS}")
    for field_name in _INT_TUPLES:
        arr = arrays[f"{name}/{field_name}"]
        if arr.ndim != 1 or arr.dtype != np.int64:
            raise QuantInputError(f"{path}: {name}/{field_name} must be a 1-D int64 array, got {_describe(arr)}")
        kwargs[field_name] = tuple(int(v) for v in arr)
    pad = arrays[f"{name}/padding"]
    if pad.dtype != np.int64 or not (pad.ndim == 2 and pad.shape[1] == 2 or pad.shape == (0,)):
        raise QuantInputError(f"{path}: {name}/padding must be an int64 array [dims, 2], got {_describe(pad)}")
    kwargs["padding"] = tuple((int(a), int(b)) for a, b in pad.reshape(-1, 2))
    w_dtype = _w_codes_dtype(kwargs["w_bits"])
    for field_name, (dtype, ndim) in {"w_codes": (w_dtype, 2), **_ARRAYS}.items():
        arr = arrays[f"{name}/{field_name}"]
        if arr.dtype != dtype or arr.ndim != ndim:
            raise QuantInputError(
                f"{path}: {name}/{field_name} must be a {ndim}-D {np.dtype(dtype)} array, got {_describe(arr)}"
            )
        kwargs[field_name] = arr
    kwargs["ops"] = _check_ops(_json_field(arrays, f"{name}/ops", path), f"{path}: {name}/ops")
    layer = IntegerLayer(**kwargs)
    try:
        validate_layer(layer)
        _check_constants(layer)
    except QuantInputError as exc:
        raise QuantInputError(f"{path}: {exc}") from None
    return layer


def _w_codes_dtype(w_bits: int) -> Any:
    return np.int8 if w_bits <= 8 else np.int16


def _int_list(value: Any, length: int, minimum: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    )


def _check_ops(ops: Any, where: str) -> list[dict[str, Any]]:
    """The code-domain ops of a layer (or before the first layer): a list of the records :func:`_op_record` makes."""
    if not isinstance(ops, list):
        raise QuantInputError(f"{where} must be a list of ops, got {type(ops).__name__}")
    for i, op in enumerate(ops):
        kind = op.get("op") if isinstance(op, dict) else None
        if not isinstance(kind, str) or kind not in _OP_FIELDS:
            raise QuantInputError(f"{where}[{i}]: unknown op {kind!r} (allowed: {', '.join(_OP_FIELDS)})")
        if set(op) != _OP_FIELDS[kind]:
            raise QuantInputError(f"{where}[{i}]: a {kind} op has the fields {', '.join(sorted(_OP_FIELDS[kind]))}")
        if kind == "flatten" and not _int_list([op["start_dim"], op["end_dim"]], 2, -(1 << 30)):
            raise QuantInputError(f"{where}[{i}]: flatten start_dim and end_dim must be integers")
        if kind == "maxpool":
            d = op["dims"]
            if d not in (1, 2) or isinstance(d, bool):
                raise QuantInputError(f"{where}[{i}]: maxpool dims must be 1 or 2, got {d!r}")
            if not all(_int_list(op[k], d, 1) for k in ("kernel", "stride", "dilation")) or not _int_list(
                op["padding"], d, 0
            ):
                raise QuantInputError(
                    f"{where}[{i}]: maxpool kernel, stride, dilation (>= 1) and padding (>= 0) "
                    f"must be {d} integers each"
                )
    return ops


def _op_out_shape(op: Mapping[str, Any], shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """Per-sample shape after one code-domain op (the batch dimension is dimension 0 of the op's tensor)."""
    if op["op"] == "relu":
        return shape
    if op["op"] == "maxpool":
        d = op["dims"]
        if len(shape) != d + 1:
            raise QuantInputError(f"{where}: maxpool{d}d needs [channels, {d} spatial dims], got {list(shape)}")
        return shape[:1] + tuple(
            window_count(size, 2 * p, k, s, dl, where)
            for size, p, k, s, dl in zip(shape[1:], op["padding"], op["kernel"], op["stride"], op["dilation"])
        )
    full = (1,) + shape
    start, end = op["start_dim"], op["end_dim"]
    if not (-len(full) <= start < len(full) and -len(full) <= end < len(full)):
        raise QuantInputError(f"{where}: flatten dims {start}..{end} are outside a {len(full)}-D tensor")
    start, end = start % len(full), end % len(full)
    if start == 0 or start > end:
        raise QuantInputError(f"{where}: flatten dims {start}..{end} must keep the batch dimension and be ordered")
    return (full[:start] + (math.prod(full[start : end + 1]),) + full[end + 1 :])[1:]


def _expanded_perm(prev: np.ndarray, in_channels: int) -> np.ndarray | None:
    """The input permutation a layer inherits from the previous layer's output permutation (None: sizes differ)."""
    if in_channels % len(prev):
        return None
    expand = in_channels // len(prev)
    return (prev.astype(np.int64)[:, None] * expand + np.arange(expand)).reshape(-1)


def _check_chain(model: IntegerModel, path: Path) -> None:
    """Consecutive layers agree: each input quantizer is the previous layer's output quantizer, each stored input
    shape is what the previous layer and its ops produce, permutations follow, and only the last layer emits
    logits (with its outputs in class order)."""
    layers = model.layers
    shape = layers[0].in_shape
    for i, lay in enumerate(layers):
        where = f"{path}: layer {lay.name}"
        if lay.in_shape != shape or math.prod(shape) > _MAX_SHAPE_ELEMENTS:
            raise QuantInputError(f"{where}: in_shape {list(lay.in_shape)}, but the layer before gives {list(shape)}")
        shape = layer_out_shape(lay, shape, where)
        for op in lay.ops:
            shape = _op_out_shape(op, shape, where)
        last = i == len(layers) - 1
        if lay.logits != last:
            raise QuantInputError(f"{where}: logits is {lay.logits}, but only the last layer emits logits")
        prev_perm = layers[i - 1].out_perm if i else np.arange(lay.in_channels)
        inherited = _expanded_perm(prev_perm, lay.in_channels) if i else prev_perm
        if lay.groups > 1:  # a grouped layer's channels cannot be permuted across groups
            identity = not np.any(prev_perm != np.arange(len(prev_perm)))
            inherited = np.arange(lay.in_channels) if identity else None
        if inherited is None or not np.array_equal(lay.in_perm, inherited):
            raise QuantInputError(f"{where}: in_perm does not follow the previous layer's out_perm")
        if last and np.any(lay.out_perm != np.arange(lay.out_features)):
            raise QuantInputError(f"{where}: the last layer's outputs are the classes and cannot be permuted")
        if not last:
            nxt = layers[i + 1]
            for label in ("bits", "scale", "zero_point"):
                if getattr(lay, f"out_{label}") != getattr(nxt, f"in_{label}"):
                    raise QuantInputError(
                        f"{where}: out_{label} {getattr(lay, f'out_{label}')!r} differs from the "
                        f"next layer's in_{label} {getattr(nxt, f'in_{label}')!r}"
                    )


def validate_graph_model(model: IntegerModel, where: str) -> None:
    """Check a graph model as :func:`load_export` does (raises :class:`QuantInputError` naming ``where``)."""
    _check_dag(model, where)


def _check_dag(model: IntegerModel, path: Path | str) -> None:
    """A stored graph is valid (:func:`quant.integer_graph.check_graph`), it has no chain ops, and exactly the
    layers whose output only the output node reads emit logits."""
    if model.pre_ops or any(lay.ops for lay in model.layers):
        raise QuantInputError(f"{path}: a graph export keeps its ops in the graph (pre_ops and layer ops are empty)")
    check_graph(model.graph, {lay.name: lay for lay in model.layers}, str(path))
    readers: dict[str, int] = {}
    for node in model.graph:
        for name in node["inputs"]:
            readers[name] = readers.get(name, 0) + 1
    final = model.graph[-1]["inputs"][0]
    for node in model.graph:
        if node["op"] == "matmul" and model.layer(node["layer"]).logits:
            raise QuantInputError(f"{path}: product {node['layer']}: a product does not emit logits")
        if node["op"] != "gemm":
            continue
        lay = model.layer(node["layer"])
        if lay.product:
            raise QuantInputError(f"{path}: layer {lay.name} is a product template; only a matmul node runs it")
        feeds_output = node["name"] == final and readers[node["name"]] == 1
        if lay.logits != feeds_output:
            raise QuantInputError(
                f"{path}: layer {lay.name}: logits is {lay.logits}, but only a layer that feeds "
                f"the output alone emits logits"
            )
        if np.any(lay.in_perm != np.arange(lay.in_channels)) or np.any(lay.out_perm != np.arange(lay.out_features)):
            raise QuantInputError(f"{path}: layer {lay.name}: a graph export has no channel permutations")


def _check_constants(lay: IntegerLayer) -> None:
    """The multipliers, shifts and biases the datapath uses must be the ones the stored scales and real bias give
    (and the logit scale of the last layer the one its weight scales give): no ignored field can disagree."""
    where = f"layer {lay.name}"
    eff = lay.effective_scales()
    rows = lay.row_block()
    sx = exact(lay.in_scale)
    if lay.logits:
        out_scale, mults, shifts, bias, bias_shifts = logit_scale(
            sx, eff, lay.psum_abs_max(), rows, lay.bias_real, where
        )
        if out_scale != lay.out_scale:
            raise QuantInputError(
                f"{where}: out_scale {lay.out_scale!r} is not the logit scale {out_scale!r} that "
                f"in_scale and w_scales give"
            )
    else:
        mults, shifts, bias, bias_shifts = requant_constants(sx, eff, lay.out_scale, lay.bias_real, rows, where)
    for label, want, got in (
        ("multiplier", mults, lay.multiplier),
        ("shift", shifts, lay.shift),
        ("bias", bias, lay.bias),
        ("bias_shift", bias_shifts, lay.bias_shift),
    ):
        if not np.array_equal(np.asarray(want, dtype=np.int64), got.astype(np.int64)):
            raise QuantInputError(
                f"{where}: {label} is not what in_scale, out_scale, w_scales and bias_real give; "
                f"the stored constants and scales disagree"
            )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_difference(got: Any, want: Any, path: str) -> str | None:
    """Path (``a.b[2].c``) of the first place where the JSON value ``got`` differs from ``want`` (types included),
    or None when they are equal."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return path
        for key in [*want, *(k for k in got if k not in want)]:
            sub = f"{path}.{key}" if path else key
            if key not in got or key not in want:
                return sub
            found = _first_difference(got[key], want[key], sub)
            if found is not None:
                return found
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return path
        for i, (g, w) in enumerate(zip(got, want)):
            found = _first_difference(g, w, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if type(got) is type(want) and got == want else path


_MISSING = object()


def _lookup(value: Any, path: str) -> Any:
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return _MISSING
    return value


def _check_meta(meta: dict[str, Any], want: dict[str, Any], path: Path) -> None:
    """``meta.json`` must be exactly what :meth:`IntegerModel.meta` writes for the loaded arrays."""
    want = json.loads(json.dumps(want))
    where = _first_difference(meta, want, "")
    if where is None:
        return
    got, expected = _lookup(meta, where), _lookup(want, where)
    if got is _MISSING:
        raise QuantInputError(f"{path}: missing field {where} ({NPZ_NAME} gives {_short(expected)}); re-export")
    if expected is _MISSING:
        raise QuantInputError(f"{path}: unexpected field {where}; meta.json must describe the arrays (re-export)")
    raise QuantInputError(
        f"{path}: {where} is {_short(got)} but {NPZ_NAME} gives {_short(expected)}; meta.json "
        f"must describe the arrays (re-export)"
    )

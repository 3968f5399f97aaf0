"""SCALE-Sim topology CSV files (the conv format of SCALE-Sim v2/v3).

The format is one header line and one line per layer, each ending in a trailing comma::

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
    Conv1,224,224,7,7,3,64,2,

SCALE-Sim applies no padding: the ofmap side is ``ceil((H - F + S) / S)`` (that is
``ceil((H - F) / S) + 1``), which :func:`read_topology_csv` stores explicitly in ``out_h`` and
``out_w``. Column names are matched case-insensitively; ``Stride Height``/``Stride Width`` (equal
values) may replace ``Strides`` and an optional ``Batch Size`` column sets ``batch``.
"""

from __future__ import annotations

import os
from pathlib import Path

from lowbit_core.errors import InputError
from sim.workload.layer import MAX_DIM, Layer, Workload

__all__ = ["read_topology_csv", "write_topology_csv", "scalesim_out_size", "HEADER"]

HEADER = (
    "Layer name",
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
)

# normalized column name -> internal key
_COLUMNS = {
    "layer name": "name",
    "ifmap height": "in_h",
    "ifmap width": "in_w",
    "filter height": "k_h",
    "filter width": "k_w",
    "channels": "in_c",
    "num filter": "out_c",
    "num filters": "out_c",
    "strides": "stride",
    "stride": "stride",
    "stride height": "stride_h",
    "stride width": "stride_w",
    "batch size": "batch",
    "batch": "batch",
}
_REQUIRED = {
    "name": "Layer name",
    "in_h": "IFMAP Height",
    "in_w": "IFMAP Width",
    "k_h": "Filter Height",
    "k_w": "Filter Width",
    "in_c": "Channels",
    "out_c": "Num Filter",
}


def scalesim_out_size(size: int, k: int, stride: int) -> int:
    """SCALE-Sim's ofmap side: no padding, ``ceil((size - k + stride) / stride)``."""
    return -(-(size - k + stride) // stride)


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


def _split(line: str) -> list[str]:
    fields = [f.strip() for f in line.rstrip("\r\n").split(",")]
    while fields and fields[-1] == "":  # the trailing comma (and any run of empty cells)
        fields.pop()
    return fields


def read_topology_csv(path: str | os.PathLike[str]) -> Workload:  # noqa: C901 - one check per topology column
    """Read a SCALE-Sim topology CSV into a :class:`Workload` of ``conv`` layers named after
    the file's stem. Every problem raises :class:`InputError` naming the file, line and column."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{p}: no such topology file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not a text CSV file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read topology file ({exc.strerror})") from None

    numbered = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise InputError(f"{p}: empty topology file (expected a header line: {', '.join(HEADER)},)")

    header_line, header_text = numbered[0]
    header = _split(header_text)
    columns: dict[str, int] = {}
    labels: dict[str, str] = {}
    for pos, label in enumerate(header):
        key = _COLUMNS.get(_norm(label))
        if key is None:
            raise InputError(
                f"{p}:{header_line}: unknown column {label!r} (expected the SCALE-Sim topology header: "
                f"{', '.join(HEADER)}, with optional Batch Size)"
            )
        if key in columns:
            raise InputError(f"{p}:{header_line}: column {label!r} appears twice")
        columns[key] = pos
        labels[key] = label
    missing = [lab for key, lab in _REQUIRED.items() if key not in columns]
    has_stride = "stride" in columns or ("stride_h" in columns and "stride_w" in columns)
    if not has_stride:
        missing.append("Strides")
    if missing:
        raise InputError(
            f"{p}:{header_line}: missing column(s) {', '.join(missing)} "
            f"(expected the SCALE-Sim topology header: {', '.join(HEADER)},)"
        )
    if "stride" in columns and ("stride_h" in columns or "stride_w" in columns):
        raise InputError(f"{p}:{header_line}: give either Strides or Stride Height/Stride Width, not both")

    if len(numbered) == 1:
        raise InputError(f"{p}: topology file has a header only, no layer lines")

    layers: list[Layer] = []
    seen: dict[str, int] = {}
    for lineno, line in numbered[1:]:
        fields = _split(line)
        if len(fields) != len(header):
            raise InputError(f"{p}:{lineno}: expected {len(header)} fields ({', '.join(header)}), got {len(fields)}")
        name = fields[columns["name"]]
        if not name:
            raise InputError(f"{p}:{lineno}: column {labels['name']!r} is empty")
        if name in seen:
            raise InputError(f"{p}:{lineno}: duplicate layer name {name!r} (first on line {seen[name]})")
        seen[name] = lineno

        values: dict[str, int] = {}
        for key, pos in columns.items():
            if key == "name":
                continue
            raw = fields[pos]
            try:
                value = int(raw)
            except ValueError:
                raise InputError(f"{p}:{lineno}: column {labels[key]!r} must be an integer, got {raw!r}") from None
            if not 1 <= value <= MAX_DIM:
                raise InputError(
                    f"{p}:{lineno}: column {labels[key]!r} must be positive and at most {MAX_DIM}, got {raw}"
                )
            values[key] = value
        if "stride" in values:
            stride = values["stride"]
        else:
            if values["stride_h"] != values["stride_w"]:
                raise InputError(
                    f"{p}:{lineno}: unequal strides {values['stride_h']} and "
                    f"{values['stride_w']} are not supported (lowbit layers have one stride)"
                )
            stride = values["stride_h"]
        for k_key, in_key in (("k_h", "in_h"), ("k_w", "in_w")):
            if values[k_key] > values[in_key]:
                raise InputError(
                    f"{p}:{lineno}: column {labels[k_key]!r} = {values[k_key]} is larger than "
                    f"{labels[in_key]!r} = {values[in_key]} (SCALE-Sim applies no padding)"
                )
        out_h = scalesim_out_size(values["in_h"], values["k_h"], stride)
        out_w = scalesim_out_size(values["in_w"], values["k_w"], stride)
        try:
            layers.append(
                Layer(
                    name,
                    "conv",
                    values["in_h"],
                    values["in_w"],
                    values["in_c"],
                    values["out_c"],
                    values["k_h"],
                    values["k_w"],
                    stride,
                    1,
                    out_h,
                    out_w,
                    values.get("batch", 1),
                )
            )
        except InputError as exc:
            raise InputError(f"{p}:{lineno}: {exc}") from None
    return Workload(p.stem, tuple(layers))


def _ifmap_side(size: int, k: int, stride: int, out: int) -> int:
    """The ifmap side to write so that SCALE-Sim derives ``out``: the stored side when it already
    does, else the extent the (padded) windows cover, ``(out - 1) * stride + k``."""
    if k <= size and scalesim_out_size(size, k, stride) == out:
        return size
    return (out - 1) * stride + k


def write_topology_csv(workload: Workload, path: str | os.PathLike[str]) -> None:
    """Write ``conv`` and ``gemm`` layers as a SCALE-Sim topology CSV.

    The written file reproduces lowbit's GEMM view (M, K, N) of every layer in SCALE-Sim:

    * a ``conv`` whose stored output size comes from padding is written with the ifmap side
      its windows cover, ``(out - 1) * stride + k``, since SCALE-Sim has no padding; convs
      that already follow SCALE-Sim's rule are written unchanged (so reading then writing a
      SCALE-Sim file round-trips);
    * a ``gemm`` becomes a 1x1 conv over a ``(batch * out_h) x out_w`` ifmap with ``K``
      channels and ``N`` filters.

    ``dwconv`` and ``matmul`` layers, and convs with ``batch > 1``, cannot be expressed in the
    format and raise :class:`InputError`.
    """
    p = Path(path)
    rows = [", ".join(HEADER) + ","]
    for layer in workload.layers:
        if any(c in layer.name for c in ",\r\n"):
            raise InputError(f"{p}: layer name {layer.name!r} contains a comma or line break")
        if layer.kind == "conv":
            if layer.batch != 1:
                raise InputError(
                    f"{p}: layer {layer.name!r} has batch={layer.batch}; the SCALE-Sim topology "
                    "CSV has no batch for convs"
                )
            h = _ifmap_side(layer.in_h, layer.k_h, layer.stride, layer.out_h)
            w = _ifmap_side(layer.in_w, layer.k_w, layer.stride, layer.out_w)
            fields = [h, w, layer.k_h, layer.k_w, layer.in_c, layer.out_c, layer.stride]
        elif layer.kind == "gemm":
            fields = [layer.batch * layer.out_h, layer.out_w, 1, 1, layer.K, layer.N, 1]
        else:
            raise InputError(
                f"{p}: layer {layer.name!r} has kind {layer.kind!r}, which a SCALE-Sim topology "
                "CSV cannot express (allowed: conv, gemm)"
            )
        rows.append(",".join([layer.name, *map(str, fields)]) + ",")
    try:
        p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{p}: cannot write topology file ({exc.strerror})") from None

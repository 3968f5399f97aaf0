"""Struct-of-arrays view of a workload's layers for the vectorized engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.mapping import N_TILE_CHOICES, axis_halvings, row_tiles, tile_halvings
from sim.workload.layer import Workload

__all__ = ["LayerBatch"]


@dataclass(frozen=True)
class LayerBatch:
    """Per-layer GEMM view, all arrays of shape [L] (element counts, int64).

    ``ifmap_used_g`` is the per-group ifmap footprint actually touched by the windows;
    ``act_act`` marks activation x activation products (no weights); ``window`` is the number of
    reduction elements per input channel (k_h*k_w for convs, 1 for gemm/matmul): the reduction
    is channel-major, as in PyTorch's [out, in*k_h*k_w] weight layout.  ``blocks`` is the number of
    input blocks per group (``Layer.in_blocks``, PTQ-SL's n_H), each a separate reduction.

    The ``rt_*`` arrays, shape [L, N_TILE_CHOICES], describe the ws stream tiles (blocks of output rows x
    columns, :class:`sim.mapping.RowTiles`; field names as there).  ``plane_elems`` [L] is one input
    channel's touched elements (``ifmap_used_g / C_g``); ``n_halvings`` [L, N_TILE_CHOICES] the halvings of N of
    each is stream-tile choice.
    """

    names: tuple[str, ...]
    M: np.ndarray
    K: np.ndarray
    N: np.ndarray
    G: np.ndarray
    ifmap_used_g: np.ndarray
    act_act: np.ndarray
    window: np.ndarray
    blocks: np.ndarray
    rt_h: np.ndarray
    rt_n_h: np.ndarray
    rt_h_last: np.ndarray
    rt_wt: np.ndarray
    rt_n_w: np.ndarray
    rt_w_last: np.ndarray
    rt_rows_sum: np.ndarray
    rt_rows_max: np.ndarray
    rt_cols_sum: np.ndarray
    rt_cols_max: np.ndarray
    plane_elems: np.ndarray
    n_halvings: np.ndarray

    @classmethod
    def from_workload(cls, workload: Workload) -> LayerBatch:
        ls = workload.layers
        i64 = np.int64
        tiles = [
            row_tiles(
                la.kind, la.batch, la.in_h, la.in_w, la.out_h, la.out_w, la.k_h, la.k_w, la.stride, la.pad, la.pad, la.M
            )
            for la in ls
        ]
        stack = lambda f: np.array([f(t) for t in tiles], dtype=i64).reshape(len(ls), N_TILE_CHOICES)
        return cls(
            names=tuple(layer.name for layer in ls),
            M=np.array([layer.M for layer in ls], dtype=i64),
            K=np.array([layer.K for layer in ls], dtype=i64),
            N=np.array([layer.N for layer in ls], dtype=i64),
            G=np.array([layer.groups for layer in ls], dtype=i64),
            ifmap_used_g=np.array(
                [
                    layer.ifmap_used_elems // layer.groups if layer.kind in ("conv", "dwconv") else layer.M * layer.K
                    for layer in ls
                ],
                dtype=i64,
            ),
            act_act=np.array([not layer.has_weights for layer in ls], dtype=bool),
            window=np.array([layer.window for layer in ls], dtype=i64),
            blocks=np.array([layer.in_blocks for layer in ls], dtype=i64),
            rt_h=stack(lambda t: t.h),
            rt_n_h=stack(lambda t: t.n_h),
            rt_h_last=stack(lambda t: t.h_last),
            rt_wt=stack(lambda t: t.wt),
            rt_n_w=stack(lambda t: t.n_w),
            rt_w_last=stack(lambda t: t.w_last),
            rt_rows_sum=stack(lambda t: t.rows_sum),
            rt_rows_max=stack(lambda t: t.rows_max),
            rt_cols_sum=stack(lambda t: t.cols_sum),
            rt_cols_max=stack(lambda t: t.cols_max),
            plane_elems=np.array([t.plane_elems for t in tiles], dtype=i64),
            n_halvings=np.array([tile_halvings(axis_halvings(la.out_c // la.groups)) for la in ls], dtype=i64).reshape(
                len(ls), N_TILE_CHOICES
            ),
        )

    def __len__(self) -> int:
        return len(self.names)

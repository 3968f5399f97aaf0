"""Struct-of-arrays view of a workload's layers for the vectorized engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

    @classmethod
    def from_workload(cls, workload: Workload) -> LayerBatch:
        ls = workload.layers
        i64 = np.int64
        return cls(
            names=tuple(layer.name for layer in ls),
            M=np.array([layer.M for layer in ls], dtype=i64),
            K=np.array([layer.K for layer in ls], dtype=i64),
            N=np.array([layer.N for layer in ls], dtype=i64),
            G=np.array([layer.groups for layer in ls], dtype=i64),
            ifmap_used_g=np.array([layer.ifmap_used_elems // layer.groups if layer.kind in ("conv", "dwconv")
                                   else layer.M * layer.K for layer in ls], dtype=i64),
            act_act=np.array([not layer.has_weights for layer in ls], dtype=bool),
            window=np.array([layer.window for layer in ls], dtype=i64),
            blocks=np.array([layer.in_blocks for layer in ls], dtype=i64),
        )

    def __len__(self) -> int:
        return len(self.names)

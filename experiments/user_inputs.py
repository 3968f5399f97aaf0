"""The model and data of a verb's ``--model`` / ``--data`` / ``--weights``: a built-in model with its own split, or
a user's model (:mod:`quant.models.user`) on the user's ``.npz`` (:mod:`quant.user_data`), checked together before
any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from quant.errors import QuantInputError

__all__ = ["ModelAndData", "load_model_and_data"]


@dataclass(frozen=True, eq=False)
class ModelAndData:
    """A float model in eval mode and the inputs to calibrate (and, optionally, to measure) it on."""

    model: nn.Module
    name: str  # the built-in name, or the user's spec
    calib_x: torch.Tensor
    calib_y: torch.Tensor | None  # labels of calib_x (built-in splits; a user's .npz may give them)
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    builtin: bool


def load_model_and_data(
    spec: str, data: Path | None = None, weights: Path | None = None, seed: int = 0
) -> ModelAndData:
    """``spec`` with ``data``: a built-in name without ``data`` uses its own split (trained weights of ``seed``);
    with ``data`` a built-in model or a user's model runs on the user's inputs. A user's model needs ``data``;
    ``weights`` applies to a user's model only."""
    from quant.models import MODELS, get_model, model_split
    from quant.models.user import check_model_input, is_model_spec, load_user_model
    from quant.user_data import load_user_data

    user = is_model_spec(spec)
    if not user and spec not in MODELS:
        raise QuantInputError(
            f"unknown model {spec!r}: a built-in ({', '.join(MODELS)}), path/to/file.py:factory, "
            f"package.module:factory or a .pt2 program"
        )
    if user and data is None:
        raise QuantInputError(f"model {spec!r}: your own model needs --data (an .npz with calib_x)")
    if weights is not None and not user:
        raise QuantInputError(f"--weights applies to a user model, not the built-in {spec}")
    if data is None:
        split = model_split(spec)
        return ModelAndData(
            get_model(spec, seed=seed), spec, split.calib_x, split.calib_y, split.test_x, split.test_y, True
        )
    inputs = load_user_data(data)
    model = load_user_model(spec, weights) if user else get_model(spec, seed=seed)
    check_model_input(model, inputs.calib_x, spec)
    if inputs.test_x is not None:
        check_model_input(model, inputs.test_x, spec, "test_x")
    return ModelAndData(model, spec, inputs.calib_x, inputs.calib_y, inputs.test_x, inputs.test_y, not user)

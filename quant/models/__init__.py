"""Small, real, offline reference models for lowbit's quantization work.

Every model is an ``nn.Sequential`` of Conv1d/Conv2d, BatchNorm, ReLU, MaxPool, Flatten and Linear only, so it maps
directly onto the integer datapath (BatchNorm folds into the preceding convolution). Models are trained
deterministically on first use and cached; see :mod:`quant.models.train`.

>>> from quant.models import get_model, model_split
>>> model = get_model("digits-cnn")           # trained once (~3 s), then loaded from the cache
>>> split = model_split("digits-cnn")         # the split it was trained on; use split.calib_x to calibrate
"""

from quant.models.digits_cnn import digits_cnn
from quant.models.mnist1d_cnn import mnist1d_cnn
from quant.models.train import (
    MODELS,
    ModelSpec,
    TrainConfig,
    cache_key,
    get_model,
    model_cache_path,
    model_split,
    train_model,
)

__all__ = [
    "MODELS",
    "ModelSpec",
    "TrainConfig",
    "cache_key",
    "digits_cnn",
    "get_model",
    "mnist1d_cnn",
    "model_cache_path",
    "model_split",
    "train_model",
]

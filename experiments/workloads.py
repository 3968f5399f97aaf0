"""Workloads by name for the CLI: the simulator's zoo and files, plus lowbit's built-in quantizable models."""

from __future__ import annotations

from pathlib import Path

from sim.workload import Workload, load_workload

__all__ = ["BUILTIN_MODELS", "resolve_workload"]

#: Trained models of ``quant.models`` that can also be simulated (their layers traced with torch).
BUILTIN_MODELS = ("digits-cnn", "mnist1d-cnn", "digits-resnet", "digits-mobilenet")


def resolve_workload(
    name: str,
    seed: int = 0,
    data: Path | None = None,
    weights: Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    batch: int | None = None,
    dims: dict[str, int] | None = None,
) -> Workload:
    """A built-in model's layers (traced on one calibration sample, names = its quantized layers), a user's model
    (:mod:`quant.models.user`; traced on one sample of ``data``, or a zero input of ``input_shape`` per sample, so
    its layer names are the ones ``quantize`` and ``sensitivity`` use), or anything :func:`sim.load_workload`
    accepts. ``batch`` samples per inference (torch models, the zoo, ONNX's symbolic batch); ``dims`` fixes other
    symbolic ONNX dimensions by name."""
    from quant.errors import QuantInputError
    from quant.models.user import is_model_spec

    user = is_model_spec(name) and not name.endswith((".onnx", ".yaml", ".yml", ".csv"))
    if not user and (data is not None or weights is not None or input_shape is not None):
        if name not in BUILTIN_MODELS or weights is not None or input_shape is not None:
            raise QuantInputError(f"--data, --weights and --input-shape apply to a model, not the workload {name!r}")
    if name in BUILTIN_MODELS or user:
        from experiments.user_inputs import load_model_and_data
        from sim.workload import from_torch

        if dims:
            raise QuantInputError(f"--dim applies to an ONNX workload, not the model {name!r}")
        n = 1 if batch is None else batch

        if user and data is None:
            if input_shape is None:
                raise QuantInputError(f"model {name!r}: give --data (an .npz with calib_x) or --input-shape")
            import torch

            from quant.models.user import check_model_input, load_user_model

            model = load_user_model(name, weights)
            example = torch.zeros((n, *input_shape))
            check_model_input(model, example, name, "--input-shape")
            return from_torch(model, example, name=name)
        inputs = load_model_and_data(name, data, weights, seed)
        if n > len(inputs.calib_x):
            raise QuantInputError(f"--batch {n} exceeds the {len(inputs.calib_x)} calibration samples of {name!r}")
        return from_torch(inputs.model, inputs.calib_x[:n], name=name)
    kwargs: dict = {}
    if batch is not None:
        kwargs["batch"] = batch
    if dims:
        kwargs["dim_values"] = dict(dims)
    return load_workload(name, **kwargs)

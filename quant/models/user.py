"""Users' own models: a factory in a Python file or an importable module, or a saved ``torch.export`` program.

A model spec is one of

* ``path/to/file.py:factory`` -- the file is imported as a fresh module and ``factory()`` must return an
  ``nn.Module``;
* ``package.module:factory`` -- the same for an importable module;
* ``path/to/model.pt2`` -- a program saved with ``torch.export.save``, run through its ``.module()``.

``weights`` (optional) is a ``state_dict`` saved with ``torch.save``; it must fit the module exactly. Every failure
is a one-line :class:`~quant.errors.QuantInputError` naming the spec and the cause, raised before any work starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from quant.errors import QuantInputError

__all__ = ["is_model_spec", "load_user_model", "check_model_input"]

_MODULE_NAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_IDENT = re.compile(r"^[A-Za-z_]\w*$")


def is_model_spec(text: str) -> bool:
    """Whether ``text`` names a user model (a ``file.py:factory``, ``module:factory`` or ``.pt2`` program) rather
    than a built-in model name."""
    return ":" in text or text.endswith(".pt2") or text.endswith(".py")


def _factory_from_file(path: Path, name: str, spec: str) -> Callable[[], object]:
    if not path.is_file():
        raise QuantInputError(f"model {spec!r}: no such file {path}")
    module_name = f"lowbit_user_model_{abs(hash(str(path.resolve()))):x}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise QuantInputError(f"model {spec!r}: {path} is not an importable Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file raised while importing
        sys.modules.pop(module_name, None)
        raise QuantInputError(f"model {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    return _attribute(module, name, spec, str(path))


def _factory_from_module(module_name: str, name: str, spec: str) -> Callable[[], object]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise QuantInputError(f"model {spec!r}: no module named {exc.name!r}") from None
    except Exception as exc:
        raise QuantInputError(f"model {spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    return _attribute(module, name, spec, module_name)


def _attribute(module: object, name: str, spec: str, where: str) -> Callable[[], object]:
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        hint = f" (callables there: {', '.join(public[:12])})" if public else ""
        raise QuantInputError(f"model {spec!r}: {where} has no factory {name!r}{hint}")
    factory = getattr(module, name)
    if not callable(factory):
        raise QuantInputError(f"model {spec!r}: {name} in {where} is not callable")
    return factory


def _load_weights(model: nn.Module, weights: Path, spec: str) -> None:
    if not Path(weights).is_file():
        raise QuantInputError(f"--weights: no such file {weights}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise QuantInputError(f"--weights {weights}: not a torch state dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise QuantInputError(f"--weights {weights}: expected a state dict of tensors (torch.save(model.state_dict()))")
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")] if missing else []) + (
            [f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else "")] if unexpected else []
        )
        raise QuantInputError(f"--weights {weights} does not fit model {spec!r}: {'; '.join(parts)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise QuantInputError(
                f"--weights {weights} does not fit model {spec!r}: {key} has shape "
                f"{tuple(value.shape)}, the model's is {tuple(own[key].shape)}"
            )
    model.load_state_dict(state)


def load_user_model(spec: str, weights: Path | None = None) -> nn.Module:
    """The user's model named by ``spec`` (module docstring), with ``weights`` loaded, in eval mode."""
    text = str(spec).strip()
    if text.endswith(".pt2"):
        path = Path(text)
        if not path.is_file():
            raise QuantInputError(f"model {spec!r}: no such file {path}")
        try:
            model = torch.export.load(str(path)).module()
        except Exception as exc:
            raise QuantInputError(
                f"model {spec!r}: not a saved torch.export program ({type(exc).__name__}: {exc})"
            ) from None
    else:
        source, sep, name = text.rpartition(":")
        if not sep or not source or not _IDENT.match(name):
            raise QuantInputError(
                f"model {spec!r}: give a built-in name, path/to/file.py:factory, "
                f"package.module:factory or a .pt2 program"
            )
        if source.endswith(".py") or "/" in source or "\\" in source:
            factory = _factory_from_file(Path(source), name, text)
        elif _MODULE_NAME.match(source):
            factory = _factory_from_module(source, name, text)
        else:
            raise QuantInputError(f"model {spec!r}: {source!r} is neither a .py file nor a module name")
        try:
            model = factory()
        except Exception as exc:
            raise QuantInputError(f"model {spec!r}: {name}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise QuantInputError(f"model {spec!r}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        _load_weights(model, Path(weights), text)
    return model.eval()


def check_model_input(model: nn.Module, x: torch.Tensor, spec: str, what: str = "calib_x") -> torch.Tensor:
    """Run ``model`` on two samples of ``x``; the output, or a one-line error when the data does not fit."""
    try:
        with torch.no_grad():
            return model(x[:2])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QuantInputError(
            f"--data {what} of shape {tuple(x.shape[1:])} per sample does not fit model {spec!r}: "
            f"{type(exc).__name__}: {first}"
        ) from None

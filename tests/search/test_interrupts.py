"""Ctrl-C during a HiGHS solve reaches the caller (highspy's interrupt callback would swallow it)."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from search import AssignmentModel, build_problem
from search.interrupts import sigint_kept


def test_a_swallowed_sigint_is_raised_after_the_block() -> None:
    with pytest.raises(KeyboardInterrupt):
        with sigint_kept():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1.0)  # the handler runs here
            except KeyboardInterrupt:
                pass  # what HiGHS's callback does with it


def test_no_sigint_no_exception_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGINT)
    with sigint_kept():
        pass
    assert signal.getsignal(signal.SIGINT) is before


def _model(seed: int, n_layers: int = 80) -> AssignmentModel:
    """Random uncoupled tables with two cost columns: solves take a noticeable fraction of a second."""
    rng = np.random.default_rng(seed)
    pairs = [(w, a) for w in (8, 4, 2) for a in (8, 4, 2)]
    costs = pd.DataFrame(
        [
            {
                "layer": i,
                "name": f"l{i}",
                "w_bits": w,
                "a_bits": a,
                "latency": float(rng.random()),
                "energy": float(rng.random()),
            }
            for i in range(n_layers)
            for w, a in pairs
        ]
    )
    sens = pd.DataFrame(
        [
            {"layer": i, "w_bits": w, "a_bits": a, "sensitivity": float(rng.random())}
            for i in range(n_layers)
            for w, a in pairs
        ]
    )
    return AssignmentModel(build_problem(costs, sens, ["latency", "energy"]), budgets=["latency", "energy"])


def test_ctrl_c_during_repeated_solves_reaches_the_caller() -> None:
    """Solve in a loop (almost all of the time inside HiGHS) and send SIGINT after a moment: it must arrive."""
    model = _model(0)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    deadline = time.monotonic() + 60.0
    try:
        with pytest.raises(KeyboardInterrupt):
            fraction = 0.25
            while time.monotonic() < deadline:
                model.solve({"latency": fraction * 80, "energy": 0.3 * 80})  # budgets near the optimum's
                fraction = 0.25 + (fraction + 0.01 - 0.25) % 0.2
    finally:
        timer.cancel()

"""Dask schedulers named on the command line (``--scheduler`` / ``--workers``): parsing, connecting to one, and
starting a local cluster.

Schedulers: ``None`` (in-process, threads), ``"threads"``, ``"synchronous"``, ``"local"`` /
``"local:N"`` (a :class:`distributed.LocalCluster` of N worker processes; also when ``n_workers``
is given) or a scheduler address such as ``"tcp://host:8786"``.  Importing this module loads
neither dask nor distributed.
"""

from __future__ import annotations

import re
from typing import Any

from lowbit_core.errors import InputError

__all__ = ["parse_scheduler", "connect_scheduler", "start_local_cluster", "MAX_WORKERS", "CONNECT_TIMEOUT_S"]

#: Largest worker count of a local cluster (``--workers``, ``local:N``) or thread pool.
MAX_WORKERS = 256
#: Seconds to wait for a scheduler address to answer before refusing the sweep.
CONNECT_TIMEOUT_S = 5


def parse_scheduler(scheduler: str | None, n_workers: int | None) -> tuple[str, str | None, int | None]:
    """``(mode, address, workers)`` of a ``--scheduler`` / ``--workers`` pair: mode ``threads``, ``synchronous``,
    ``local`` (a LocalCluster of ``workers`` processes, all cores when None) or ``address``."""
    if n_workers is not None and (
        not isinstance(n_workers, int) or isinstance(n_workers, bool) or not 1 <= n_workers <= MAX_WORKERS
    ):
        raise InputError(f"worker count (--workers) must be an integer in 1..{MAX_WORKERS}, got {n_workers!r}")
    if scheduler is None:
        return ("local", None, n_workers) if n_workers else ("threads", None, None)
    text = str(scheduler).strip()
    if text in ("threads", "synchronous", "sync"):
        return ("synchronous" if text == "sync" else text), None, n_workers
    m = re.fullmatch(r"local(?::(\d+))?", text)
    if m:
        count = int(m.group(1)) if m.group(1) else n_workers
        if count is not None and not 1 <= count <= MAX_WORKERS:
            raise InputError(f"scheduler {text!r}: the worker count must be in 1..{MAX_WORKERS}")
        return "local", None, count
    if re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", text):
        if n_workers is not None:
            raise InputError(
                f"a worker count (--workers) starts a local cluster, but the scheduler at {text} "
                f"has its own workers: give one or the other"
            )
        return "address", text, None
    raise InputError(
        f"unknown scheduler {text!r} (allowed: threads, synchronous, local, local:N, "
        f"or an address such as tcp://host:8786)"
    )


def _probe_tcp(address: str) -> None:
    """Open and close a TCP connection to a ``tcp://host:port`` address (OSError when nobody listens)."""
    import socket
    from urllib.parse import urlsplit

    if not address.startswith("tcp://"):
        return
    parts = urlsplit(address)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"expected tcp://host:port, got {address}")
    with socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_TIMEOUT_S):
        pass


def connect_scheduler(address: str) -> Any:
    """A :class:`distributed.Client` of the scheduler at ``address``, or a one-line InputError naming it
    after :data:`CONNECT_TIMEOUT_S` seconds (called before anything is written)."""
    import logging

    from distributed import Client

    quiet = [logging.getLogger(name) for name in ("distributed", "tornado", "asyncio")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.CRITICAL)
    try:
        _probe_tcp(address)  # a plain socket first: a refused port never reaches distributed's event loop
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (ValueError, TypeError) as exc:  # a malformed address, or one that needs TLS settings
        raise InputError(f"bad Dask scheduler address {address} ({' '.join(str(exc).split())})") from None
    except (OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"cannot connect to the Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s ({reason})"
        ) from None
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


def start_local_cluster(n_workers: int | None) -> tuple[Any, Any]:
    """``(client, cluster)`` of a new local Dask cluster of ``n_workers`` single-threaded worker processes (all
    cores when None), without a dashboard and with its logs silenced; the caller closes both."""
    import logging
    import os

    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
    )
    return Client(cluster), cluster

"""Which float kernels this process runs: the CPU, its vector ISA, torch, and the settings that pick kernels.

Training the same model with the same seed is bitwise reproducible only for an equal fingerprint: torch dispatches
convolutions and GEMMs to kernels chosen by the instruction set (and by environment overrides such as
``ATEN_CPU_CAPABILITY`` or ``ONEDNN_MAX_CPU_ISA``), and different kernels sum in different orders.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["ISA_FLAGS", "KERNEL_ENV", "cpu_fingerprint", "describe"]

#: the /proc/cpuinfo flags that select float kernels (x86 vector extensions, Arm SIMD)
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "fma",
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
)
#: environment variables that override the kernels torch, oneDNN, MKL, OpenBLAS or numpy pick
KERNEL_ENV = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
    "MKL_DEBUG_CPU_TYPE",
    "OPENBLAS_CORETYPE",
    "NPY_DISABLE_CPU_FEATURES",
)


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _caches(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> list[str]:
    """``["L1 Data 32K", ...]`` for the first CPU (empty off Linux). Kernel libraries such as oneDNN size their
    blocking by the caches, so two CPUs with equal ISA flags may still sum in different orders."""
    out = []
    for index in sorted(root.glob("index*")):
        try:
            out.append(" ".join((index / f).read_text().strip() for f in ("level", "type", "size")))
        except OSError:
            continue
    return [f"L{c}" for c in out]


def cpu_fingerprint() -> dict[str, Any]:
    """JSON-ready description of the float kernels: CPU vendor, model (name and family/model numbers), caches, ISA
    flags, torch version, torch's dispatched CPU capability, and any kernel-selecting environment variables set."""
    import torch

    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {
        "machine": platform.machine(),
        "vendor": info.get("vendor_id") or info.get("CPU implementer") or "",
        "cpu": info.get("model name") or info.get("CPU part") or platform.processor(),
        "family_model": "/".join(info.get(k, "?") for k in ("cpu family", "model", "stepping")),
        "caches": _caches(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "torch": str(torch.__version__),
        "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if os.environ.get(k)},
    }


def describe(fp: dict[str, Any]) -> str:
    """One line, e.g. ``AMD EPYC (family/model/stepping 25/17/1, x86_64; avx2 ...; torch 2.13.0+cpu, AVX512)``."""
    env = "".join(f", {k}={v}" for k, v in sorted(fp.get("kernel_env", {}).items()))
    isa = " ".join(fp.get("isa", [])) or "no ISA flags"
    return (
        f"{fp.get('cpu') or '?'} (family/model/stepping {fp.get('family_model', '?')}, {fp.get('machine', '?')}; "
        f"{isa}; torch {fp.get('torch', '?')}, {fp.get('torch_cpu_capability', '?')}{env})"
    )

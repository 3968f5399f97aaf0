#!/usr/bin/env bash
# Create brevitas's own venv OUTSIDE the lowbit checkout and install brevitas there.
# brevitas is a validation reference for lowbit's GPFQ / GPTQ, not a lowbit dependency: never add it to
# pyproject.toml.
#   LOWBIT_BENCH_VENVS  parent directory of benchmark venvs (default ~/.cache/lowbit/bench-venvs)
#   PYTHON              interpreter used to create the venv (default python3.11, else python3)
# torch is pinned to lowbit's 2.13.0: an unpinned torch would pull several GB of CUDA packages.
set -euo pipefail
root="${LOWBIT_BENCH_VENVS:-$HOME/.cache/lowbit/bench-venvs}"
venv="$root/brevitas"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
BREVITAS_VERSION="${BREVITAS_VERSION:-0.13.4}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import brevitas, torch, numpy" 2>/dev/null; then
    "$venv/bin/python" -c "import importlib.metadata as m; print('brevitas', m.version('brevitas'), 'already in $venv')"
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$root"
    "$py" -m venv "$venv"
fi
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location .* is ignored" || true; }; }  # local index noise
quiet "$venv/bin/python" -m pip install --quiet --upgrade pip
quiet "$venv/bin/python" -m pip install --quiet "torch==2.13.0" "brevitas==$BREVITAS_VERSION" numpy
"$venv/bin/python" -W ignore -c "import brevitas.graph.gpfq, brevitas.graph.gptq"
"$venv/bin/python" -c "import importlib.metadata as m; print('brevitas', m.version('brevitas'), 'torch', m.version('torch'), 'in $venv')"

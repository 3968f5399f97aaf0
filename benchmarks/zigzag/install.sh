#!/usr/bin/env bash
# Create ZigZag's own venv OUTSIDE the lowbit checkout and install zigzag-dse there.
# ZigZag is a validation reference, not a lowbit dependency: never add it to pyproject.toml.
#   LOWBIT_BENCH_VENVS  parent directory of benchmark venvs (default ~/.cache/lowbit/bench-venvs)
#   PYTHON              interpreter used to create the venv (default python3)
set -euo pipefail
root="${LOWBIT_BENCH_VENVS:-$HOME/.cache/lowbit/bench-venvs}"
venv="$root/zigzag"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$root"
    "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "zigzag-dse==3.9.1" six
"$venv/bin/python" -c "import importlib.metadata as m; print('zigzag-dse', m.version('zigzag-dse'), 'in $venv')"

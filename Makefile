# lowbit: `make demo` runs the main job, `make test` runs every test.  Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# every Python tree ruff checks and formats (ruff and mypy are pinned in pyproject.toml: their verdicts differ
# between versions); mypy checks lowbit_core, sim and search ([tool.mypy] in pyproject.toml)
CODE := lowbit_core sim search quant rtl experiments tests benchmarks

.PHONY: demo test lint bench setup tools clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Debian tools for the RTL: yosys (synthesis), ccache (Verilator builds), iverilog (second simulator).
# Installed when running as root; otherwise a missing tool is reported by the tests that need it.
tools:
	@if command -v yosys >/dev/null && command -v ccache >/dev/null && command -v iverilog >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -q yosys ccache iverilog >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q yosys ccache iverilog >/dev/null)); \
	else echo "note: yosys/ccache/iverilog missing and not root; install them for the RTL tests"; fi

setup: $(STAMP) tools

demo: $(STAMP)
	$(VENV)/bin/lowbit demo

test: $(STAMP) tools
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n 2 -m "slow or not slow or rtl"

lint: $(STAMP)
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/bench_resnet18_table.py
	$(PY) benchmarks/bench_mapper.py
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf $(VENV) results build .pytest_cache .hypothesis

.PHONY: models docs-numbers

# Retrain the built-in models' shipped weights (quant/models/weights/, seeds 0-4) after editing a model, its data
# or the training loop; commit the .npz files and manifest.json, then run `make docs-numbers`.
models: $(STAMP)
	$(PY) -m quant.models.ship

# Every accuracy figure in docs/, regenerated from the shipped weights into results/ (about 35 min on 2 cores):
# the quant table (seeds 0,1,2), the training and PTQ-SL studies, the demo, the spread of the quant table under
# emulated instruction sets; collected in results/docs_numbers.md.
docs-numbers: $(STAMP)
	$(PY) -m experiments.docs_numbers --out results --jobs 2

# lowbit: `make demo` runs the main job, `make test` runs every test.  Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench setup clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lowbit demo

test: $(STAMP)
	$(VENV)/bin/ruff check sim search quant rtl experiments tests benchmarks
	$(PY) -m pytest -q -n 2 -m "slow or not slow or rtl"

lint: $(STAMP)
	$(VENV)/bin/ruff check sim search quant rtl experiments tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_resnet18_table.py
	$(PY) benchmarks/bench_sweep.py

clean:
	rm -rf $(VENV) results build .pytest_cache .hypothesis

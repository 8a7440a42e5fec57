# rewardfilter: `make demo` and `make test` each work as the first command on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench lint clean

install: $(STAMP)

# torch first, pinned to the CPU build on this machine's disk (a plain `torch` pulls a CUDA build).
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

# The main comparative experiment (resumable: re-running skips finished runs), then its table and plots.
demo: install
	$(VENV)/bin/rewardfilter run experiments/demo.yaml --out runs/demo
	$(VENV)/bin/rewardfilter report runs/demo

# trl (the [trl] extra, in [all]) is also the baseline of benchmarks/code_trainer.py and trl_overhead.py.
bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

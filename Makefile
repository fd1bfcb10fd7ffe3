# RPG Studio: two commands do all the set-up on a fresh machine.
#   make demo   sets up, then runs the main job on embedded defaults (PORT=8000, home .rpg-studio)
#   make test   sets up, then runs ruff, mypy and the test suite
# VENV can live outside the clone (CI keeps one across runs): make test VENV=/path/to/venv

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.rpg-studio-installed
TORCH := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
PORT ?= 8000

.PHONY: setup test lint typecheck pytest demo bench clean system-deps

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[service,dev]"
	touch $(STAMP)

# System packages the demo and the tests use (installed as root where apt exists; skipped else):
# Fashion-MNIST (real data a package ships), chromium (browser tests), docker-compose (its parser).
APT_PACKAGES := dataset-fashion-mnist chromium docker-compose
system-deps:
	@missing=""; \
	[ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing:$$missing"; \
		(apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null \
			|| echo "note: could not install$$missing"; \
	elif [ -n "$$missing" ]; then echo "note: missing$$missing (install them with apt as root)"; fi

lint: setup
	$(VENV)/bin/ruff check rpg_core api worker frontend studio tests benchmarks
	$(VENV)/bin/ruff format --check rpg_core api worker frontend studio tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# the demo's server port: make demo PORT=8010 when 8000 is taken
demo: setup
	$(PY) -m worker.demo --port $(PORT)

bench: setup
	$(PY) benchmarks/bench_ring.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_compact.py
	$(PY) benchmarks/bench_analysis.py
	$(PY) benchmarks/bench_api.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache

# RPG Studio: two commands do all the set-up on a fresh machine.
#   make demo   sets up, then runs the main job on embedded defaults (PORT=8000, home .rpg-studio)
#   make test   sets up, then runs ruff, mypy and the whole test suite
#   make test-fast   the inner loop: ruff, mypy and the tests not marked slow, browser or e2e
# Installs are pinned by constraints.txt (make constraints regenerates it from the venv).
# VENV can live outside the clone (CI keeps one across runs): make test VENV=/path/to/venv

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.rpg-studio-installed
CONSTRAINTS := constraints.txt
# torch==2.14.1 torchvision==0.29.1 (local wheels), pinned in constraints.txt like the rest
TORCH := $(shell grep -E '^torch(vision)?==' $(CONSTRAINTS))
PYTEST_ARGS ?=
# two pytest processes: the service tests one at a time in one, the library's beside them
# (tests/conftest.py: SERIAL_GROUP); PYTEST_XDIST= runs everything in one process
PYTEST_XDIST ?= -n 2 --dist loadgroup
FAST := not slow and not browser and not e2e
PORT ?= 8000

.PHONY: setup test test-fast lint typecheck pytest pytest-fast demo bench clean system-deps constraints

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PIP) install -q -c $(CONSTRAINTS) $(TORCH)
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[service,dev]"
	touch $(STAMP)

# the pinned versions: what the working venv holds, without the editable project
constraints:
	{ sed -n '/^#/p' $(CONSTRAINTS); $(PIP) freeze --exclude-editable | grep -v '^#'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

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
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test: lint typecheck pytest

# the fast lane (see README, "Tests"): no test marked slow, browser (chromium) or e2e (processes)
pytest-fast: setup
	$(PY) -m pytest -m "$(FAST)" $(PYTEST_ARGS)

test-fast: lint typecheck pytest-fast

# the demo's server port: make demo PORT=8010 when 8000 is taken
demo: setup
	$(PY) -m worker.demo --port $(PORT)

bench: setup
	$(PY) benchmarks/bench_ring.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_compact.py
	$(PY) benchmarks/bench_load.py
	$(PY) benchmarks/bench_analysis.py
	$(PY) benchmarks/bench_api.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache

# Two commands on a fresh machine: `make run` and `make test`. Both install
# what is missing first (make setup, which also works alone).
VENV := .venv
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
ARGS ?=

.PHONY: setup setup-run run test test-loaded test-fast bench lint format screenshots clean

# Everything: what sigtop needs and the test tools (pinned: requirements/constraints.txt).
setup:
	@scripts/setup.sh test

# Only what running sigtop needs: no test tools.
setup-run:
	@scripts/setup.sh run

# Runs this checkout's code as root (via sudo when not root: it says so, and
# refuses when others can write to the tree).
run: setup-run
	@scripts/run-as-root.sh $(ARGS)

# Every test, the BPF ones included; they fail (never skip) without root/BPF.
# (sudo keeps SIGTOP_REQUIRE_BPF: without it a missing BPF would skip instead of fail.)
test: setup
	$(SUDO) env SIGTOP_REQUIRE_BPF=$${SIGTOP_REQUIRE_BPF:-} $(VENV)/bin/python -m pytest -q $(ARGS)

# The suite again while two CPU-bound loops hold both cores: what a busy production box is.
test-loaded: setup
	@scripts/loaded.sh $(SUDO) env SIGTOP_REQUIRE_BPF=$${SIGTOP_REQUIRE_BPF:-} $(VENV)/bin/python -m pytest -q $(ARGS)

# Model, CLI and UI tests only: no root, no kernel.
test-fast: setup
	$(VENV)/bin/python -m pytest -q -m "not bpf" $(ARGS)

bench: setup
	@command -v bpftrace >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bpftrace >/dev/null)
	$(SUDO) $(VENV)/bin/python bench/run.py $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

screenshots: setup
	$(SUDO) $(VENV)/bin/python scripts/screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info

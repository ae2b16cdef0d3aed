# Two commands on a fresh machine: `make run` and `make test`. Both install
# what is missing first (make setup, which also works alone).
VENV := .venv
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
ARGS ?=
# make install's places: PREFIX is where sigtop runs from, DESTDIR a staging root in front of it (packaging).
PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
# Generated files carry the last commit's date, not the build's: the same tree builds the same man page.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

.PHONY: setup setup-run setup-build run test test-loaded test-fast bench lint format screenshots clean \
	man completions unit wheel install uninstall check-wheel

# Everything: what sigtop needs and the test tools (pinned: requirements/constraints.txt).
setup:
	@scripts/setup.sh test

# Only what running sigtop needs: no test tools.
setup-run:
	@scripts/setup.sh run

# What running sigtop needs, and the generators of the man page and completions.
setup-build:
	@scripts/setup.sh build

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
	$(VENV)/bin/python -m pytest -q -m "not bpf and not install" $(ARGS)

bench: setup
	@(command -v bpftrace && test -x /usr/sbin/sigsnoop) >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bpftrace libbpf-tools >/dev/null)
	$(SUDO) $(VENV)/bin/python bench/run.py $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

screenshots: setup
	$(SUDO) $(VENV)/bin/python scripts/screenshots.py

# The man page, from the parser (options, commands) and man/sigtop.1.include (keys, tables, exit statuses).
# Always regenerated: it takes a second and can then never be older than the code.
man: setup-build
	@mkdir -p $(BUILD)
	$(VENV)/bin/argparse-manpage --module sigtop.cli --function build_parser --project-name sigtop \
		--version "$$($(VENV)/bin/python -c 'from sigtop import version; print(version())')" \
		--description "a live, top-like monitor of Linux signals" --manual-title "User Commands" \
		--include man/sigtop.1.include --output $(BUILD)/sigtop.1
	@# argparse-manpage wraps help text unescaped: a line it starts with ' would be read as a macro.
	sed -i "s/^'/\\\\\&'/" $(BUILD)/sigtop.1

# bash, zsh and fish completions, from the same parser (shtab; scripts/completions.py adds signals, pids, files).
completions: setup-build
	@mkdir -p $(BUILD)/completions
	$(VENV)/bin/python scripts/completions.py bash > $(BUILD)/completions/sigtop.bash
	$(VENV)/bin/python scripts/completions.py zsh > $(BUILD)/completions/_sigtop
	$(VENV)/bin/python scripts/completions.py fish > $(BUILD)/completions/sigtop.fish

# The exporter's unit, starting the sigtop this PREFIX installs.
unit:
	@mkdir -p $(BUILD)
	sed 's|/usr/local/bin/sigtop|$(PREFIX)/bin/sigtop|' deploy/sigtop-exporter.service > $(BUILD)/sigtop-exporter.service

# setuptools stages in ./build/lib whatever BUILD is: a stale one would put deleted modules in the wheel.
wheel: setup-build
	rm -rf $(BUILD)/dist build/lib build/bdist.*
	$(VENV)/bin/pip wheel -q --disable-pip-version-check --no-deps -w $(BUILD)/dist .

# As root: sigtop in its own venv under $(PREFIX)/lib/sigtop, $(PREFIX)/bin/sigtop, man page, completions, unit.
# Again to upgrade (a fresh venv each time); make uninstall removes exactly what it put.
install: man completions unit wheel
	@PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) BUILD=$(BUILD) scripts/install.sh install $(BUILD)/dist/sigtop-*.whl

uninstall:
	@PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) scripts/install.sh uninstall

# CI: the wheel installed as users do (a fresh venv, pipx), each running --version, doctor and batch as root.
check-wheel: setup
	$(SUDO) scripts/check-wheel.sh

clean:
	rm -rf $(VENV) build *.egg-info

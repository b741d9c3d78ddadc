# mailsms: `make run` starts the gateway on embedded defaults,
# `make test` runs lint (ruff, mypy --strict) and the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Debian packages the test suite drives (installed when missing and root).
DEBIAN_TEST_PACKAGES := swaks

.PHONY: run test lint install system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(INSTALLED)

system-deps:
	@missing=""; \
	for pkg in $(DEBIAN_TEST_PACKAGES); do \
	  dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "not root: tests needing$$missing will be skipped"; \
	  fi; \
	fi

run: install
	$(BIN)/mailsms db init
	$(BIN)/mailsms serve

lint: install
	$(BIN)/ruff check mailsms tests
	$(BIN)/mypy mailsms

test: lint system-deps
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# `make bench`: mailsms against the bare aiosmtpd ceiling (tests/bench),
# ~4 minutes on 2 cores; `make bench BENCH_ARGS=--quick` for ~2.  Installs
# Postfix's smtp-source when missing (root + apt); Postfix is left
# unconfigured ("No configuration") and not running, so nothing takes port 25.
.PHONY: bench
BENCH_ARGS ?=
bench: install
	@if ! command -v smtp-source >/dev/null && [ ! -x /usr/sbin/smtp-source ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing postfix for smtp-source (unconfigured, not started)"; \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends postfix >/dev/null; \
	    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	      systemctl disable --now postfix >/dev/null 2>&1 || true; \
	    fi; \
	    postfix status >/dev/null 2>&1 && postfix stop || true; \
	  else \
	    echo "smtp-source missing and not root: using the built-in asyncio load generator"; \
	  fi; \
	fi
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

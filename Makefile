# hsmcert: the README's two commands are `make demo` and `make test`; everything they need is set up here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Debian packages the end-to-end tests and the demo drive for real.
APT_PACKAGES := nginx haproxy stunnel4 curl openssl libssl-dev gcc make systemd pebble osslsigncode

.PHONY: all setup venv system-deps native native-asan test test-fast lint demo bench clean

all: setup

setup: system-deps venv native

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Installs the Debian packages that are missing (needs root, as on CI and a fresh machine).
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root, or install: $$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# Debian starts nginx/haproxy on install; the project runs its own instances only.
	@-systemctl stop nginx haproxy >/dev/null 2>&1 || true

native:
	$(MAKE) -C native

native-asan:
	$(MAKE) -C native asan codec-test

# Two workers (pytest-xdist): most tests wait on processes they start, so two share the 2-core CI machine
# well; worksteal evens out the long docs pages.
test: setup native-asan
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist worksteal

# Only the tests that start no process (no emulator, agent, nginx, openssl, make...): see
# tests/fixtures/process_marks.py. --forbid-processes fails any selected test that starts one anyway.
test-fast: venv
	$(PY) -m pytest -q -p no:cacheprovider -m 'not process' --forbid-processes

lint: venv
	$(VENV)/bin/ruff check hsmcert tests bench
	$(VENV)/bin/ruff format --check hsmcert tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

demo: setup
	$(PY) -m hsmcert.demo

bench: setup
	$(PY) bench/run_all.py

clean:
	$(MAKE) -C native clean
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

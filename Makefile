# The two quick-start commands: `make demo` (main job on the sandbox) and `make test` (all tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-speed mutate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fluxclaw generate --sandbox -o out/ \
	  "a ceramic vase with dried flowers on a linen tablecloth, natural window light, 35mm film grain" \
	  --aspect-ratio 3:4 --resolution 2k

OPENCLAW := openclaw/runtime/node_modules/.bin/openclaw

$(OPENCLAW): openclaw/runtime/package.json
	openclaw/runtime/install.sh

# Debian's chromium, unpacked into the project without root (tests/setup/install-chromium.sh).
CHROMIUM := .cache/chromium/bin/chromium

$(CHROMIUM):
	tests/setup/install-chromium.sh

# Most tests wait on subprocesses and sockets, so four workers keep two cores busy; a file's
# tests stay on one worker (module fixtures such as the hostile server start once).
WORKERS ?= 4

# Wheels of fluxclaw, its dependencies and its sandbox extra, for the tests that install it the
# way a user does (plain, and as a tool with --sandbox; offline, --no-index): built here, in the
# suite's setup, never downloaded by a test.
WHEELS := .wheels
$(WHEELS)/.built: pyproject.toml $(shell find src openclaw/plugin openclaw/skills -type f -not -path '*/__pycache__/*') | $(BIN)/python
	rm -rf $(WHEELS)
	$(BIN)/python -m pip wheel --quiet -w $(WHEELS) '.[sandbox]'
	touch $@

test: $(STAMP) $(OPENCLAW) $(CHROMIUM) $(WHEELS)/.built
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile

# Mutation testing of the modules that decide things (pyproject's [tool.mutmut]); not in CI:
# minutes. Prints each module's score; docs/testing.md explains the equivalent mutants.
mutate: $(STAMP)
	rm -rf mutants && mkdir -p .cache
	$(BIN)/mutmut run --max-children 2 > .cache/mutmut.log 2>&1 || (tail -20 .cache/mutmut.log; exit 1)
	$(BIN)/python tests/mutation/score.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports

# The official SDK's wheels, for bench/speed.py's plain environments (built offline from them).
BENCH_WHEELS := .cache/bench-wheels
$(BENCH_WHEELS)/.gathered: | $(BIN)/python
	$(BIN)/python -m pip download --quiet -d $(BENCH_WHEELS) runapi-flux-2==0.4.0
	touch $@

bench-speed: $(STAMP) $(WHEELS)/.built $(BENCH_WHEELS)/.gathered
	$(BIN)/python bench/speed.py --write

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/clients.py
	$(BIN)/python bench/http_stacks.py --write
	$(BIN)/python bench/sandbox_load.py --write
	$(BIN)/python bench/cli_startup.py --write
	$(BIN)/python bench/cold_cli.py --write

clean:
	rm -rf $(VENV) out $(WHEELS)

# failback — one entry per habit. `make demo` and `make test` work on a fresh machine with python3, node/npm, make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SQLJS  := src/failback/engines/sqljs
PY_OK  := $(VENV)/.installed
JS_OK  := $(SQLJS)/node_modules/.package-lock.json
DEMO_DIR ?= failback-demo

.PHONY: deps demo test soak lint docs bench bench-quick bench-digest clean

deps: $(PY_OK) $(JS_OK)

$(PY_OK): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

$(JS_OK): $(SQLJS)/package.json $(SQLJS)/package-lock.json
	cd $(SQLJS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: deps
	$(BIN)/failback demo $(DEMO_DIR)

lint: deps
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/mypy src

test: lint
	$(BIN)/python -m pytest -q -m "not soak"

soak: deps  # the long runs; FAILBACK_SOAK_SEED=<printed seed> replays one
	FAILBACK_SOAK=1 $(BIN)/python -m pytest -q -s -m soak

docs: deps
	$(BIN)/python -m failback.docs

bench: deps
	$(BIN)/python bench/run.py

bench-quick: deps
	$(BIN)/python bench/run.py --quick

bench-digest: deps
	$(BIN)/python bench/digest.py

clean:
	rm -rf $(VENV) $(SQLJS)/node_modules $(DEMO_DIR)

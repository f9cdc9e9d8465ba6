# failback — one entry per habit. `make demo` and `make test` work on a fresh machine with python3, node/npm, make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SQLJS  := src/failback/engines/sqljs
PY_OK  := $(VENV)/.installed
JS_OK  := $(SQLJS)/node_modules/.package-lock.json
ENGINES := tests/engines
ENGINES_OK := $(ENGINES)/node_modules/.package-lock.json
DEMO_DIR ?= failback-demo
CHROMIUM := /usr/bin/chromium
PROMETHEUS := /usr/bin/prometheus
LOCK_VENV := .venv-lock

.PHONY: deps deps-browser deps-prometheus deps-engines lock demo test soak lint docs wheel bench bench-quick bench-digest bench-fleet clean

deps: $(PY_OK) $(JS_OK)

# constraints.txt pins every Python distribution CI installs (regenerate on purpose: `make lock`)
$(PY_OK): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

# the newest releases pyproject's ranges allow, resolved in a scratch venv and frozen into constraints.txt
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	{ echo "# Exact versions CI installs (make deps passes -c constraints.txt). Regenerate: make lock"; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	rm -rf $(LOCK_VENV)

# Debian's chromium renders the HTML report in tests/test_report.py
deps-browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing: install it (Debian: sudo apt-get install chromium) (the HTML report tests skip; under CI=true they fail)"; \
	fi

# Debian's prometheus server answers the PromQL trigger rules in tests/test_promql.py
deps-prometheus:
	@if [ -x $(PROMETHEUS) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing prometheus (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else \
		echo "prometheus is missing: install it (Debian: sudo apt-get install prometheus) (the PromQL tests skip; under CI=true they fail)"; \
	fi

$(JS_OK): $(SQLJS)/package.json $(SQLJS)/package-lock.json
	cd $(SQLJS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# the sql.js builds web apps ship (npm's sql.js-fts5), pinned in tests/engines/package-lock.json, for the engine tests
deps-engines: $(ENGINES_OK)

$(ENGINES_OK): $(ENGINES)/package.json $(ENGINES)/package-lock.json
	cd $(ENGINES) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: deps
	$(BIN)/failback demo $(DEMO_DIR)

lint: deps
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/mypy src

test: lint deps-browser deps-prometheus deps-engines
	$(BIN)/python -m pytest -q -m "not soak"

soak: deps deps-browser  # the long runs; FAILBACK_SOAK_SEED=<printed seed> replays one
	FAILBACK_SOAK=1 $(BIN)/python -m pytest -q -s -m soak -p no:timeout

docs: deps
	$(BIN)/python -m failback.docs

# dist/failback-*.whl, carrying the sql.js files the runner loads (setup.py copies them from node_modules)
wheel: deps
	rm -rf build  # setuptools would add what an earlier build left in build/lib
	$(BIN)/python -m build --wheel --outdir dist .

bench: deps
	$(BIN)/python bench/run.py

bench-quick: deps
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/run.py --quick

bench-digest: deps
	$(BIN)/python bench/digest.py

bench-fleet: deps  # 1,000 demo tenants on an embedded Dask cluster of 2 workers (issue 17's figure)
	$(BIN)/python bench/fleet.py --tenants 1000 --workers 2

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(SQLJS)/node_modules $(ENGINES)/node_modules $(DEMO_DIR) build dist

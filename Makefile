# vlf_dagster: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DAYS   ?= 7
SOURCES ?= 20000
SEED   ?= 1
export VLF_DATA_DIR  ?= $(CURDIR)/data
export DAGSTER_HOME  ?= $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED = false

.PHONY: install demo test ui clean

$(BIN)/vlf: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/vlf

demo: install  ## simulate $(DAYS) days, materialize every asset through Dagster, print the report path
	$(BIN)/vlf demo --days $(DAYS) --sources $(SOURCES) --seed $(SEED)

test: install  ## run the whole test suite
	$(BIN)/python -m pytest

ui: install  ## the Dagster UI on http://127.0.0.1:3000
	mkdir -p $(DAGSTER_HOME) && test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:  ## remove generated data and the Dagster instance (keeps the venv)
	rm -rf data/landing data/archive data/quarantine data/reports data/sim data/hourly_* data/monthly_* data/*.parquet data/*.set data/site.toml $(DAGSTER_HOME)

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

GEOIP_DB := data/geoip/country.mmdb
export VLF_GEOIP_DB ?= $(CURDIR)/$(GEOIP_DB)
# Nmap's services list (well-known unofficial ports) for the report's port descriptions: Debian's
# nmap-common if installed, else its .deb fetched without root into build/ (as for GeoIP).
NMAP_SERVICES := $(if $(wildcard /usr/share/nmap/nmap-services),/usr/share/nmap/nmap-services,$(CURDIR)/build/nmap-common/root/usr/share/nmap/nmap-services)
export VLF_NMAP_SERVICES_FILE ?= $(NMAP_SERVICES)

.PHONY: install demo demo-real test ui clean geoip nmap-services bench-scale bench-incremental bench-28d bench-crash bench-collector-flood bench-silk bench-workers bench-objectstore bench-scan bench-scan-fuzz bench-returns

$(BIN)/vlf: pyproject.toml
	@echo "installing vlf_dagster and its dependencies into $(VENV) (about two minutes the first time)"
	@$(PYTHON) -m venv $(VENV)
	@# -qq: errors only (pip's WARNING lines about unreachable extra indexes say nothing to a user)
	@$(BIN)/pip install -qq --upgrade pip
	@$(BIN)/pip install -qq -e '.[test]'
	@# an editable install gets no bytecode; without it every `vlf` command compiles its modules
	@# (40-50 ms of start-up where PYTHONDONTWRITEBYTECODE is set)
	@$(BIN)/python -m compileall -q vlf_dagster
	@touch $@

install: $(BIN)/vlf

# A GeoIP2-Country database built from Debian's tor-geoipdb ranges (IPFire location data, CC BY-SA 4.0).
# Uses the installed package, or fetches the .deb without root (apt-get download) into build/.
geoip: $(GEOIP_DB)

$(GEOIP_DB): | $(BIN)/vlf
	@if [ -f /usr/share/tor/geoip ]; then src=/usr/share/tor; \
	else mkdir -p build/tor-geoipdb && cd build/tor-geoipdb && \
	  { ls tor-geoipdb_*.deb >/dev/null 2>&1 || apt-get download tor-geoipdb >/dev/null; } && \
	  dpkg -x tor-geoipdb_*.deb root && cd ../.. && src=build/tor-geoipdb/root/usr/share/tor; fi; \
	$(BIN)/python -m vlf_dagster.analysis.tables.geo build --ipv4 $$src/geoip --ipv6 $$src/geoip6 --out $@ \
	|| echo "warning: no GeoIP database ($@); the report's geography says so"

nmap-services: $(NMAP_SERVICES)

$(CURDIR)/build/nmap-common/root/usr/share/nmap/nmap-services:
	@mkdir -p build/nmap-common && cd build/nmap-common && \
	  { ls nmap-common_*.deb >/dev/null 2>&1 || apt-get download nmap-common >/dev/null; } && \
	  dpkg -x nmap-common_*.deb root \
	|| echo "warning: no nmap-services; the report's port descriptions use IANA's registry alone"

demo: install geoip nmap-services  ## simulate $(DAYS) days, materialize every asset through Dagster, print the report path
	$(BIN)/vlf demo --days $(DAYS) --sources $(SOURCES) --seed $(SEED)

REAL ?= ../shared/data/real/zeek/ctu-008-conn.log.labeled
INTERNAL ?= 147.32.0.0/16
demo-real: install geoip nmap-services  ## the whole study on a real file: make demo-real REAL=FILE INTERNAL=CIDR
	$(BIN)/vlf demo-real $(REAL) --internal $(INTERNAL) --data-dir data/real

# Two workers even on two cores: the daemon and UI tests spend most of their minutes waiting on ticks.
# loadscope keeps a module's tests (and its module fixtures) on one worker.
TEST_WORKERS ?= 2
test: install geoip nmap-services  ## run the whole test suite (TEST_WORKERS=0 runs it in one process)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope

SCALE ?= 1
bench-scale: install geoip  ## the whole study at the seed's size (14 months, 12.7 M sources x SCALE) through Dagster
	$(BIN)/python bench/seed_scale.py --scale $(SCALE)

bench-incremental: install  ## one new hour through the study bench-scale built (run bench-scale first, same SCALE)
	$(BIN)/python bench/incremental.py --data-dir data/bench-scale

bench-28d: install geoip  ## issue 8's shape: 28 days x 400,000 sources, side by side with one raw DuckDB query
	$(BIN)/python bench/seed_scale.py --days 28 --sources 400000 --start 2006-04-01T00:00 --data-dir data/bench-28d

bench-workers: install  ## a month's hourly backfill on one worker process against two: medians, flows/s, RSS
	$(BIN)/python bench/workers.py --days 31 --sources 200000 --runs 3

bench-objectstore: install  ## the study with its data uploaded to an S3 server (moto, 127.0.0.1) against local files, and a second machine from the bucket
	$(BIN)/python bench/objectstore.py --days 7 --sources 20000 --runs 3

bench-scan: install  ## vlf scan against SiLK's rwsort | rwscan (built from ../shared/silk), default model, on the same 1.36 M flows: medians, ratio, RSS, same bytes
	$(BIN)/python bench/scan_compare.py --days 7 --sources 100000 --runs 3

bench-returns: install  ## the return model at the seed's size on bench-scale's profiles (run bench-scale first): seconds, RSS, the model beside the two rules, the state's shrink
	$(BIN)/python bench/return_model.py data/bench-scale

bench-scan-fuzz: install  ## vlf scan against SiLK's rwscan on 30 random flow sets, every model: outputs that differ
	$(BIN)/python bench/rwscan_fuzz.py --trials 30

bench-silk: install  ## vlf against SiLK 3.19.1 (built from ../shared/silk) on the same 2.75 M flows: medians, ratios, RSS
	$(BIN)/python bench/silk_compare.py --flows 2750000

bench-crash: install  ## kill -9 vlf materialize 20 times at random moments; every reader view and the final run checked
	$(BIN)/python bench/crash_loop.py --kills 20

bench-collector-flood: install  ## collector memory under floods of made-up domains, exporters and hours
	$(BIN)/python bench/collector_flood.py

ui: install  ## the Dagster UI on http://127.0.0.1:3000 (Ctrl-C or SIGTERM stops it and everything it started)
	$(BIN)/vlf ui

clean:  ## remove generated data and the Dagster instance (keeps the venv)
	rm -rf data/landing data/archive data/quarantine data/reports data/sim data/hourly_* data/monthly_* data/*.parquet data/*.set data/site.toml "$$DAGSTER_HOME"

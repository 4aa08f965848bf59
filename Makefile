# Two commands on a fresh machine:  `make series` (set up, run the whole series)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The read-only datasets beside the checkout, when present; otherwise helpers downloads them.
export FASHION_DATA_ROOT ?= $(wildcard $(abspath ../shared/data))
export TF_CPP_MIN_LOG_LEVEL ?= 2
MODE ?= full

.PHONY: setup series quick test lint lab
setup: $(VENV)/.installed

$(VENV)/.installed: environment.yml pyproject.toml helpers/envfile.py
	python3 -m venv $(VENV)
	mkdir -p build
	python3 helpers/envfile.py environment.yml > build/requirements.txt
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r build/requirements.txt
	touch $@

series: setup            ## the whole series (MODE=full by default: about 2.5 hours on 2 CPU cores)
	$(PY) -m helpers.runner --mode $(MODE)

quick: setup             ## the whole series in quick mode (minutes), written under build/quick/
	$(PY) -m helpers.runner --mode quick

lint: setup
	$(PY) -m ruff check .

test: lint               ## unit tests, the series under papermill (quick) and nbval on the chapters
	SERIES_MODE=quick $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=1200 tests notebooks

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

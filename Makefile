# Two commands on a fresh machine:  `make series` (set up, run the whole series)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The read-only datasets beside the checkout, when present; otherwise helpers downloads them.
export FASHION_DATA_ROOT ?= $(wildcard $(abspath ../shared/data))
export TF_CPP_MIN_LOG_LEVEL ?= 2
# The mode of `make series`: MODE, else $SERIES_MODE (as for the runner and the chapters), else full.
MODE ?= $(or $(SERIES_MODE),full)
# 1: the exact versions the committed results were produced with (requirements-lock.txt, Linux x86-64,
# Python 3.11); 0: the newest versions environment.yml's ranges allow (other platforms, upgrades).
# The default: the lock where it was made, the ranges elsewhere.
PYTHON ?= python3
UNAME_S ?= $(shell uname -s)
UNAME_M ?= $(shell uname -m)
PYTHON_MINOR ?= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
LOCK ?= $(if $(and $(filter Linux,$(UNAME_S)),$(filter x86_64,$(UNAME_M)),$(filter 3.11,$(PYTHON_MINOR))),1,0)

.PHONY: setup series quick lesson book test test-slow lint lab lock
setup: $(VENV)/.installed

$(VENV)/.installed: environment.yml requirements-lock.txt pyproject.toml helpers/envfile.py
	@$(PYTHON) -c 'import sys; (3, 10) <= sys.version_info[:2] <= (3, 12) or sys.exit("The series needs Python 3.10 to 3.12, not $(PYTHON) " + sys.version.split()[0] + ": name one, e.g. make setup PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(LOCK),1)
	@echo "make setup: the locked versions (requirements-lock.txt) on $(UNAME_S) $(UNAME_M), Python $(PYTHON_MINOR)"
	$(PY) -m pip install -q -r requirements-lock.txt
	$(PY) -m pip install -q --no-deps -e .
else
	@echo "make setup: the newest versions environment.yml allows on $(UNAME_S) $(UNAME_M), Python $(PYTHON_MINOR) (the lock is for Linux x86_64, Python 3.11)"
	mkdir -p build
	$(PYTHON) helpers/envfile.py environment.yml > build/requirements.txt
	$(PY) -m pip install -q -r build/requirements.txt
endif
	touch $@

lock: setup              ## rewrite requirements-lock.txt from environment.yml (UPGRADE=1: newest allowed versions)
	$(PY) -m pip install -q pip-tools
	mkdir -p build
	python3 helpers/envfile.py --third-party environment.yml > build/requirements.in
	$(PY) -m pip freeze --exclude-editable > build/installed.txt
	$(VENV)/bin/pip-compile --quiet --no-emit-index-url --no-emit-find-links --no-annotate --strip-extras \
		$(if $(UPGRADE),--upgrade,--constraint build/installed.txt) --output-file requirements-lock.txt build/requirements.in

series: setup            ## the whole series (full mode unless MODE or SERIES_MODE says otherwise: about 3.5 h on 2 CPU cores)
	$(PY) -m helpers.runner --mode $(MODE)
	$(PY) -m helpers.report  # the README's Fashion-MNIST result rows from results/

quick: setup             ## the whole series in quick mode (tiny subsets: does it run?), under build/quick/
	$(PY) -m helpers.runner --mode quick

lesson: setup            ## the whole series in lesson mode (a few minutes a chapter), under build/lesson/
	$(PY) -m helpers.runner --mode lesson

book: setup              ## the chapters as they are committed, with the guide and the record, as a website: build/book/index.html
	$(PY) -m helpers.book

lint: setup
	$(PY) -m ruff check .

test: lint               ## unit tests, the chapters' typed code, nbval on every chapter (quick), the book
	SERIES_MODE=quick $(PY) -m pytest -m "not slow" --nbval-lax --nbval-current-env --nbval-cell-timeout=1200 tests notebooks

test-slow: setup         ## before a release: the Colab cell in a fresh environment, the runner's papermill book
	SERIES_MODE=quick $(PY) -m pytest -m slow tests

lab: setup              ## JupyterLab on the chapters, in lesson mode unless SERIES_MODE says otherwise
	SERIES_MODE=$(or $(SERIES_MODE),lesson) $(VENV)/bin/jupyter lab notebooks/

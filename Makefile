# Front door of the course repository. Every target sets itself up (virtual env, install, data).
#   make run    train the Session 2 reference model and print its results
#   make test   the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# nbgrader calls `alembic` from PATH, so the venv's bin goes first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: help setup sandbox data run test test-fast bench bench-epoch bench-threads bench-class release check-release reproduce seeds frontier report grade student-release clean

help:
	@echo "make run        train the Session 2 reference model (set-up included) and print its results"
	@echo "make test       run the whole test suite (set-up included)"
	@echo "make test-fast  the suite without the slow (training) tests"
	@echo "make setup      create $(VENV) and install the course package (editable)"
	@echo "make data       provision and verify MNIST under ./data (or \$$COURSE_DATA)"
	@echo "make sandbox    install bubblewrap, the grader's sandbox (Debian/Ubuntu, as root); without it grades are self-checks"
	@echo "make bench      time to 99.4%: the seed-style pipeline vs the Session 2 references (about 10-15 minutes)"
	@echo "make bench-epoch  one epoch of each pipeline, side by side"
	@echo "make bench-threads  one training alone and two on the same cores, under three OpenMP wait settings (about 2 minutes)"
	@echo "make bench-class  class grading throughput: submissions per minute, plain (with and without the zygote) and on Dask with 1 and 2 workers (about 3 minutes)"
	@echo "make release    regenerate the student notebooks sessions/ from solutions/ (nbgrader)"
	@echo "make reproduce  run every solution notebook at full length, the seed sweep, then the reports"
	@echo "make seeds      train the reference configs over SEEDS (default: 1-10, about 1.5 hours on 2 cores; WORKERS=2 processes) and print min/mean/max"
	@echo "make frontier   the parameter frontier over SEEDS: iteration 4-style nets with its recipe, nets of iteration 5's pooled and space-to-depth designs with the fast one (default FRONTIER=w7632; e.g. FRONTIER=p4884,s4924,w7632; benchmarks/frontier.py)"
	@echo "make report     render sessions/session{2,3}/README.md from the run records in runs/ (REPORT=session3: only that one; default: every session)"
	@echo "make grade SUBMISSION=path [GRADE_ARGS=--retrain]   grade notebook(s) or a folder of them"
	@echo "make student-release   build the grader artifact (build/grader) and the student template (build/student-template)"

$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) and installing the course package (about 2 minutes the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip > $(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; exit 1; }
	@$(PY) -m pip install --disable-pip-version-check -e . >> $(VENV)/install.log 2>&1 \
		|| { tail -n 40 $(VENV)/install.log; echo "pip install failed: full log in $(VENV)/install.log"; exit 1; }
	@$(PY) -c "import torch, torchvision, course_utils; print('>> torch', torch.__version__, '| torchvision', torchvision.__version__)"
	@touch $(STAMP)

setup: $(STAMP)

sandbox:
	@command -v bwrap >/dev/null && echo ">> bubblewrap already installed: $$(bwrap --version)" || \
		{ apt-get install -y -q bubblewrap || { apt-get update -q && apt-get install -y -q bubblewrap; }; }

data: setup
	@$(PY) -m course data

run: data
	@$(PY) -m course train session2

# The fast tests run in TEST_WORKERS processes (pytest-xdist, one file per process: most of their time is
# starting single-threaded grading workers), each at one torch thread (two processes at two threads each
# oversubscribe two cores: RESULTS.md, fifth stop); the slow ones one at a time, since they share the
# solution notebooks' training runs and train on every core themselves.
TEST_WORKERS ?= 2
FAST := COURSE_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile
test: data
	@$(FAST) && $(PY) -m pytest -m slow

test-fast: data
	@$(FAST)

bench: data
	@$(PY) -m benchmarks.time_to_target

bench-epoch: data
	@$(PY) -m benchmarks.pipeline_speed

bench-threads: setup
	@$(PY) -m benchmarks.threads

bench-class: data
	@$(PY) -m benchmarks.class_grading

release: setup
	@$(PY) -m instructor.release

check-release: setup
	@$(PY) -m instructor.release --check

SEEDS ?= 1 2 3 4 5 6 7 8 9 10
WORKERS ?= 2
NOTEBOOKS := $(sort $(wildcard solutions/*/*.ipynb))

reproduce: data
	@COURSE_RUNS=$(CURDIR)/runs $(PY) -m instructor.notebooks $(NOTEBOOKS)
	@$(MAKE) --no-print-directory seeds report

seeds: data
	@$(PY) -m benchmarks.seeds --seeds $(SEEDS) --workers $(WORKERS)

FRONTIER ?= w7632
frontier: data
	@$(PY) -m benchmarks.frontier --candidates $(FRONTIER) --seeds $(SEEDS) --workers $(WORKERS)

REPORT ?=
report: data
	@$(PY) -m instructor.report $(addprefix --session ,$(REPORT))

SUBMISSION ?= sessions
grade: data
	@$(PY) -m course grade $(SUBMISSION) $(GRADE_ARGS)

student-release: setup
	@$(PY) -m instructor.student_release $(if $(GRADER_REPO),--grader-repo $(GRADER_REPO) --grader-ref $(GRADER_REF))

clean:
	rm -rf runs .pytest_cache

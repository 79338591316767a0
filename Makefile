# Two commands do all set-up on a fresh machine:
#   make demo   synthetic YouTube-8M data -> train -> eval -> submission CSV
#   make demo-segments   the same for the segment-level (2019) workflow, in its own folder
#   make test   the test suite (every tier, the docstring examples included)
#   make test-fast   the unit tier: no training runs, no scripts end to end
#   (WORKERS=N: pytest workers, 2 by default; 0 runs the tests in make's own pytest process)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNELS := $(patsubst youtube8m_willow/native/%.cc,youtube8m_willow/native/lib%.so,\
             $(wildcard youtube8m_willow/native/*.cc))
DEMO_DIR ?= demo_output
DEMO_SEGMENTS_DIR ?= demo_segments_output
WORKERS ?= 2

.PHONY: demo demo-segments test test-fast bench clean FORCE

# The packages' bytecode is compiled on every core at once after pip (which
# compiles one file at a time); like pip, it passes over the few files written
# for a newer Python (torch's 3.12 helpers). The project's own kernels are
# built against the installed TensorFlow by their rule below
# (youtube8m_willow/native).
$(STAMP): requirements.txt requirements-torch.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -r requirements.txt -r requirements-torch.txt
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Where a build fails (no C++ compiler) make goes on: training takes
# TensorFlow's path, and the kernel's test says why. The build runs on every
# make (FORCE): it skips a kernel that is up to date, and rebuilds one built
# for another CPU, which make's timestamps cannot tell.
youtube8m_willow/native/lib%.so: youtube8m_willow/native/%.cc $(STAMP) FORCE
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m youtube8m_willow.native.build $* || true

FORCE:

demo: $(STAMP) $(KERNELS)
	$(PY) -m youtube8m_willow.demo --out_dir=$(DEMO_DIR)

demo-segments: $(STAMP) $(KERNELS)
	$(PY) -m youtube8m_willow.demo --segments --out_dir=$(DEMO_SEGMENTS_DIR)

test: $(STAMP) $(KERNELS)
	$(PY) -m pytest -q -n $(WORKERS) --dist worksteal

test-fast: $(STAMP) $(KERNELS)
	$(PY) -m pytest -q -n $(WORKERS) --dist worksteal -m "not slow"

bench: $(STAMP) $(KERNELS)
	$(PY) bench/bench_metrics.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(DEMO_SEGMENTS_DIR) $(KERNELS) youtube8m_willow/native/*.so.cpu

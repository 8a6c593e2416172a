# One command sets up and runs the demo, one runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
SHARED ?= ../shared
PYTHONS := .pythons

.PHONY: setup demo test lint bench mutate pythons completions torch-env ray-env clean

$(VENV)/.stamp: pyproject.toml scripts/launcher
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(UV) pip install --quiet --python $(PY) -e '.[dev]'
	touch $@

setup: $(VENV)/.stamp

# The foreign interpreters (cp313, free-threaded cp313t) the tests and the
# demo use, unpacked from ../shared/pythons.
# Without ../shared: one line naming the fix, and no stamp (a later run retries).
pythons: $(PYTHONS)/.stamp
$(PYTHONS)/.stamp:
	$(if $(wildcard $(SHARED)/pythons/*.tar.xz),,$(error no interpreters in $(SHARED)/pythons/*.tar.xz: point SHARED=DIR at the shared directory, e.g. make $(MAKECMDGOALS) SHARED=/path/to/shared))
	mkdir -p $(PYTHONS)
	@for f in $(SHARED)/pythons/*.tar.xz; do tar xJf "$$f" -C $(PYTHONS) || { echo "make: cannot unpack $$f" >&2; exit 1; }; done
	touch $@

demo: setup pythons
	SHARED=$(SHARED) $(PY) examples/demo.py

test: setup pythons
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests bench examples scripts/mutate.py
	$(VENV)/bin/mypy

bench: setup pythons
	$(PY) bench/run.py

# Does the suite fail when a promise breaks?  Applies each one-line mutation
# of tests/mutations.toml in turn (always restored), runs its targeted tests,
# then the whole suite, fail-fast.  Slow (pytest per mutation): not in CI.
mutate: setup pythons
	$(PY) scripts/mutate.py $(MUTATE_ARGS)

completions: setup
	$(PY) -m launcher.completions completions

# torch for the real torchrun tests: pip takes the local CPU build for 3.11.
torch-env: .venv-torch/.stamp
.venv-torch/.stamp:
	$(PYTHON) -m venv .venv-torch
	.venv-torch/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	touch $@

# Ray for the multi-node tests and bench (the optional extra `launcher[ray]`):
# a venv of its own so the main one stays small, with this checkout editable
# so Ray's workers run the launcher under test.
ray-env: .venv-ray/.stamp
.venv-ray/.stamp: pyproject.toml
	python3.11 -m venv .venv-ray
	.venv-ray/bin/pip install --quiet --disable-pip-version-check ray==2.60.0
	.venv-ray/bin/pip install --quiet --disable-pip-version-check -e '.[ray]'
	touch $@

clean:
	rm -rf $(VENV) .venv-torch .venv-ray $(PYTHONS) .pytest_cache .mypy_cache .ruff_cache

# Everything from nothing: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench models clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pictext demo

lint: $(STAMP)
	$(VENV)/bin/ruff check pictext tests bench
	$(VENV)/bin/ruff format --check pictext tests bench

test: lint
	PICTEXT_QUIET=1 $(PY) -m pytest -q

models: $(STAMP)
	$(PY) -c "import pictext.hub as h; print(h.ensure_default())"

bench: $(STAMP)
	$(PY) bench/clip_encode.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

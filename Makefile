# Everything from nothing: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint browser emoji bench models clean

# Debian's Chromium for the browser test (no browser download by Playwright); sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# taming-transformers and OpenAI's dall-e for the VQGAN and dVAE parity tests: their model modules need only
	# torch (and attrs); --no-deps keeps their pins (pytorch-lightning, omegaconf, mypy, blobfile: for code the
	# tests never import) out of the environment.
	$(PY) -m pip install --quiet --no-deps 'taming-transformers==0.0.1' 'dall-e==0.1'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pictext demo

lint: $(STAMP)
	$(VENV)/bin/ruff check pictext tests bench
	$(VENV)/bin/ruff format --check pictext tests bench

browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# The emoji set, once, from npm's registry (`npm pack emoji-datasource-google`): the LiT tests train on it.
EMOJI := .cache/emoji
$(EMOJI)/held_out/labels.json: | $(STAMP)
	PICTEXT_HOME=.cache/pictext $(PY) -m pictext data build emoji --out $(EMOJI)

emoji: $(EMOJI)/held_out/labels.json

test: lint browser emoji
	PICTEXT_QUIET=1 PICTEXT_REQUIRE_BROWSER=1 PICTEXT_EMOJI=$(EMOJI) $(PY) -m pytest -q

models: $(STAMP)
	$(PY) -c "import pictext.hub as h; print(h.ensure_default())"

bench: $(STAMP)
	$(PY) bench/clip_encode.py
	$(PY) bench/search.py
	$(PY) bench/index.py
	$(PY) bench/clip_train.py
	$(PY) bench/oracle.py
	$(PY) bench/serve_load.py
	$(PY) bench/vqgan.py
	$(PY) bench/vqgan_clip.py
	$(PY) bench/vqgan_clip_step.py
	# dalle-pytorch, the sampling benchmark's peer, without its pins (youtokentome, pytorch-lightning, ...)
	$(PY) -m pip install --quiet --no-deps 'dalle-pytorch==1.6.6' 'axial-positional-embedding==0.3.12' \
		'rotary-embedding-torch==0.9.1' 'einops>=0.8,<0.9'
	$(PY) bench/dalle_sample.py
	$(PY) bench/dalle.py
	$(PY) bench/unclip.py
	$(PY) bench/generate_compare.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache

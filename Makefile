# Everything from nothing: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint browser emoji bench models notebooks clean

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
	# Sber's ruDALL-E and ruCLIP for their parity tests, the same way (their pins: transformers 4.10, opencv, ...).
	# youtokentome, their tokenizer, is an sdist whose build needs Cython < 3 from the environment.
	$(PY) -m pip install --quiet --no-deps 'rudalle==1.1.3' 'ruclip==0.0.2'
	$(PY) -m pip install --quiet --no-deps --no-build-isolation 'youtokentome==1.0.6'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pictext demo

# Re-execute every notebook (notebooks/*.py, jupytext scripts) and rewrite its .ipynb with the outputs.
notebooks: $(STAMP) emoji
	PICTEXT_QUIET=1 PICTEXT_EMOJI=$(EMOJI) $(PY) notebooks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check pictext tests bench notebooks
	$(VENV)/bin/ruff format --check pictext tests bench notebooks
	$(VENV)/bin/lint-imports  # no module imports a layer above its own, no import cycles (pyproject.toml)

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

# The edit-test loop: everything but the tests marked slow (torchrun, browsers, training to a bar), under 2 minutes
test-fast: $(STAMP)
	PICTEXT_QUIET=1 PICTEXT_EMOJI=$(EMOJI) $(PY) -m pytest -q -m "not slow"

# Remake the shipped default CLIP from its recipe (about 6 minutes on 2 cores; the file ships, so nothing needs this)
models: $(STAMP)
	$(PY) -m pictext models build default --half

bench: $(STAMP)
	$(PY) bench/clip_encode.py
	$(PY) bench/search.py
	$(PY) bench/index.py
	$(PY) bench/clip_train.py
	$(PY) bench/default_model.py --towers resnet,vit,resnet-augment
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
	# dalle2-pytorch, unCLIP sampling's peer, without its pins (open-clip<3, torchmetrics, ...): what it imports
	$(PY) -m pip install --quiet --no-deps 'dalle2-pytorch==1.15.6' 'x-clip==0.14.4' 'coca-pytorch==0.1.0' \
		'resize-right==0.0.2' 'ema-pytorch==0.8.3' 'pytorch-warmup==0.2.0' 'vector-quantize-pytorch==1.32.0' \
		'embedding-reader==1.8.1' 'clip-anytorch==2.6.0' 'einops-exts==0.0.4' 'einx==0.4.3' 'frozendict==2.5.1' \
		'loguru==0.7.3' 'torch-einops-utils==0.2.0' 'accelerate==1.15.0'
	$(PY) bench/unclip_sample.py
	$(PY) bench/generate_compare.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache

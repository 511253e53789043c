# Two entry points on a fresh machine: `make demo` and `make test` (each creates .venv first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt

.PHONY: demo test test-slow test-all toolkit-env venv clean demo-model demo-model-audiocraft

$(BIN)/tda: pyproject.toml requirements/constraints.txt requirements/toolkits.txt requirements/toolkits-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.14.1
	$(PIP) -r requirements/toolkits.txt
	$(PIP) --no-deps -r requirements/toolkits-nodeps.txt
	$(PIP) -e '.[dev]'
	touch $(BIN)/tda

venv: $(BIN)/tda

demo: venv
	$(BIN)/tda demo --out demo-out

# the tests in two tiers: `test` in minutes (two workers), `test-slow` the long end-to-end behaviour runs; CI runs both
test: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

test-slow: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m slow

test-all: test test-slow

# README's install lines in a fresh `pip install stable-audio-tools` venv (slow, downloads; not part of `make test`)
toolkit-env: venv
	$(BIN)/python -m pytest -q -m toolkit_env tests/test_toolkit_env.py

# retrain the shipped demo model (adapters/stable_audio_demo_model/TRAINING.md): about an hour on 2 CPU cores
demo-model: venv
	$(BIN)/python -m tda_plugin.demo.ship

# one thread, as the shipped model's TRAINING.md records (torch's CPU sums depend on the thread count)
demo-model-audiocraft: venv
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m tda_plugin.demo.ship --adapter audiocraft

clean:
	rm -rf $(VENV) demo-out

# Neon Bar: `make demo` runs the investor demo, `make test` runs every test.
# Both set up .venv from constraints.txt first (only when the pins changed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test lint bench clean system-deps

setup: $(STAMP)

# Offscreen rendering needs Mesa's EGL/OpenGL; most machines already have it.
system-deps:
	@if ! ldconfig -p | grep -q 'libEGL_mesa.so'; then \
	  echo "installing Mesa EGL/OpenGL (offscreen rendering)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q libegl1 libegl-mesa0 libgl1-mesa-dri libgl1; \
	fi

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

demo: $(STAMP)
	$(BIN)/neonbar demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check neonbar server client bench tests

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/collision.py
	$(BIN)/python bench/server_load.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis out

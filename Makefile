# Neon Bar: `make demo` runs the investor demo, `make test` runs every test.
# Both set up .venv from constraints.txt first (only when the pins changed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test lint bench clean system-deps

setup: $(STAMP)

# Offscreen rendering needs Mesa's EGL/OpenGL (most machines already have it); the
# 花樣年華 sign needs a font with Chinese glyphs (without one it shows its English title).
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 fonts-wqy-microhei fontconfig
system-deps:
	@missing=; \
	ldconfig -p | grep -q 'libEGL_mesa.so' || missing=yes; \
	{ command -v fc-list >/dev/null && fc-list :lang=zh | grep -q . ; } || missing=yes; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  echo "installing system packages: $(APT_PACKAGES)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $(APT_PACKAGES); \
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

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
# 花樣年華 sign needs a font with Chinese glyphs (without one it shows its English title);
# the demo's window test runs it on a virtual display (Xvfb) and types into it (xdotool).
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 fonts-wqy-microhei fontconfig xvfb xdotool
system-deps:
	@missing=; \
	ldconfig -p | grep -q 'libEGL_mesa.so' || missing=yes; \
	{ command -v fc-list >/dev/null && fc-list :lang=zh | grep -q . ; } || missing=yes; \
	command -v Xvfb >/dev/null && command -v xdotool >/dev/null || missing=yes; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  echo "[0/3] system packages: $(APT_PACKAGES)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

# The set-up output is one line per step; pip's own output goes to .venv/pip.log (shown on failure).
$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-deps
	@echo "[1/3] virtual environment $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[2/3] pip"
	@$(BIN)/python -m pip install -qq --upgrade "pip>=24"
	@echo "[3/3] neonbar and its pinned dependencies (constraints.txt; first time: a few minutes)"
	@$(BIN)/python -m pip install -qq -c constraints.txt -e ".[dev]" >$(VENV)/pip.log 2>&1 \
	  || { cat $(VENV)/pip.log >&2; echo "set-up failed: pip could not install (above)" >&2; exit 1; }
	@$(BIN)/python -c "import neonbar, panda3d, av, mediapipe, torch" 2>/dev/null \
	  || { echo "set-up failed: the venv cannot import its packages (see above)" >&2; exit 1; }
	@touch $@

demo: $(STAMP)
	@$(BIN)/neonbar demo

# neonbar/ is typed strictly: it is the contract both sides and third-party tools build on.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check neonbar server client bench tests
	$(BIN)/mypy --strict neonbar

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/collision.py
	$(BIN)/python bench/server_load.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis out

# fedalign — the two commands a newcomer needs:
#   make demo   set up .venv and run the main job (federated MoE comparison, ./fedalign-demo/)
#   make test   set up .venv and run the whole test suite
# Also: make docs (the documentation site in site/, strict), make dist (wheel and sdist in dist/).
# Both create the virtual environment on first use and install everything needed.

PYTHON ?= python3
VENV ?= .venv
# CPU build of PyTorch (see DEVELOPERS.md): on these machines this pin takes the CPU wheel
# that lies on disk; on your own machine any recent torch works (make TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedalign-installed

.PHONY: demo test lint typecheck bench-quick docs dist clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fedalign demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs/_ext
	$(BIN)/mypy

bench-quick: $(STAMP)
	$(BIN)/fedalign bench --quick --orlib --out bench-out

# The documentation site from docs/ (API reference from the docstrings) into site/; strict:
# a broken link, anchor or reference fails. tests/test_docs_site.py runs the same build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Wheel and sdist in dist/; tests/test_package.py installs the wheel in a fresh venv.
dist: $(STAMP)
	$(BIN)/python -m build --outdir dist

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache .hypothesis fedalign-demo bench-out

# fedalign — the two commands a newcomer needs:
#   make demo   set up .venv and run the main job (federated MoE comparison, ./fedalign-demo/)
#   make test   set up .venv and run the whole test suite
# Both create the virtual environment on first use and install everything needed.

PYTHON ?= python3
VENV ?= .venv
# CPU build of PyTorch (see DEVELOPERS.md): on these machines this pin takes the CPU wheel
# that lies on disk; on your own machine any recent torch works (make TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedalign-installed

.PHONY: demo test lint typecheck bench-quick clean venv

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
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

bench-quick: $(STAMP)
	$(BIN)/fedalign bench --quick --orlib --out bench-out

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis fedalign-demo bench-out

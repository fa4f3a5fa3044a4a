# The two commands of the README (and `make test-fast` for the edit loop). Everything else is `lisa ...`.
VENV   ?= .venv
PYTHON ?= python3
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	# torch first and pinned: this wheel is the CPU build; an unpinned torch pulls a CUDA build.
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lisa segment examples/umbrella.jpg "What in this picture would keep you dry in the rain? Please output segmentation mask." --out out/demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The edit loop: everything except the tests marked slow (subprocesses, servers, browsers).
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)

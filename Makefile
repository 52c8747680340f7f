# Two commands for a fresh machine (see README.md):
#   make start   install what the course needs, open chapter 00 in JupyterLab (keeps the terminal: Ctrl-C stops it)
#   make test    install that and the test tools, run every test (unit tests, solution notebooks, labs, browser)
SHELL := /bin/bash
PYTEST_ARGS ?=
# extra options for `jupyter lab`, e.g. make start JUPYTER_ARGS="--no-browser --port=8899"
JUPYTER_ARGS ?=

.PHONY: start test install labs bench outputs

install:
	@scripts/bootstrap.sh >/dev/null

start:
	@PY=$$(scripts/bootstrap.sh) && scripts/start.sh "$$PY" $(JUPYTER_ARGS)

test:
	@PY=$$(scripts/bootstrap.sh --test) && scripts/run_tests.sh "$$PY" $(PYTEST_ARGS)

labs:
	@PY=$$(scripts/bootstrap.sh) && $$PY -m prunekit.release

bench:
	@PY=$$(scripts/bootstrap.sh) && $$PY -m prunekit.bench

# Maintainers: re-execute notebooks and store their outputs, e.g. make outputs NB="course/06_faq.ipynb"
outputs:
	@PY=$$(scripts/bootstrap.sh) && scripts/execute_notebooks.sh "$$PY" $(NB)

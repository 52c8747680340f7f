# Two commands for a fresh machine (see README.md):
#   make start   install everything, open the course in JupyterLab
#   make test    install everything, run every test (unit tests, solution notebooks, labs)
SHELL := /bin/bash
PYTEST_ARGS ?=

.PHONY: start test install labs bench outputs

install:
	@scripts/bootstrap.sh >/dev/null

start:
	@PY=$$(scripts/bootstrap.sh) && $$PY -m jupyter lab $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) course/00_why_compress.ipynb

test:
	@PY=$$(scripts/bootstrap.sh) && scripts/run_tests.sh "$$PY" $(PYTEST_ARGS)

labs:
	@PY=$$(scripts/bootstrap.sh) && $$PY -m prunekit.release

bench:
	@PY=$$(scripts/bootstrap.sh) && $$PY -m prunekit.bench

# Maintainers: re-execute notebooks and store their outputs, e.g. make outputs NB="course/06_faq.ipynb"
outputs:
	@PY=$$(scripts/bootstrap.sh) && scripts/execute_notebooks.sh "$$PY" $(NB)

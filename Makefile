# Every target sets up .venv first (tools/setup_env.sh; the mmcv wheel is cached outside
# the checkout, in ~/.cache/xcit_dense, so only the first set-up on a machine builds it).
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: setup test demo lint clean

setup:
	@VENV=$(VENV) bash tools/setup_env.sh

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m flake8 xcit_dense tools tests

clean:
	rm -rf $(VENV) work_dirs data .pytest_cache

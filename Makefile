# ssl4rl: `make demo` runs the whole pipeline, `make test` runs the tests.
# Both create .venv and install everything on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR := runs/demo-$(shell date +%Y%m%d-%H%M%S)
DEMO_ENV ?= dmc_cartpole

.PHONY: install demo test bench race clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	@echo "== creating $(VENV) and installing ssl4rl (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | { grep -v "is ignored" || true; }
	@touch $@

demo: $(STAMP)
	@echo "== demo: $(DEMO_ENV) frames -> MAE -> probe -> SAC on frozen features, in $(DEMO_DIR)"
	$(PY) envs/collect.py env=$(DEMO_ENV) episodes=20 out=$(DEMO_DIR)/data
	$(PY) pretrain/run.py method=mae data.path=$(DEMO_DIR)/data steps=800 method.batch_size=64 ckpt_every=400 out=$(DEMO_DIR)/pretrain
	$(PY) pretrain/eval.py encoder=$(DEMO_DIR)/pretrain/encoder data.path=$(DEMO_DIR)/data out=$(DEMO_DIR)/probe
	$(PY) agents/train.py env=$(DEMO_ENV) encoder=$(DEMO_DIR)/pretrain/encoder steps=30000 eval_every=10000 out=$(DEMO_DIR)/sac_mae
	$(PY) agents/train.py env=$(DEMO_ENV) encoder=state steps=30000 eval_every=10000 video=false out=$(DEMO_DIR)/sac_state
	$(PY) -m ssl4rl.report $(DEMO_DIR)

test: $(STAMP)
	$(VENV)/bin/ruff check ssl4rl tests envs agents pretrain benchmarks
	@rc=0; $(PY) -m pytest -q tests || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/render_fps.py
	$(PY) benchmarks/agent_throughput.py
	$(PY) benchmarks/cartpole_mvp.py --state-baseline

race: $(STAMP)
	$(PY) benchmarks/race_lightly.py

clean-venv:
	rm -rf $(VENV)

# Everything runs inside a local virtual environment that the first target creates.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/quickstart

.PHONY: quickstart test test-slow bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/rljaxinterp quickstart --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python tests/slow_suite.py

bench: $(STAMP)
	$(BIN)/python benchmarks/intervention_overhead.py

clean:
	rm -rf $(VENV) runs

# Rerun every experiment from the current code; each rewrites its findings block in
# experiments/README.md (stamped with commit, seeds, wall time, machine). Quick tier: small
# agents and the fewest null draws that can reach significance (about two hours in all on 2
# CPU cores once the agents exist; each block is stamped with its wall time); full: the agents
# the published reports use (hours on a CPU).
.PHONY: experiments experiments-full
experiments: $(STAMP)
	$(BIN)/python experiments/ttt_steering.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/ttt_concepts.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/ttt_attribution_nmf.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/ttt_distillation.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/ttt_sae.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/gridworld_misgeneralisation.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/tree_gridworld.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/dt_shortest_path.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/algorithm_distillation.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/search_vs_network.py --tier quick --readme experiments/README.md
	$(BIN)/python experiments/lookahead.py --tier quick --readme experiments/README.md

experiments-full: $(STAMP)
	$(BIN)/python experiments/ttt_steering.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/ttt_concepts.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/ttt_attribution_nmf.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/ttt_distillation.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/ttt_sae.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/gridworld_misgeneralisation.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/tree_gridworld.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/dt_shortest_path.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/algorithm_distillation.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/search_vs_network.py --tier full --readme experiments/README.md
	$(BIN)/python experiments/lookahead.py --tier full --readme experiments/README.md

# Everything a fresh machine needs: `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: system install neo4j neo4j-stop demo test bench clean

system:                                ## Java, Maven, docker-compose, Chromium (apt, only what is missing)
	bash scripts/install-system.sh

install: system $(VENV)/.installed     ## Python deps into .venv (editable install of this project)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

neo4j: install                         ## a local Neo4j 5.26 on 127.0.0.1 (jars from Maven Central)
	$(BIN)/stcg neo4j start

neo4j-stop:
	$(BIN)/stcg neo4j stop

demo: neo4j                            ## the main job on the embedded defaults
	$(BIN)/stcg demo

test: neo4j                            ## the whole test suite against the real server
	$(BIN)/pytest -q

clean:
	-$(BIN)/stcg neo4j stop
	rm -rf .stcg out

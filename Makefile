# Set-up and checks. `make demo` and `make test` are all a fresh machine needs (Debian, root or
# sudo-less root as in CI). The virtualenv is .venv; system packages come from apt-get.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_RUN ?= runs/demo

.PHONY: demo test system lint clean-venv

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first, by exact version, so no dependency pulls a CUDA build.
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all]'
	touch $(STAMP)

# Debian packages: Chromium (static plot export, render tests), PostgreSQL (shared search
# storage tests), the aarch64 cross compiler and qemu (emulated Raspberry Pi 4 tests).
# Each script installs only what is missing; the tests call them too, so this is a warm-up.
system:
	bash scripts/chromium.sh >/dev/null
	bash scripts/postgres.sh install
	bash scripts/aarch64_toolchain.sh
	bash scripts/emulated_arm64.sh
	bash scripts/sshd.sh >/dev/null  # OpenSSH: SSH-tunnel tests (a throwaway sshd on 127.0.0.1)

demo: $(STAMP)
	$(BIN)/archkit profile specs/mobilenetv2.yaml specs/mobilenetv1.yaml specs/shufflenet_g3.yaml
	rm -rf $(DEMO_RUN)
	$(BIN)/archkit search search_spaces/mobilenetv2.yaml --budget-madds 150M \
	  --objective published --trials 60 --seed 0 --run-dir $(DEMO_RUN)
	bash scripts/chromium.sh >/dev/null
	$(BIN)/archkit plot --run $(DEMO_RUN) -o $(DEMO_RUN)/figure5
	@echo "demo: open $(DEMO_RUN)/figure5.html (or .png); results in $(DEMO_RUN)/best.csv"

test: $(STAMP) system
	$(BIN)/ruff check archkit tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check archkit tests benchmarks

clean-venv:
	rm -rf $(VENV)

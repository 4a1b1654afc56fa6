# Two commands: `make demo` (the live node on the embedded default) and `make test`;
# `make lint` runs the static checks (ruff on the Python code, hadolint on the Dockerfiles).
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: bootstrap demo test bench lint clean

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	$(ENV) python -m zs3_ros.demo --out demo_out

test: bootstrap
	$(ENV) python -m pytest -q tests

lint: bootstrap
	$(ENV) ruff check . && hadolint docker/Dockerfile.jetson docker/Dockerfile.x86

bench: bootstrap
	$(ENV) python bench/node_overhead.py

clean:
	rm -rf build install log demo_out

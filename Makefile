# Jigsaw Lab: the two commands of the README, plus setup on its own.
.PHONY: run test setup

## Set up what is missing, build, and serve on http://127.0.0.1:3000
run:
	@scripts/run.sh

## Every check: fmt, clippy, unit, HTTP integration and browser tests
test:
	@scripts/test.sh

## Install the tools and the default model only
setup:
	@scripts/setup.sh

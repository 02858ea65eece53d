.PHONY: demo test setup

# Install everything, start the emulated lab, scan it, write records, show the summary.
demo:
	bash scripts/demo.sh

# Install everything (Debian daemons included) and run lint, types and the test suite.
test:
	bash scripts/test.sh

setup:
	bash scripts/setup.sh

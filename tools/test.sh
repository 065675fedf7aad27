#!/usr/bin/env bash
# Everything CI checks, after `pip install -e ".[dev]"` (the JupyterLab widget test needs Debian's chromium;
# set WORKBENCH_REQUIRE_BROWSER=1 to make its absence a failure, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
step() { echo; echo "== $* ($(date +%T))"; }
step "README.md is what nbs/index.ipynb generates"
python tools/build_docs.py --check-readme
step "Run All: every notebook and tutorial, top to bottom, in a live kernel"
python tools/run_notebooks.py --out _executed --jobs 2
step "docs site from the executed notebooks, opened in headless Chromium"
python tools/build_docs.py
python tools/check_docs.py
step "tests/: CLI, resume, multi-process, notebook/package sync, JupyterLab widgets in Chromium"
python -m pytest -q -n 2 --dist loadfile --durations=15 tests/  # two workers: most tests run one thread

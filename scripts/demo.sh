#!/usr/bin/env bash
# Set-up command 1 of the README: build (or reuse) the environment and run the main job end to end.
#   bash scripts/demo.sh [--output DIR] [--device cpu|cuda]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
exec .venv/bin/python -m main.demo "$@"

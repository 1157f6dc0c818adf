#!/usr/bin/env bash
# From a fresh Debian 12 machine: install dependencies, build, and generate text
# with the default model (stories260K from ../shared, when present).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
shared=${JEVONS_SHARED_DIR:-../shared}
model="$shared/models/stories260K/stories260K-f32.gguf"
if [ ! -f "$model" ]; then
  echo "Built ./build/jevons. No default model found at $model."
  echo "Run a GGUF model of your own with:  ./build/jevons run -m /path/to/model.gguf -p \"Your prompt\""
  exit 0
fi
./build/jevons run -m "$model" -p "Once upon a time" -n 200 --temp 0

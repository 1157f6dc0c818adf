#!/usr/bin/env bash
# Builds jevons and runs the whole test suite. The golden tests read ../shared
# (override with JEVONS_SHARED_DIR). Extra arguments go to CMake, e.g.
#   JEVONS_BUILD_DIR=build-asan scripts/test.sh -DJEVONS_SANITIZE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh "$@"
export JEVONS_SHARED_DIR=${JEVONS_SHARED_DIR:-$(cd .. && pwd)/shared}
ctest --test-dir "${JEVONS_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" --timeout 600

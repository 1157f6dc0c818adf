#!/usr/bin/env bash
# Configures and builds jevons (Release) into ${JEVONS_BUILD_DIR:-build}.
# Extra CMake flags may be passed as arguments (e.g. -DJEVONS_SANITIZE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${JEVONS_BUILD_DIR:-build}
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
else
  cmake -S . -B "$build_dir" "$@" >/dev/null
fi
cmake --build "$build_dir" -j "$(nproc)"

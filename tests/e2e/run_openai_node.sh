#!/usr/bin/env bash
# CTest e2e_openai_node: the official openai npm client against `jevons serve`.
# Args: JEVONS SHARED_DIR ARTIFACTS_DIR. Exit 77 (skipped) without node or node_modules.
HERE=$(cd "$(dirname "$0")" && pwd)
JEVONS=$1 SHARED=$2 ARTIFACTS=$3 NAME=openai-node
mkdir -p "$ARTIFACTS"
source "$HERE/common.sh"
MODEL="$SHARED/golden/qwen2/gguf/model-bf16.gguf"
command -v node >/dev/null || { skip "node not installed: skipped"; }
[ -d "$HERE/node_modules/openai" ] || { skip "run 'npm ci' in tests/e2e first: skipped"; }
[ -f "$MODEL" ] || { skip "missing $MODEL: skipped"; }
start_server "$JEVONS" "$MODEL" --api-key e2e-key --chat-template "$HERE/think_template.jinja" --alias qwen-e2e
timeout 120 node "$HERE/openai_stream.mjs" "http://127.0.0.1:$PORT/v1" e2e-key | tee "$ARTIFACTS/openai-node.log"

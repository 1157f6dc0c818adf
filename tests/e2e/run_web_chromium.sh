#!/usr/bin/env bash
# CTest e2e_web_chromium: the web chat page in headless Chromium sends a message and
# shows a streamed answer; the DOM and a screenshot go to ARTIFACTS_DIR.
# Args: JEVONS SHARED_DIR ARTIFACTS_DIR. Exit 77 (skipped) without chromium.
HERE=$(cd "$(dirname "$0")" && pwd)
JEVONS=$1 SHARED=$2 ARTIFACTS=$3 NAME=web
mkdir -p "$ARTIFACTS"
source "$HERE/common.sh"
MODEL="$SHARED/golden/qwen2/gguf/model-bf16.gguf"
CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || { skip "chromium not installed: skipped"; }
[ -f "$MODEL" ] || { skip "missing $MODEL: skipped"; }
start_server "$JEVONS" "$MODEL" --chat-template "$HERE/think_template.jinja" --alias qwen-web
URL="http://127.0.0.1:$PORT/?prompt=Hello%20there&max_tokens=24&think=6"
command -v node >/dev/null || { skip "node not installed: skipped"; }
timeout 120 node --experimental-websocket "$HERE/web_chromium.mjs" "$CHROME" "$URL" "$ARTIFACTS" 2>&1 | tee "$ARTIFACTS/web.log"
exit "${PIPESTATUS[0]}"

#!/usr/bin/env python3
"""Aggregate decode throughput of a running `jevons serve` with 1/2/4/8/16 concurrent
streams (a benchmark, not a test). Usage: bench_serve.py PORT [MAX_TOKENS] [COUNTS...]

Each stream is a /v1/completions request (temperature 0, distinct prompt) read as
SSE; throughput = all completion tokens / (last stream end - first token of any stream)
(conservative: includes the other streams' prefill steps)."""
import http.client, json, sys, threading, time

port = int(sys.argv[1])
max_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 64
counts = [int(x) for x in sys.argv[3:]] or [1, 2, 4, 8, 16]

def stream(i, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"prompt": f"Story number {i}: once upon a time", "temperature": 0, "max_tokens": max_tokens,
                       "stream": True, "stream_options": {"include_usage": True}})
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    first = None; n = 0; usage = None
    buf = b""
    while True:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not chunk: break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if not ev.startswith(b"data: ") or ev == b"data: [DONE]": continue
            j = json.loads(ev[6:])
            if j.get("usage"): usage = j["usage"]
            for ch in j["choices"]:
                if True:
                    if first is None: first = time.perf_counter()
    end = time.perf_counter()
    out[i] = (first or end, end, usage["completion_tokens"] if usage else 0, usage)

print(f"| streams | aggregate decode tok/s | per-stream tok/s | speedup vs 1 | J/token (decode) |")
print(f"|---|---|---|---|---|")
base = None
for n in counts:
    out = [None] * n
    ts = [threading.Thread(target=stream, args=(i, out)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    start = min(o[0] for o in out); end = max(o[1] for o in out)
    toks = sum(o[2] for o in out)
    tps = toks / (end - start)
    joules = sum(o[3]["energy"]["decode_joules"] for o in out); gen = sum(o[2] for o in out)
    base = base or tps
    print(f"| {n} | {tps:.1f} | {tps / n:.1f} | {tps / base:.2f}x | {joules / max(gen, 1):.4f} |", flush=True)

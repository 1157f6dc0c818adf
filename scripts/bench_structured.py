#!/usr/bin/env python3
"""Decode speed with and without a JSON-schema constraint (issue 26's benchmark).

Runs `jevons run` greedy on each model, plain and with --json-schema, interleaved
(the machine's bandwidth drifts: compare runs taken together), and prints decode
tok/s per setting and the constraint's cost as a percentage of decode time.

  scripts/bench_structured.py -m /tmp/models/qw15-q4_0.gguf -m /tmp/models/tl-q4_0.gguf -t 1,2 -n 128 -r 3
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

# Objects with long free strings: a random-weight model keeps writing inside the
# strings (at least 100 characters each, so that a greedy model cannot close the list
# at once), the constrained run decodes as many tokens as the plain one, the grammar is
# checked on every token, and the budget closes it at the end.
SCHEMA = {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 100}, "n": {"type": "integer"}}, "required": ["name", "n"]}}


def run(jevons, model, threads, n, schema):
    cmd = [jevons, "run", "-m", model, "-p", "Give the list as JSON:", "-n", str(n), "--temp", "0", "-t", str(threads)]
    if schema:
        cmd += ["--json-schema", schema]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, JEVONS_ENERGY_SOURCE="estimate"))
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    m = re.search(r"generated (\d+) tokens in ([\d.]+) s \(([\d.]+) tok/s\)", r.stderr)
    return int(m.group(1)), float(m.group(3))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", required=True)
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", "--repeat", type=int, default=3)
    ap.add_argument("--jevons", default=os.path.join(os.path.dirname(__file__), "..", "build", "jevons"))
    a = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(SCHEMA, f)
        schema = f.name
    print("| model | threads | plain tok/s | constrained tok/s | tokens (plain / constrained) | cost |")
    print("|---|---|---|---|---|---|")
    for model in a.model:
        for t in [int(x) for x in a.threads.split(",")]:
            plain, constrained, toks = [], [], []
            for _ in range(a.repeat):  # interleaved
                n0, s0 = run(a.jevons, model, t, a.n, None)
                n1, s1 = run(a.jevons, model, t, a.n, schema)
                plain.append(s0)
                constrained.append(s1)
                toks.append((n0, n1))
            p, c = statistics.median(plain), statistics.median(constrained)
            print(f"| {os.path.basename(model)} | {t} | {p:.2f} | {c:.2f} | {toks[-1][0]} / {toks[-1][1]} | {100 * (p / c - 1):+.1f}% |")
    os.unlink(schema)


if __name__ == "__main__":
    main()

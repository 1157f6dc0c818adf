#!/usr/bin/env python3
"""Speculative decoding with a draft model, measured against the same target without
it in the same run (`jevons bench --draft`): acceptance a, proposals per pass k, the
cost c of a proposed token and v of a verification pass (both over a plain step), the
measured speedup next to the standard model's prediction (1 - a^(k+1)) / ((1 - a)(k c + 1))
and the one with the measured v in place of 1, and joules per generated token.

  python3 scripts/bench_speculative.py --jevons build/jevons --target T.gguf --draft D.gguf [--draft D2.gguf] \
      [--k 1 2 4 8 adaptive] [--threads 1 2] [-n 32] [-r 2]

Prints a markdown table (one row per target, draft, k and thread count) and writes
the raw JSON of every run next to it with --json-out."""
import argparse
import json
import os
import subprocess
import sys


def run(args, target, draft, k, threads):
    cmd = [args.jevons, "bench", "-m", target, "--draft", draft, "-p", "0", "-n", str(args.n), "-r", str(args.r),
           "-t", str(threads), "--json"]
    if k == "adaptive":
        cmd += ["--draft-max", "8"]
    else:
        cmd += ["--draft-max", str(k), "--draft-fixed"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return cmd, json.loads(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jevons", default="build/jevons")
    p.add_argument("--target", action="append", required=True)
    p.add_argument("--draft", action="append", required=True)
    p.add_argument("--k", nargs="+", default=["1", "2", "4", "8", "adaptive"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("-n", type=int, default=32)
    p.add_argument("-r", type=int, default=2)
    p.add_argument("--json-out")
    args = p.parse_args()
    rows, raw = [], []
    print("| target | draft | k | threads | plain tok/s | spec tok/s | speedup | a | k/pass | tokens/pass | c | v | "
          "predicted | predicted with v | J/token plain | J/token spec | J ratio |")
    print("|" + "---|" * 17)
    for threads in args.threads:
        for target in args.target:
            for draft in args.draft:
                for k in args.k:
                    cmd, j = run(args, target, draft, k, threads)
                    s, d = j["speculative"], j["decode"]
                    raw.append({"command": " ".join(cmd), "result": j})
                    print(f"| {os.path.basename(target)} | {os.path.basename(draft)} | {k} | {threads} | "
                          f"{d['tokens_per_s']:.2f} | {s['tokens_per_s']:.2f} | {s['speedup']:.2f}x | "
                          f"{s['acceptance_rate']:.2f} | {s['proposals_per_pass']:.2f} | {s['tokens_per_pass']:.2f} | "
                          f"{s['draft_cost']:.3f} | {s['verify_cost']:.2f} | {s['predicted_speedup']:.2f}x | "
                          f"{s['predicted_speedup_with_verify_cost']:.2f}x | {s['plain_joules_per_token']:.3f} | "
                          f"{s['joules_per_token']:.3f} | {s['joules_ratio']:.2f}x |", flush=True)
    if args.json_out:
        tmp = args.json_out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(raw, f, indent=1)
        os.replace(tmp, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

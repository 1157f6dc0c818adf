#!/usr/bin/env python3
"""The CPU speed table of issue 6, from `jevons bench --json`, as markdown.

Synthesizes each model it needs (jevons synth: real shapes, random weights, a real
vocabulary from ../shared) into --models unless it is there already, runs
`jevons bench` once per (model, threads) with nothing else in between, and prints one
row per run: prefill tok/s and GOP/s against the matching compute peak, decode tok/s
and its roofline percentage against the cached bandwidth probe and, with --live,
against a probe taken right after each decode run (for VMs whose bandwidth drifts).

    scripts/bench_table.py --models /tmp/jevons-models            # the issue's rows
    scripts/bench_table.py --rows tinyllama-1.1b:q4_0 --threads 1 -r 5 --live
"""
import argparse
import json
import os
import subprocess
import sys

# The models and types, then the float types of its prefill target. synth's F16
# holds BF16 values, as an F16 file converted from the presets' BF16 releases does, so
# it runs the BF16 kernels by default; the next row keeps it F16 (f32 FMAs). Last, the
# Q4_K_M mix (Q4_K and Q6_K) that most published GGUFs use.
DEFAULT_ROWS = [f"{m}:{t}" for m in ("tinyllama-1.1b", "qwen2.5-1.5b") for t in ("q4_0", "q4_k", "q8_0")] + [
    "tinyllama-1.1b:bf16", "tinyllama-1.1b:f16", "tinyllama-1.1b:f16+no-f16-as-bf16",
    "tinyllama-1.1b:q4_k_m", "qwen2.5-1.5b:q4_k_m"]
# Vocabulary each preset's synthetic file takes (padded by synth to the preset's size).
VOCAB = {"tinyllama-1.1b": "ggml-vocab-llama-spm.gguf", "llama-3.2-1b": "ggml-vocab-llama-spm.gguf",
         "smollm2-135m": "ggml-vocab-llama-spm.gguf"}  # 32000 tokens: GPT-2's 50257 exceed its 49152 rows
DEFAULT_VOCAB = "ggml-vocab-deepseek-llm.gguf"


def run(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, **kw)


def model_file(args, preset, wtype):
    path = os.path.join(args.models, f"{preset}-{wtype}.gguf")
    if not os.path.exists(path):
        os.makedirs(args.models, exist_ok=True)
        vocab = os.path.join(args.shared, "tokenizers", "vocab", VOCAB.get(preset, DEFAULT_VOCAB))
        run([args.jevons, "synth", "--preset", preset, "--type", wtype, "--vocab", vocab, "-o", path])
    return path


def span(d, key, fmt):
    return f"{d[key]:{fmt}} ({d[key + '_min']:{fmt}}–{d[key + '_max']:{fmt}})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jevons", default="build/jevons", help="the jevons binary (default: build/jevons)")
    ap.add_argument("--models", default=os.path.expanduser("~/.cache/jevons/synth"),
                    help="where the synthetic models are kept (made when missing)")
    ap.add_argument("--shared", default=os.environ.get("JEVONS_SHARED_DIR", "../shared"),
                    help="the shared data folder, for the vocabularies (default: $JEVONS_SHARED_DIR or ../shared)")
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                    help="preset:type[+FLAG] list, FLAG a bench flag without its dashes, e.g. "
                         "f16-as-bf16 (default: the issue's rows)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default: 1,2)")
    ap.add_argument("-p", type=int, default=512, help="prompt tokens (default 512)")
    ap.add_argument("-n", type=int, default=128, help="decoded tokens (default 128)")
    ap.add_argument("-r", type=int, default=3, help="runs per row, median reported (default 3)")
    ap.add_argument("--live", action="store_true", help="also probe the bandwidth after each decode run")
    ap.add_argument("--json-out", help="also write every run's JSON to this file")
    args = ap.parse_args()
    if not os.path.exists(args.jevons):
        sys.exit(f"error: {args.jevons} not found (build first: scripts/build.sh)")

    results = []
    for row in args.rows.split(","):
        spec, _, flag = row.partition("+")
        preset, _, wtype = spec.partition(":")
        if not preset or not wtype:
            sys.exit(f"error: row '{row}' is not preset:type[+FLAG]")
        path = model_file(args, preset, wtype)
        for threads in args.threads.split(","):
            cmd = [args.jevons, "bench", "-m", path, "-p", str(args.p), "-n", str(args.n), "-t", threads,
                   "-r", str(args.r), "--json"]
            if flag:
                cmd.append("--" + flag)
            if args.live:
                cmd.append("--live-bandwidth")
            out = run(cmd, stdout=subprocess.PIPE).stdout
            j = json.loads(out)
            j["preset"], j["row"] = preset, row
            results.append(j)

    head = ["model", "type", "threads", "pp tok/s (min–max)", "prefill GOP/s", "% of peak", "tg tok/s (min–max)",
            "MB/token", "roofline % of cached probe"]
    if args.live:
        head += ["live probe GB/s (min–max)", "roofline % vs live probe (range)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for j in results:
        wtype = j["type"] + ((" rounded to bf16" if j.get("f16_rounded") else " as bf16") if j.get("f16_as_bf16") else "")
        spec, _, flag = j["row"].partition("+")
        asked = spec.partition(":")[2]
        if asked.lower() != j["type"].lower():  # a mix such as q4_k_m: bench names its main type
            wtype = f"{asked} ({wtype})"
        if flag:
            wtype += f" (--{flag})"
        cells = [j["preset"], wtype, str(j["threads"])]
        p, d = j.get("prefill"), j.get("decode")
        cells += [span(p, "tokens_per_s", ".1f"), f"{p['gops']:.1f}",
                  f"{p['peak_pct']:.0f}% of {p['peak']} {p['peak_gops']:.0f}"] if p else ["–"] * 3
        cells += [span(d, "tokens_per_s", ".2f"), f"{d['bytes_per_token'] / 1e6:.0f}",
                  f"{d['roofline_pct']:.1f}% of {d['bandwidth_gbs']:.1f} GB/s"] if d else ["–"] * 3
        if args.live:
            lb = d.get("live_bandwidth") if d else None
            cells += [f"{lb['gbs']:.1f} ({lb['gbs_min']:.1f}–{lb['gbs_max']:.1f})",
                      f"{lb['roofline_pct']:.1f}% ({lb['roofline_pct_min']:.1f}–{lb['roofline_pct_max']:.1f})"] if lb else ["–"] * 2
        print("| " + " | ".join(cells) + " |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

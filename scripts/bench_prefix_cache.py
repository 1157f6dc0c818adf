#!/usr/bin/env python3
"""The prefix cache measured through `jevons serve` (a benchmark, not a test).

A chat of --turns turns: a long system prompt (about --system-tokens tokens), then each
turn appends a user message of about --turn-tokens tokens and the reply to the
conversation, which is sent whole every time (as chat clients do). Run once with the
prefix cache and once with --no-prefix-cache, in that order or --order off,on; per turn:
time to first token (streamed), prompt and cached tokens, prefill joules (usage.energy).
Then, with --kv-cache-dir, the first turn after a restart of the server against cold.

Usage: bench_prefix_cache.py --jevons build/jevons --model M.gguf [--threads 2] [--turns 10]
"""
import argparse, http.client, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

WORDS = ("the river carried small boats past the old mill while children counted the clouds and the baker "
         "opened his shop before dawn because the town expected fresh bread every single morning of the year").split()


def text_of(n_words, seed):
    return " ".join(f"{WORDS[(seed * 7 + i * 13) % len(WORDS)]}{'' if i % 9 else ' ' + str(seed * 100 + i) + '.'}"
                    for i in range(n_words))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, args, extra):
        self.port = free_port()
        cmd = [args.jevons, "serve", "-m", args.model, "--port", str(self.port), "-t", str(args.threads),
               "-c", str(args.ctx), "--kv-budget", args.kv_budget, "--chat-template", "chatml"] + extra
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            if self.p.poll() is not None:
                self.log.seek(0)
                sys.exit("serve exited: " + self.log.read().decode(errors="replace"))
            time.sleep(0.2)
        sys.exit("serve did not become ready")

    def metrics(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/metrics")
        out = {}
        for line in c.getresponse().read().decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()

    def chat(self, messages, max_tokens):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        body = json.dumps({"messages": messages, "temperature": 0, "max_tokens": max_tokens, "stream": True,
                           "stream_options": {"include_usage": True}})
        t0 = time.perf_counter()
        c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            sys.exit(f"HTTP {r.status}: {r.read()[:500]!r}")
        ttft, text, usage, buf = None, "", None, b""
        while True:
            chunk = r.read1(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if not ev.startswith(b"data: ") or ev == b"data: [DONE]":
                    continue
                j = json.loads(ev[6:])
                if j.get("usage"):
                    usage = j["usage"]
                for ch in j["choices"]:
                    d = ch.get("delta", {})
                    piece = (d.get("content") or "") + (d.get("reasoning_content") or "")
                    if piece and ttft is None:
                        ttft = time.perf_counter() - t0
                    text += d.get("content") or ""
        total = time.perf_counter() - t0
        return {"ttft": ttft if ttft is not None else total, "text": text, "usage": usage}


def conversation(args, server):
    system = text_of(int(args.system_tokens * 0.75), 1)
    messages = [{"role": "system", "content": system}]
    rows = []
    for turn in range(args.turns):
        messages.append({"role": "user", "content": text_of(int(args.turn_tokens * 0.75), turn + 2)})
        r = server.chat(messages, args.max_tokens)
        u = r["usage"]
        rows.append((turn + 1, r["ttft"], u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"],
                     u["energy"]["prefill_joules"], u["energy"].get("cached_prompt_joules_saved", 0.0)))
        messages.append({"role": "assistant", "content": r["text"]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jevons", default="build/jevons")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--kv-budget", default="1G")
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--system-tokens", type=int, default=2000)
    ap.add_argument("--turn-tokens", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--order", default="on,off", help="which runs, in order: on (prefix cache), off (--no-prefix-cache)")
    ap.add_argument("--no-restart", action="store_true", help="skip the --kv-cache-dir restart measurement")
    args = ap.parse_args()

    results = {}
    for mode in args.order.split(","):
        s = Server(args, [] if mode == "on" else ["--no-prefix-cache"])
        try:
            results[mode] = conversation(args, s)
        finally:
            s.stop()
    print(f"model {os.path.basename(args.model)}, {args.threads} threads, system prompt ~{args.system_tokens} tokens, "
          f"+~{args.turn_tokens} per turn, {args.max_tokens} tokens per reply")
    print("| turn | prompt tokens | cache off: TTFT s / prefill J | cache on: TTFT s / prefill J (cached tokens, J saved est.) | TTFT on/off | prefill J on/off |")
    print("|---|---|---|---|---|---|")
    off, on = results.get("off"), results.get("on")
    for i in range(args.turns):
        o = off[i] if off else None
        n = on[i] if on else None
        prompt = (n or o)[2]
        cell_off = f"{o[1]:.3f} / {o[4]:.3f}" if o else "-"
        cell_on = f"{n[1]:.3f} / {n[4]:.3f} ({n[3]}, {n[5]:.3f})" if n else "-"
        ratio_t = f"{n[1] / o[1]:.1%}" if o and n else "-"
        ratio_j = f"{n[4] / o[4]:.1%}" if o and n and o[4] > 0 else "-"
        print(f"| {i + 1} | {prompt} | {cell_off} | {cell_on} | {ratio_t} | {ratio_j} |")

    if not args.no_restart:
        d = tempfile.mkdtemp(prefix="jevons-kvdir-")
        try:
            args.turns = 1
            s = Server(args, ["--kv-cache-dir", d])
            cold = conversation(args, s)[0]
            m_cold = s.metrics()
            s.stop()
            s = Server(args, ["--kv-cache-dir", d])
            warm = conversation(args, s)[0]
            m_warm = s.metrics()
            s.stop()
            files = os.listdir(d)
            size = sum(os.path.getsize(os.path.join(d, f)) for f in files)
            print(f"\nrestart with --kv-cache-dir ({len(files)} block files, {size / 1e6:.1f} MB): first request cold "
                  f"TTFT {cold[1]:.3f} s, prefill {cold[4]:.3f} J; after restart TTFT {warm[1]:.3f} s "
                  f"({warm[1] / cold[1]:.1%}), prefill {warm[4]:.3f} J, {warm[3]} of {warm[2]} prompt tokens from disk")
            w_b, w_s = m_cold.get("jevons_kv_disk_written_bytes_total", 0), m_cold.get("jevons_kv_disk_write_seconds_total", 0)
            r_b, r_s = m_warm.get("jevons_kv_disk_read_bytes_total", 0), m_warm.get("jevons_kv_disk_read_seconds_total", 0)
            p_tok = m_cold.get("jevons_engine_prompt_tokens_total", 0)
            busy = m_cold.get("jevons_engine_busy_seconds_total", 0)
            if w_s > 0 and r_s > 0 and busy > 0:
                per_tok = w_b / max(p_tok, 1)
                print(f"disk tier: written {w_b / 1e6:.1f} MB in {w_s:.3f} s ({w_b / w_s / 1e9:.2f} GB/s), read {r_b / 1e6:.1f} MB "
                      f"in {r_s:.3f} s ({r_b / r_s / 1e9:.2f} GB/s) = {r_b / r_s / per_tok:.0f} prompt tokens/s from disk, "
                      f"against {p_tok / busy:.0f} tokens/s of prefill (all forward time of the cold run)")
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

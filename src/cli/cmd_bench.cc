// jevons bench: prefill and decode speed, and how close decode runs to the
// memory-bandwidth roofline (bytes of weights per token x tokens/s ÷ measured bandwidth).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/common.h"
#include "core/error.h"
#include "core/output_file.h"
#include "core/large_buffer.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "kernels/bandwidth.h"
#include "kernels/peak.h"
#include "meter/cli_options.h"
#include "meter/meter.h"

namespace jevons::cli {
namespace {

struct BenchOptions {
  ModelArgs model;
  SpecArgs spec;
  int n_prompt = 512, n_gen = 128, depth = 0, threads = 0, reps = 5;
  bool json = false, reprobe = false, live_bandwidth = false;
  std::string energy_log;
  meter::Overrides meter;
};

struct Stats {
  double median = 0, min = 0, max = 0;
};

Stats stats_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  Stats s;
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  return s;
}

// The first CPU's model name with its family, model and stepping: a VM may report only
// "AMD EPYC" for hosts as different as Zen 3 and Zen 4.
std::string cpu_identity() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, name = "unknown cpu", family, model, stepping;
  while (std::getline(f, line) && !line.empty()) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name") name = value;
    else if (key == "cpu family") family = value;
    else if (key == "model") model = value;
    else if (key == "stepping") stepping = value;
  }
  return family.empty() ? name : fmt::format("{} (family {} model {} stepping {})", name, family, model, stepping);
}

// Machine probes (read bandwidth, compute peaks), cached per machine (CPU model, family,
// model number and stepping + thread count + probe revision) because each takes seconds. --reprobe measures again.
// The revision changes when a probe's loop does: revision 2 is the int8 loop without
// register spills (revision 1 read 15-30% low on Zen 3), so old entries are not reused;
// revision 3 streams huge pages, as decode does (LargeBuffer).
// A probe is a ceiling: when a run goes faster than the cached value (`achieved`), that
// value was measured in a slow spell (a shared VM's bandwidth drifts from minute to
// minute), so the probe runs again and the larger of the two is kept.
constexpr int kProbeRevision = 3;
double cached_probe(const std::string& what, int threads, bool reprobe, const std::function<double()>& measure,
                    double achieved = 0.0) {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::filesystem::path dir = xdg && *xdg ? std::filesystem::path(xdg) / "jevons"
                                    : home && *home ? std::filesystem::path(home) / ".cache/jevons"
                                                    : std::filesystem::temp_directory_path() / "jevons";
  const std::filesystem::path file = dir / "probes.json";
  const std::string key = fmt::format("{} | {} threads | {} | probe {}", cpu_identity(), threads, what, kProbeRevision);
  nlohmann::json cache = nlohmann::json::object();
  if (std::ifstream in(file); in) {
    try {
      in >> cache;
    } catch (const std::exception&) {
      cache = nlohmann::json::object();  // a corrupt cache is just re-measured
    }
  }
  double value = 0.0;
  if (!reprobe && cache.is_object() && cache.contains(key) && cache[key].is_number()) {
    const double cached = cache[key].get<double>();
    if (cached >= achieved) return cached;
    std::fprintf(stderr, "[bench] this run reached %.1f, above the cached %s of %.1f: probing again\n", achieved,
                 what.c_str(), cached);
    value = std::max(cached, measure());
  } else {
    if (!cache.is_object()) cache = nlohmann::json::object();
    value = measure();
  }
  cache[key] = value;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  try {  // whole or not at all; a cache that cannot be written is measured again next time
    OutputFile out(file);
    const std::string text = cache.dump(2) + "\n";
    out.write(text.data(), text.size());
    out.commit();
  } catch (const Error&) {
  }
  return value;
}

// Resident and peak resident memory of this process (kB from /proc/self/status).
std::pair<double, double> resident_gib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  double rss = 0, hwm = 0;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stod(line.substr(6)) / (1024.0 * 1024.0);
    if (line.rfind("VmHWM:", 0) == 0) hwm = std::stod(line.substr(6)) / (1024.0 * 1024.0);
  }
  return {rss, hwm};
}

// The type holding most of the weight bytes (e.g. Q4_0).
TensorType dominant_tensor_type(const ModelSource& f) {
  std::map<TensorType, size_t> bytes;
  for (const GgufTensor* t : f.tensor_list()) bytes[t->type] += t->nbytes;
  if (bytes.empty()) fail("{}: the model has no tensors", f.path());
  return std::max_element(bytes.begin(), bytes.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
}
std::string dominant_type(const ModelSource& f) { return type_name(dominant_tensor_type(f)); }

void run_bench(const BenchOptions& o) {
  using clock = std::chrono::steady_clock;
  const meter::MeterConfig meter_config = meter::resolve_config(o.meter);  // bad settings fail before the load
  if (!o.energy_log.empty()) check_output(o.energy_log, {o.model.path, o.spec.draft}, true);  // replaced, never an input
  LoadedModel m = load(o.model, true);
  Model& model = *m.model;
  const ModelConfig& cfg = model.config();
  const int threads = resolve_threads(o.threads);
  if (o.n_prompt > cfg.n_ctx_train || (o.n_gen > 0 && o.depth + o.n_gen > cfg.n_ctx_train))
    fail("-p {} or -d {} + -n {} exceeds the model's trained context of {}", o.n_prompt, o.depth, o.n_gen, cfg.n_ctx_train);
  ThreadPool pool(threads);
  model.set_thread_pool(&pool);
  const int n_ctx = std::max(1, std::max(o.n_prompt, o.depth + o.n_gen + 1));
  const TensorType kv_type = o.model.kv();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> any_token(0, cfg.n_vocab - 1);

  if (!o.json) std::fprintf(stderr, "[bench] warming up (pages the weights in)...\n");
  {
    KvCache cache = model.new_cache(1, o.model.kv());
    std::vector<float> logits(size_t(cfg.n_vocab));
    const int32_t tok = any_token(rng);
    model.forward(cache, &tok, 1, logits.data(), false);
  }

  // Energy over all repetitions: prefill and decode phases, nothing in between.
  meter::Meter meter(meter_config);
  if (!o.energy_log.empty()) meter.start_log(o.energy_log);
  meter::Span span = meter.span();
  const uint64_t weight_bytes = model.weight_bytes_per_token();
  // The engine's one generation loop, one sequence at a time: a prompt in one pass
  // (pp), then one token per step (tg). Greedy, and end-of-text does not stop it.
  engine::EngineOptions eo;
  eo.parallel = 1;
  eo.n_ctx = n_ctx;
  eo.kv_type = o.model.kv();
  eo.prefill_chunk_idle = std::max(512, o.n_prompt);
  eo.prefix_cache = false;  // every repetition computes its prompt
  // --spec: each decode run is also made with speculation (the same context, greedy,
  // so the same tokens), in alternating order, and compared with its plain twin.
  const Speculation spec = resolve_speculation(o.spec, o.model, m, &pool);
  const bool spec_on = spec.options.method != engine::SpecMethod::kNone;
  eo.spec = spec.options;
  engine::Engine eng(model, *m.tokenizer, meter, eo);
  int64_t generated = 0;
  engine::SequenceResult last;
  auto add_sequence = [&](std::vector<int32_t> prompt, int max_tokens, bool speculate = false) {
    engine::GenParams gp;
    gp.sampling.temperature = 0;
    gp.split_reasoning = false;
    gp.ignore_eos = true;
    gp.max_tokens = max_tokens;
    gp.speculate = speculate;
    engine::SequenceSink sink;
    sink.on_token = [&generated](int32_t) { ++generated; };
    sink.on_finish = [&last](engine::SequenceResult&& r) { last = std::move(r); };
    eng.add(std::make_unique<engine::Sequence>(std::move(prompt), gp, *m.tokenizer, std::move(sink)));
  };
  struct SpecRun {
    double tps, plain_j_per_token, j_per_token;
    engine::SequenceResult result;
  };
  std::vector<SpecRun> spec_runs;

  // --live-bandwidth: on a shared or throttled machine the bandwidth drifts by tens of
  // percent within minutes, so a probe cached hours ago says little about one run.
  // Each decode run is then followed by a short probe with the same threads, and each
  // run is compared with its own neighbour.
  constexpr size_t kLiveProbeBytes = size_t(256) << 20;  // 8x a large L3
  std::unique_ptr<ReadBandwidthProbe> live_probe;
  if (o.live_bandwidth && o.n_gen > 0) live_probe = std::make_unique<ReadBandwidthProbe>(kLiveProbeBytes, &pool);
  std::vector<double> prefill_tps, decode_tps, live_gbs, live_pct;
  // Bytes a decoded token reads: every weight once, and the cache's keys and values up
  // to its position (on average depth + (n + 1) / 2 of them).
  const uint64_t kv_bytes_per_token = uint64_t(double(cfg.kv_bytes_per_token(kv_type)) * (o.depth + (o.n_gen + 1) / 2.0));
  const uint64_t decode_bytes_per_token = weight_bytes + kv_bytes_per_token;
  for (int r = 0; r < o.reps; ++r) {
    if (o.n_prompt > 0) {
      std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
      for (int32_t& t : prompt) t = any_token(rng);
      add_sequence(std::move(prompt), 0);  // computes the prompt, samples nothing
      span.mark(meter::Phase::Prefill);
      const auto t0 = clock::now();
      eng.run_until_idle();
      prefill_tps.push_back(o.n_prompt / std::chrono::duration<double>(clock::now() - t0).count());
      span.mark(meter::Phase::Idle);
    }
    if (o.n_gen > 0) {
      // The depth's context and one more token, computed untimed and outside the decode
      // phase (only the context it leaves counts); then n_gen steps of one token each.
      std::vector<int32_t> context(static_cast<size_t>(o.depth + 1));
      for (int32_t& t : context) t = any_token(rng);
      // Returns tokens per second and joules per token of the n_gen timed tokens.
      auto decode_run = [&](bool speculate) {
        generated = 0;
        add_sequence(context, o.n_gen + 1, speculate);
        while (generated == 0 && !eng.idle()) eng.step();
        if (!speculate) span.mark(meter::Phase::Decode);  // the report's decode phase is the plain runs'
        const double j0 = meter.joules();
        const int64_t before = generated;
        const auto t0 = clock::now();
        eng.run_until_idle();
        const double tps = double(generated - before) / std::chrono::duration<double>(clock::now() - t0).count();
        if (generated != o.n_gen + 1) fail("bench: the decode ended after {} of {} tokens", generated - 1, o.n_gen);
        span.mark(meter::Phase::Idle);
        return std::pair<double, double>{tps, (meter.joules() - j0) / double(generated - before)};
      };
      const bool spec_first = spec_on && r % 2 == 1;
      SpecRun sr{};
      if (spec_first) std::tie(sr.tps, sr.j_per_token) = decode_run(true), sr.result = last;
      const auto [tps, jpt] = decode_run(false);
      decode_tps.push_back(tps);
      if (spec_on && !spec_first) std::tie(sr.tps, sr.j_per_token) = decode_run(true), sr.result = last;
      if (spec_on) {
        sr.plain_j_per_token = jpt;
        spec_runs.push_back(std::move(sr));
      }
      if (live_probe) {
        live_gbs.push_back(live_probe->best_gbs(&pool, 3));
        live_pct.push_back(100.0 * double(decode_bytes_per_token) * decode_tps.back() / 1e9 / live_gbs.back());
      }
    }
    if (!o.json) std::fprintf(stderr, "[bench] run %d/%d done\n", r + 1, o.reps);
  }

  const meter::EnergyReport energy = span.finish(int64_t(o.n_prompt) * o.reps, int64_t(o.n_gen) * o.reps);
  meter.stop_log();
  const uint64_t bytes_per_token = decode_bytes_per_token;
  const double decode_gbs = o.n_gen > 0 ? double(bytes_per_token) * stats_of(decode_tps).median / 1e9 : 0.0;
  // A decode that beats the cached bandwidth says the probe ran slow, unless its bytes
  // fit in the caches (under 256 MiB: small models decode partly from the LLC).
  const bool streams_from_dram = bytes_per_token >= (uint64_t(256) << 20);
  const double bandwidth =
      o.n_gen > 0 ? cached_probe(huge_pages_requested() ? "read bandwidth GB/s" : "read bandwidth GB/s, 4 KiB pages", threads,
                                 o.reprobe, [&] { return measure_read_bandwidth_gbs(threads); },
                                 streams_from_dram ? decode_gbs : 0.0)
                  : 0.0;
  // F16 matrices repacked as BF16 (LoadOptions::f16_as_bf16) run the BF16 kernels: compare with their peak.
  const bool f16_as_bf16 = model.f16_as_bf16_bytes() > 0, f16_rounded = model.f16_rounded_bytes() > 0;
  const TensorType weights_type = dominant_tensor_type(*m.file);
  const PeakKind peak_kind = peak_kind_for(weights_type == TensorType::F16 && f16_as_bf16 ? TensorType::BF16 : weights_type);
  const std::string peak_name = peak_kind_name(peak_kind);
  double prefill_flops = model.matmul_flops_per_token() * o.n_prompt;
  for (int p = 0; p < o.n_prompt; ++p) prefill_flops += model.attention_flops(p);
  const double prefill_gops = o.n_prompt > 0 ? prefill_flops / o.n_prompt * stats_of(prefill_tps).median / 1e9 : 0.0;
  const double peak_gops =
      o.n_prompt > 0 ? cached_probe(peak_name + " GOP/s", threads, o.reprobe,
                                    [&] { return measure_compute_peak_gops(peak_kind, threads); }, prefill_gops)
                     : 0.0;

  nlohmann::json j;
  j["model"] = std::filesystem::path(o.model.path).filename().string();
  j["name"] = cfg.name;
  j["arch"] = cfg.arch;
  j["type"] = dominant_type(*m.file);
  j["f16_as_bf16"] = f16_as_bf16;
  j["f16_rounded"] = f16_rounded;
  j["threads"] = threads;
  j["repetitions"] = o.reps;
  if (o.n_prompt > 0) {
    const Stats s = stats_of(prefill_tps);
    const double gops = prefill_gops;
    j["prefill"] = {{"tokens", o.n_prompt}, {"tokens_per_s", s.median}, {"tokens_per_s_min", s.min},
                    {"tokens_per_s_max", s.max}, {"gflops", gops}, {"gops", gops},
                    {"peak", peak_name}, {"peak_gops", peak_gops},
                    {"peak_pct", peak_gops > 0 ? 100.0 * gops / peak_gops : 0.0}};
  }
  if (o.n_gen > 0) {
    const Stats s = stats_of(decode_tps);
    const double achieved_gbs = decode_gbs;
    j["decode"] = {{"tokens", o.n_gen}, {"depth", o.depth}, {"tokens_per_s", s.median}, {"tokens_per_s_min", s.min},
                   {"tokens_per_s_max", s.max}, {"bytes_per_token", bytes_per_token},
                   {"weight_bytes_per_token", weight_bytes}, {"kv_bytes_per_token", kv_bytes_per_token},
                   {"kv_type", o.model.kv_type}, {"kv_bytes_per_position", cfg.kv_bytes_per_token(kv_type)},
                   {"achieved_gbs", achieved_gbs}, {"bandwidth_gbs", bandwidth},
                   {"roofline_pct", 100.0 * achieved_gbs / bandwidth}};
    if (!live_gbs.empty()) {
      const Stats b = stats_of(live_gbs), p = stats_of(live_pct);
      j["decode"]["live_bandwidth"] = {{"gbs", b.median}, {"gbs_min", b.min}, {"gbs_max", b.max},
                                       {"roofline_pct", p.median}, {"roofline_pct_min", p.min},
                                       {"roofline_pct_max", p.max}, {"probe_bytes", live_probe->bytes()}};
    }
  }
  std::string spec_line;
  if (!spec_runs.empty()) {
    std::vector<double> tps, speedup, j_ratio;
    int64_t drafted = 0, accepted = 0, rejections = 0, passes = 0, tokens = 0;
    double j_spec = 0, j_plain = 0;
    for (size_t i = 0; i < spec_runs.size(); ++i) {
      const SpecRun& r = spec_runs[i];
      tps.push_back(r.tps);
      speedup.push_back(r.tps / decode_tps[i]);
      j_ratio.push_back(r.plain_j_per_token / r.j_per_token);
      drafted += r.result.drafted_tokens, accepted += r.result.accepted_tokens, rejections += r.result.rejections;
      passes += r.result.sampling_passes, tokens += r.result.completion_tokens;
      j_spec += r.j_per_token, j_plain += r.plain_j_per_token;
    }
    const double n = double(spec_runs.size());
    // The standard model (Leviathan et al. 2023): acceptance a per proposed token,
    // k proposals per pass, a proposal costing c target steps.
    const double alpha = accepted + rejections > 0 ? double(accepted) / double(accepted + rejections) : 0.0;
    const double k = passes > 0 ? double(drafted) / double(passes) : 0.0;
    // c: a proposed token's time over a plain step's; v: a verification pass's time over a
    // plain step's (1 in the standard model; more where k + 1 tokens cost more than one).
    const engine::EngineStats es = eng.stats();
    const double plain_step = 1.0 / stats_of(decode_tps).median;
    const double c = drafted > 0 ? es.propose_s / double(drafted) / plain_step : 0.0;
    const double v = es.verify_steps > 0 ? es.verify_s / double(es.verify_steps) / plain_step : 1.0;
    const double gain = alpha < 1 ? (1 - std::pow(alpha, k + 1)) / (1 - alpha) : k + 1;
    const double predicted = gain / (k * c + 1), predicted_v = gain / (k * c + v);
    const Stats t = stats_of(tps), sp = stats_of(speedup), jr = stats_of(j_ratio);
    j["speculative"] = {{"method", engine::spec_method_name(spec.options.method)}, {"max_draft", spec.options.max_draft},
                        {"adaptive", spec.options.adaptive}, {"tokens_per_s", t.median}, {"speedup", sp.median},
                        {"speedup_min", sp.min}, {"speedup_max", sp.max}, {"drafted_tokens", drafted},
                        {"accepted_tokens", accepted}, {"acceptance_rate", alpha},
                        {"proposals_per_pass", k}, {"tokens_per_pass", passes > 0 ? double(tokens) / double(passes) : 0.0},
                        {"mean_accepted_length", passes > 0 ? double(accepted) / double(passes) : 0.0},
                        {"draft_cost", c}, {"verify_cost", v}, {"predicted_speedup", predicted},
                        {"predicted_speedup_with_verify_cost", predicted_v},
                        {"joules_per_token", j_spec / n}, {"plain_joules_per_token", j_plain / n},
                        {"joules_ratio", jr.median}, {"energy_estimated", meter.estimated()}};
    spec_line = fmt::format(
        "speculative ({}): {:.2f} tok/s = {:.2f}x plain ({:.2f}-{:.2f}); acceptance {:.2f} ({} of {} proposed), {:.2f} "
        "proposals and {:.2f} tokens per pass; a proposed token costs c = {:.3f} of a plain step, a verification pass v = {:.2f}; "
        "predicted {:.2f}x (standard model, v = 1), {:.2f}x with v; {:.4g} J/token vs {:.4g} "
        "plain ({:.2f}x fewer{})",
        spec.describe(), t.median, sp.median, sp.min, sp.max, alpha, accepted, drafted, k,
        passes > 0 ? double(tokens) / double(passes) : 0.0, c, v, predicted, predicted_v, j_spec / n, j_plain / n, jr.median,
        meter.estimated() ? ", estimated" : "");
  }
  // Weights are memory-mapped: resident memory is what the runs actually touched
  // (for MoE, only the experts that were routed to).
  size_t file_bytes = 0;
  for (const GgufTensor* t : m.file->tensor_list()) file_bytes += t->nbytes;
  const auto [rss, peak] = resident_gib();
  j["energy"] = meter::to_json(energy);
  const double gib = 1024.0 * 1024.0 * 1024.0;
  j["memory"] = {{"weights_gib", double(file_bytes) / gib},
                 {"repacked_gib", double(model.repacked_bytes()) / gib},
                 {"copied_gib", double(model.copied_bytes()) / gib},
                 {"f16_as_bf16_gib", double(model.f16_as_bf16_bytes()) / gib},
                 {"f16_rounded_gib", double(model.f16_rounded_bytes()) / gib},
                 {"resident_gib", rss},
                 {"peak_resident_gib", peak}};
  if (o.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("model %s (%s, %s%s), %d threads, median of %d runs\n", j["model"].get<std::string>().c_str(), cfg.arch.c_str(),
              j["type"].get<std::string>().c_str(), !f16_as_bf16   ? ""
              : f16_rounded ? ", F16 matrices rounded to BF16 at load"
                            : ", F16 matrices of BF16 values run as BF16",
              threads, o.reps);
  std::printf("%-8s %7s %12s %12s %12s %s\n", "phase", "tokens", "tok/s", "min", "max", "");
  if (o.n_prompt > 0) {
    const auto& p = j["prefill"];
    std::printf("%-8s %7d %12.2f %12.2f %12.2f %.1f of %.1f GOP/s = %.1f%% of the %s peak\n", "prefill", o.n_prompt,
                p["tokens_per_s"].get<double>(), p["tokens_per_s_min"].get<double>(), p["tokens_per_s_max"].get<double>(),
                p["gops"].get<double>(), peak_gops, p["peak_pct"].get<double>(), peak_name.c_str());
  }
  if (o.n_gen > 0) {
    const auto& d = j["decode"];
    std::printf("%-8s %7d %12.2f %12.2f %12.2f %.1f MB/token, %.1f of %.1f GB/s = %.1f%% of the bandwidth roofline\n",
                "decode", o.n_gen, d["tokens_per_s"].get<double>(), d["tokens_per_s_min"].get<double>(),
                d["tokens_per_s_max"].get<double>(), double(bytes_per_token) / 1e6, d["achieved_gbs"].get<double>(),
                bandwidth, d["roofline_pct"].get<double>());
    std::printf("%-8s %7s %12s %12s %12s (weights %.1f MB + KV cache %.1f MB at depth %d; %s KV, %zu bytes per position)\n",
                "", "", "", "", "", double(weight_bytes) / 1e6, double(kv_bytes_per_token) / 1e6, o.depth,
                o.model.kv_type.c_str(), cfg.kv_bytes_per_token(kv_type));
    if (d.contains("live_bandwidth")) {
      const auto& l = d["live_bandwidth"];
      std::printf("%-8s %7s %12s %12s %12s probed after each run: %.1f GB/s (%.1f-%.1f); each run against its probe: "
                  "%.1f%% (%.1f-%.1f%%) of the bandwidth roofline\n",
                  "", "", "", "", "", l["gbs"].get<double>(), l["gbs_min"].get<double>(), l["gbs_max"].get<double>(),
                  l["roofline_pct"].get<double>(), l["roofline_pct_min"].get<double>(),
                  l["roofline_pct_max"].get<double>());
    }
  }
  if (!spec_line.empty()) std::printf("%s\n", spec_line.c_str());
  std::printf("%s\n", meter::summary_line(energy).c_str());
  std::printf("memory: weights %.2f GiB (memory-mapped; %.2f GiB of it repacked and %.2f GiB copied into huge pages at load), "
              "resident %.2f GiB, peak %.2f GiB\n",
              j["memory"]["weights_gib"].get<double>(), j["memory"]["repacked_gib"].get<double>(),
              j["memory"]["copied_gib"].get<double>(), rss, peak);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* c = app.add_subcommand("bench", "Measure prefill and decode speed and the decode roofline percentage");
  add_model_options(c, o->model);
  c->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens for the prefill test (0 skips it)")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  c->add_option("-n,--n-gen", o->n_gen, "Tokens for the decode test (0 skips it)")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  c->add_option("-d,--depth", o->depth,
                 "Tokens already in the KV cache when each decode test starts (a random context, prefilled untimed): "
                 "decode speed deep into a long prompt or reasoning trace")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  c->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")->check(CLI::Range(1, 1024));
  add_spec_options(c, o->spec);  // bench: each decode run is repeated with speculation and compared
  c->add_option("-r,--repetitions", o->reps, "Runs of each test; the median is reported")->capture_default_str()->check(CLI::Range(1, 1000));
  c->add_flag("--json", o->json, "Print one JSON object instead of the table");
  c->add_option("--energy-log", o->energy_log, "Write a CSV time series of power (t_s,watts,joules,source) to FILE");
  meter::add_meter_options(c, o->meter);
  c->add_flag("--reprobe", o->reprobe, "Measure the memory bandwidth and compute peak again instead of using the cached values");
  c->add_flag("--live-bandwidth", o->live_bandwidth,
              "Also probe the read bandwidth right after each decode run (256 MiB, counted in peak memory) and "
              "report each run against it: for shared or throttled machines whose bandwidth drifts");
  c->callback([o] { run_bench(*o); });
}

}  // namespace jevons::cli

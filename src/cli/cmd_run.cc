// jevons run: prompt in, streamed continuation out.
#include <chrono>
#include <cstdio>
#include <random>

#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "meter/cli_options.h"
#include "meter/meter.h"
#include "runtime/sampler.h"

namespace jevons::cli {
namespace {

struct RunOptions {
  ModelArgs model;
  std::string prompt;
  int n_predict = 256;
  int threads = 0;
  int ctx = 0;
  bool no_bos = false;
  bool seed_given = false;
  SamplerParams sampling;
  meter::Overrides meter;
  std::string energy_log;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run(RunOptions o) {
  const meter::MeterConfig meter_config = meter::resolve_config(o.meter);  // bad settings fail before the load
  LoadedModel m = load(o.model, true);
  const ModelConfig& cfg = m.model->config();
  const int n_ctx = o.ctx > 0 ? o.ctx : default_context(cfg);
  if (!o.seed_given) o.sampling.seed = std::random_device{}();
  if (n_ctx > cfg.n_ctx_train)
    std::fprintf(stderr, "[jevons] warning: -c %d exceeds the model's trained context of %d; quality may degrade past it\n", n_ctx,
                 cfg.n_ctx_train);

  const bool add_bos = m.tokenizer->add_bos_default() && !o.no_bos;
  std::vector<int32_t> prompt = m.tokenizer->encode(o.prompt, add_bos);
  if (prompt.empty()) fail("the prompt is empty and the model adds no BOS token: give a prompt with -p");
  if (int(prompt.size()) > n_ctx)
    fail("the prompt is {} tokens but the context is {} (raise -c, up to the trained context {})", prompt.size(), n_ctx,
         cfg.n_ctx_train);

  ThreadPool pool(o.threads > 0 ? o.threads : physical_core_count());
  m.model->set_thread_pool(&pool);
  KvCache cache = m.model->new_cache(n_ctx);
  Sampler sampler(o.sampling);
  for (int32_t id : prompt) sampler.accept(id);

  std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
  std::fflush(stdout);

  std::vector<float> logits(size_t(cfg.n_vocab));
  // Energy: the estimate charges the memory each forward pass streams.
  meter::Meter meter(meter_config);
  for (const std::string& w : meter.warnings()) std::fprintf(stderr, "[jevons] energy: %s\n", w.c_str());
  if (!o.energy_log.empty()) meter.start_log(o.energy_log);
  const uint64_t weight_bytes = m.model->weight_bytes_per_token();  // active experts only, for MoE
  auto forward = [&](const int32_t* ids, int64_t n) {
    meter.add_memory_traffic(meter::forward_traffic_bytes(weight_bytes, cfg.kv_bytes_per_token(), cache.n_past(), n));
    m.model->forward(cache, ids, n, logits.data(), false);
  };
  meter::Span span = meter.span();
  span.mark(meter::Phase::Prefill);
  const auto t_prompt = std::chrono::steady_clock::now();
  forward(prompt.data(), int64_t(prompt.size()));
  const double prompt_s = seconds_since(t_prompt);

  StreamDecoder decoder(*m.tokenizer);
  int n_generated = 0;
  const char* stop_reason = "token limit";
  span.mark(meter::Phase::Decode);
  const auto t_gen = std::chrono::steady_clock::now();
  while (n_generated < o.n_predict) {
    const int32_t id = sampler.sample(logits.data(), cfg.n_vocab);
    ++n_generated;
    if (m.tokenizer->is_eog(id)) {
      stop_reason = "end of text";
      break;
    }
    sampler.accept(id);
    const std::string text = decoder.push(id);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    if (n_generated == o.n_predict) break;
    if (cache.n_past() >= n_ctx) {
      stop_reason = "context full (raise -c)";
      break;
    }
    forward(&id, 1);
  }
  const std::string tail = decoder.finish();
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const double gen_s = seconds_since(t_gen);
  const meter::EnergyReport energy = span.finish(int64_t(prompt.size()), n_generated);
  meter.stop_log();

  std::fprintf(stderr, "\n[jevons] stopped: %s | prompt %zu tokens in %.3f s (%.1f tok/s) | generated %d tokens in %.3f s (%.1f tok/s) | %d threads, ctx %d, seed %llu\n",
               stop_reason, prompt.size(), prompt_s, double(prompt.size()) / std::max(prompt_s, 1e-9), n_generated, gen_s,
               double(n_generated) / std::max(gen_s, 1e-9), pool.size(), n_ctx, (unsigned long long)o.sampling.seed);
  std::fprintf(stderr, "%s\n", meter::summary_line(energy).c_str());
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* c = app.add_subcommand("run", "Generate text from a prompt; the prompt and the continuation stream to stdout, timing to stderr");
  add_model_options(c, o->model);
  c->add_option("-p,--prompt", o->prompt, "Prompt text");
  c->add_option("-n,--n-predict", o->n_predict, "Tokens to generate at most (stops earlier at end of text)")->capture_default_str()->check(CLI::Range(0, 1 << 30));
  add_sampling_options(c, o->sampling, o->seed_given);
  c->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")->check(CLI::Range(1, 1024));
  c->add_option("-c,--ctx-size", o->ctx, "Context length in tokens (default: min(4096, trained context))")->check(CLI::Range(1, 1 << 24));
  c->add_flag("--no-bos", o->no_bos, "Do not add the BOS token even if the model asks for it");
  c->add_option("--energy-log", o->energy_log, "Write a CSV time series of power (t_s,watts,joules,source) every --energy-sample-ms")
      ->type_name("FILE");
  meter::add_meter_options(c, o->meter);
  c->callback([o] { run(*o); });
}

}  // namespace jevons::cli

// jevons serve: an OpenAI-compatible HTTP server with continuous batching and
// per-request energy (src/server/).
#include <cctype>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "meter/cli_options.h"
#include "meter/meter.h"
#include "server/http.h"
#include "engine/chat_prompt.h"
#include "engine/scheduler.h"

namespace jevons::cli {
namespace {

struct ServeOptions {
  ModelArgs model;
  SpecArgs spec;
  std::string alias, chat_template, kv_budget = "1G", api_key, cors;
  std::string kv_cache_dir, kv_cache_disk_max = "8G";
  std::string host = "127.0.0.1";
  double shutdown_timeout = 5, request_timeout = 0;
  int port = 8080;
  int parallel = 8;
  int threads = 0;
  int ctx = 0;
  int max_queue = 64;
  int prefill_chunk = 128;
  int http_threads = 128;
  bool no_prefix_cache = false;
  bool kv_budget_given = false;
  size_t max_body = size_t(8) << 20;
  meter::Overrides meter;
};

size_t parse_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) fail("cannot parse size '{}': expected e.g. 512M, 2G, 1073741824", text);
  const double v = std::stod(text.substr(0, i));
  std::string unit = text.substr(i);
  for (char& c : unit) c = char(std::tolower(static_cast<unsigned char>(c)));
  double mul = 1;
  if (unit.empty() || unit == "b") mul = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mul = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib") mul = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib") mul = 1024.0 * 1024 * 1024;
  else fail("cannot parse size '{}': unknown unit '{}' (K, M, G)", text, unit);
  return size_t(v * mul);
}

std::string base_name(const std::string& path) {
  std::string p = path;
  while (!p.empty() && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  std::string b = slash == std::string::npos ? p : p.substr(slash + 1);
  if (b.size() > 5 && b.compare(b.size() - 5, 5, ".gguf") == 0) b.resize(b.size() - 5);
  return b;
}

std::atomic<int> g_signals{0};

extern "C" void on_stop_signal(int) {
  if (g_signals.fetch_add(1) >= 1) _exit(130);  // the second one: at once
}

void serve(const ServeOptions& o) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  const meter::MeterConfig meter_config = meter::resolve_config(o.meter);
  const size_t kv_budget = parse_size(o.kv_budget);
  server::ServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.api_key = o.api_key;
  so.cors_origin = o.cors;
  so.model_name = o.alias.empty() ? base_name(o.model.path) : o.alias;
  so.max_body_bytes = o.max_body;
  so.http_threads = o.http_threads;
  so.request_timeout_s = o.request_timeout;
  server::HttpServer http(so);
  const int port = http.bind();
  http.start();  // /health answers 503 while the model loads
  std::fprintf(stderr, "[jevons] serve: listening on http://%s:%d (loading %s)\n", o.host.c_str(), port, o.model.path.c_str());
  if (o.host != "127.0.0.1" && o.host != "localhost" && o.host != "::1" && o.api_key.empty())
    std::fprintf(stderr, "[jevons] warning: listening on %s without --api-key: anyone who can reach it can use it\n", o.host.c_str());

  LoadedModel m = load(o.model, true);
  const ModelConfig& cfg = m.model->config();
  ThreadPool pool(resolve_threads(o.threads));
  m.model->set_thread_pool(&pool);
  std::string notice;
  auto tmpl = std::make_unique<ChatTemplate>(engine::resolve_chat_template(*m.file, *m.tokenizer, o.chat_template, &notice));
  if (!notice.empty()) std::fprintf(stderr, "[jevons] warning: %s\n", notice.c_str());
  meter::Meter meter(meter_config);
  for (const std::string& w : meter.warnings()) std::fprintf(stderr, "[jevons] energy: %s\n", w.c_str());
  engine::SchedulerOptions sched;
  sched.engine.parallel = o.parallel;
  sched.engine.n_ctx = o.ctx > 0 ? o.ctx : default_context(cfg);
  sched.engine.kv_budget_bytes = kv_budget;
  {
    // The default budget grows to one full context (a large model's 4096 positions can
    // exceed 1G); a budget the user chose is kept, and too small a one is an error.
    const ModelConfig& c = m.model->config();
    const size_t block = KvBlockPool::block_bytes(c.n_layer, c.cache_k_dim, c.cache_v_dim, o.model.kv());
    const size_t one_context = size_t((sched.engine.n_ctx + KvBlockPool::kBlockTokens - 1) / KvBlockPool::kBlockTokens) * block;
    if (!o.kv_budget_given && kv_budget < one_context) {
      sched.engine.kv_budget_bytes = one_context;
      std::fprintf(stderr, "[jevons] serve: the default --kv-budget of %s holds less than one full context of %d; using %.0f MiB\n",
                   o.kv_budget.c_str(), sched.engine.n_ctx, double(one_context) / 1048576.0);
    }
  }
  sched.engine.prefill_chunk = o.prefill_chunk;
  sched.engine.prefix_cache = !o.no_prefix_cache;
  sched.engine.kv_type = o.model.kv();
  sched.engine.kv_cache_dir = o.kv_cache_dir;
  sched.engine.kv_cache_disk_max = parse_size(o.kv_cache_disk_max);
  sched.engine.model_identity = engine::model_identity(*m.file);
  if (!o.kv_cache_dir.empty() && o.no_prefix_cache) fail("--kv-cache-dir needs the prefix cache (drop --no-prefix-cache)");
  sched.max_queue = o.max_queue;
  const Speculation spec = resolve_speculation(o.spec, o.model, m, &pool);
  sched.engine.spec = spec.options;
  engine::Scheduler scheduler(*m.model, *m.tokenizer, meter, sched);
  http.attach(server::Backend{&scheduler, tmpl.get(), &meter});
  const engine::SchedulerStats s = scheduler.stats();
  const int full = scheduler.engine().full_contexts();
  if (s.disk_tier)
    std::fprintf(stderr, "[jevons] serve: KV disk tier %s: %lld blocks (%.1f MB) found, cap %s\n", o.kv_cache_dir.c_str(),
                 (long long)s.disk.files, double(s.disk.bytes) / 1e6, o.kv_cache_disk_max.c_str());
  std::fprintf(stderr,
               "[jevons] serve: ready: model '%s', ctx %d per sequence, %d parallel, KV pool %zu blocks of %d tokens (%s): "
               "%d full-context sequences fit at once, %d asked for by --parallel (blocks are taken as tokens are computed; "
               "when they run out, the youngest sequence waits); KV %s, %zu bytes per token; prefix cache %s; speculative decoding %s; "
               "%d threads, energy source %s\n",
               so.model_name.c_str(), sched.engine.n_ctx, sched.engine.parallel, s.kv.total_blocks, KvBlockPool::kBlockTokens,
               o.kv_budget.c_str(), full, o.parallel, o.model.kv_type.c_str(), cfg.kv_bytes_per_token(o.model.kv()),
               o.no_prefix_cache ? "off" : "on", spec.describe().c_str(), pool.size(), meter.source().c_str());
  // Serve until SIGTERM or SIGINT: then drain (see HttpServer::drain); a second signal
  // exits at once.
  while (g_signals.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::fprintf(stderr, "[jevons] serve: shutting down: no new requests; %d in flight get up to %g s to finish (--shutdown-timeout)\n",
               http.in_flight(), o.shutdown_timeout);
  const int cut = http.drain(std::chrono::milliseconds(int64_t(o.shutdown_timeout * 1000)));
  scheduler.stop();
  std::fprintf(stderr, "[jevons] serve: stopped (%d response%s cut short)\n", cut, cut == 1 ? "" : "s");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* c = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching and per-request energy");
  add_model_options(c, o->model);
  c->add_option("--host", o->host, "Address to listen on (default loopback only)")->capture_default_str();
  c->add_option("--port", o->port, "Port (0: any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
  c->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' on every /v1 route (env JEVONS_API_KEY)")->envname("JEVONS_API_KEY");
  c->add_option("--kv-budget", o->kv_budget,
                "Memory for the shared paged KV cache, e.g. 512M, 4G (at least one full context; the default grows to one)")
      ->capture_default_str()
      ->each([o](const std::string&) { o->kv_budget_given = true; });
  c->add_option("--parallel", o->parallel, "Sequences decoded together in one batch at most")->capture_default_str()->check(CLI::Range(1, 1024));
  c->add_option("-c,--ctx-size", o->ctx, "Context per sequence (default: min(4096, trained context))")->check(CLI::Range(1, 1 << 24));
  c->add_option("-t,--threads", o->threads, "Compute threads (default: physical cores)")->check(CLI::Range(1, 1024));
  c->add_option("--max-queue", o->max_queue, "Requests waiting beyond the running batch; more get 429")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  c->add_option("--prefill-chunk", o->prefill_chunk, "Prompt tokens prefilled per step while others decode")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  c->add_option("--chat-template", o->chat_template,
                "Chat template: a Jinja file, or a built-in name (chatml, llama3, deepseek-r1, deepseek-v3); default: the model's")
      ->type_name("FILE|NAME");
  c->add_option("--kv-cache-dir", o->kv_cache_dir,
                "Keep the prefix cache's full KV blocks in this directory too, so that a restarted server finds them "
                "(files bound to the model's weights and --kv-type, checksummed, written atomically)")
      ->type_name("DIR");
  c->add_option("--kv-cache-disk-max", o->kv_cache_disk_max,
                "Size cap of --kv-cache-dir; least recently used blocks are deleted beyond it, e.g. 512M, 20G (0: no cap)")
      ->capture_default_str();
  c->add_flag("--no-prefix-cache", o->no_prefix_cache,
              "Compute every prompt in full (by default, KV blocks of prompt prefixes seen before are reused: same output, less work)");
  add_spec_options(c, o->spec);  // a request may turn it off with "speculative": false
  c->add_option("--request-timeout", o->request_timeout,
                "Seconds a request may run; longer ones are cut (a stream ends with an error event, code request_timeout). "
                "0: no limit")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e7));
  c->add_option("--shutdown-timeout", o->shutdown_timeout,
                "On SIGTERM/SIGINT: seconds running requests may take to finish before their streams end with an "
                "error event (a second signal exits at once)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  c->add_option("--alias", o->alias, "Model id served in /v1/models (default: the file name)");
  c->add_option("--cors", o->cors, "Allow browser calls from this origin ('*' for any); off by default");
  c->add_option("--max-body", o->max_body, "Largest request body in bytes")->capture_default_str();
  c->add_option("--http-threads", o->http_threads, "HTTP worker threads (each open stream holds one)")->capture_default_str()->check(CLI::Range(8, 4096));
  meter::add_meter_options(c, o->meter);
  c->callback([o] { serve(*o); });
}

}  // namespace jevons::cli

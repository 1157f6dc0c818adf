// jevons chat: a multi-turn conversation on the terminal (or from a pipe). Each
// turn renders the whole conversation with the chat template and generates through
// the engine, whose prefix cache holds the conversation so far: only the new tokens
// are computed.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/chat_prompt.h"
#include "engine/engine.h"
#include "meter/cli_options.h"
#include "meter/meter.h"

namespace jevons::cli {
namespace {

struct ChatOptions {
  ModelArgs model;
  std::string system, chat_template;
  int n_predict = 1024;
  int threads = 0;
  int ctx = 0;
  bool seed_given = false;
  SamplerParams sampling;
  SpecArgs spec;
  meter::Overrides meter;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

void chat(ChatOptions o) {
  const meter::MeterConfig meter_config = meter::resolve_config(o.meter);
  LoadedModel m = load(o.model, true);
  const ModelConfig& cfg = m.model->config();
  const Tokenizer& tok = *m.tokenizer;
  const int n_ctx = o.ctx > 0 ? o.ctx : default_context(cfg);
  if (!o.seed_given) o.sampling.seed = std::random_device{}();

  std::string notice;
  const ChatTemplate tmpl = engine::resolve_chat_template(*m.file, tok, o.chat_template, &notice);
  if (!notice.empty()) std::fprintf(stderr, "[jevons] warning: %s\n", notice.c_str());

  ThreadPool pool(resolve_threads(o.threads));
  m.model->set_thread_pool(&pool);
  meter::Meter meter(meter_config);
  for (const std::string& w : meter.warnings()) std::fprintf(stderr, "[jevons] energy: %s\n", w.c_str());
  // One sequence per reply; the prefix cache keeps the conversation's KV between them,
  // so each turn computes only what is new (the pool holds one full context).
  engine::EngineOptions eo;
  eo.parallel = 1;
  eo.n_ctx = n_ctx;
  eo.kv_type = o.model.kv();
  const Speculation spec = resolve_speculation(o.spec, o.model, m, &pool);
  eo.spec = spec.options;
  engine::Engine eng(*m.model, tok, meter, eo);
  engine::GenParams params;
  params.sampling = o.sampling;
  params.max_tokens = o.n_predict;
  params.split_reasoning = false;

  std::vector<ChatMessage> history;
  if (!o.system.empty()) history.push_back({"system", o.system, ""});
  const bool interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  if (interactive)
    std::fprintf(stderr, "[jevons] chatting with %s (ctx %d). /reset clears the conversation, /exit or Ctrl-D ends it.\n",
                 o.model.path.c_str(), n_ctx);

  double total_j = 0;
  std::string line;
  while (true) {
    if (interactive) {
      std::fputs("\n> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    const std::string text = trim(line);
    if (text.empty()) continue;
    if (text == "/exit" || text == "/quit") break;
    if (text == "/reset") {
      history.resize(o.system.empty() ? 0 : 1);
      std::fprintf(stderr, "[jevons] conversation cleared\n");
      continue;
    }
    history.push_back({"user", text, ""});

    engine::ChatPrompt prompt;
    try {
      prompt = engine::build_chat_prompt(tmpl, tok, history);
    } catch (const Error& e) {
      history.pop_back();
      std::fprintf(stderr, "[jevons] error: %s\n", e.what());
      continue;
    }
    if (int(prompt.ids.size()) >= n_ctx) {
      history.pop_back();
      std::fprintf(stderr, "[jevons] the conversation is %zu tokens but the context is %d: /reset it or raise -c\n",
                   prompt.ids.size(), n_ctx);
      continue;
    }

    std::string reply;
    if (tmpl.opens_thinking()) {
      std::fputs("<think>\n", stdout);
      reply = "<think>\n";
    }
    engine::SequenceResult result;
    engine::SequenceSink sink;
    sink.on_delta = [&reply](engine::Delta&& d) {
      reply += d.content;
      std::fwrite(d.content.data(), 1, d.content.size(), stdout);
      std::fflush(stdout);
    };
    sink.on_finish = [&result](engine::SequenceResult&& r) { result = std::move(r); };
    const size_t n_prompt = prompt.ids.size();
    const auto t0 = std::chrono::steady_clock::now();
    eng.add(std::make_unique<engine::Sequence>(std::move(prompt.ids), params, tok, std::move(sink)));
    eng.run_until_idle();
    const double wall_s = seconds_since(t0);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    history.push_back({"assistant", reply, ""});

    const double prompt_s = result.prefill.seconds, gen_s = std::max(0.0, wall_s - prompt_s);
    const size_t n_new = n_prompt - size_t(result.cached_tokens);
    meter::PhaseEnergy prefill = result.prefill, decode = result.decode;
    prefill.tokens = int64_t(n_prompt);
    decode.tokens = result.completion_tokens;
    decode.seconds = gen_s;
    const meter::EnergyReport energy =
        meter::make_report(meter.source(), meter.source_detail(), meter.estimated(), prefill, decode, meter.config().prices);
    total_j += energy.total_j;
    std::string why = result.detail;
    if (why == "end of text") why = "end of turn";
    if (why == "context full") why += " (/reset or raise -c)";
    if (why == "max tokens") why = "token limit";
    std::fprintf(stderr,
                 "[jevons] reply: %s | prompt %zu new of %zu tokens in %.3f s (%.1f tok/s) | generated %d tokens in %.3f s (%.1f tok/s)\n",
                 why.c_str(), n_new, n_prompt, prompt_s, double(n_new) / std::max(prompt_s, 1e-9), result.completion_tokens, gen_s,
                 double(result.completion_tokens) / std::max(gen_s, 1e-9));
    std::fprintf(stderr, "%s\n", meter::summary_line(energy).c_str());
  }
  if (total_j > 0) std::fprintf(stderr, "[jevons] session energy: %.3f J (%s)\n", total_j, meter.estimated() ? "estimated" : "measured");
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  CLI::App* c = app.add_subcommand("chat", "Multi-turn chat: user lines from stdin (/reset clears, /exit or EOF ends), replies to stdout, timing to stderr");
  add_model_options(c, o->model);
  c->add_option("--system", o->system, "System prompt");
  c->add_option("--chat-template", o->chat_template,
                "Chat template: a Jinja file, or a built-in name (chatml, llama3, deepseek-r1, deepseek-v3); default: the model's");
  c->add_option("-n,--n-predict", o->n_predict, "Tokens to generate per reply at most")->capture_default_str()->check(CLI::Range(1, 1 << 30));
  add_sampling_options(c, o->sampling, o->seed_given);
  add_spec_options(c, o->spec);
  c->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")->check(CLI::Range(1, 1024));
  c->add_option("-c,--ctx-size", o->ctx, "Context length in tokens (default: min(4096, trained context))")->check(CLI::Range(1, 1 << 24));
  meter::add_meter_options(c, o->meter);
  c->callback([o] { chat(*o); });
}

}  // namespace jevons::cli

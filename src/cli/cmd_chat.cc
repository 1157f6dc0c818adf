// jevons chat: a multi-turn conversation on the terminal (or from a pipe). Each
// turn renders the whole conversation with the model's chat template and
// evaluates only the tokens past what the KV cache already holds.
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
#include "runtime/sampler.h"
#include "tokenizer/chat_template.h"

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
  LoadedModel m = load(o.model, true);
  const ModelConfig& cfg = m.model->config();
  const Tokenizer& tok = *m.tokenizer;
  const int n_ctx = o.ctx > 0 ? o.ctx : default_context(cfg);
  if (!o.seed_given) o.sampling.seed = std::random_device{}();

  ChatTemplate tmpl = [&] {
    try {
      return ChatTemplate::from_source(*m.file, tok);
    } catch (const Error& e) {  // a template this renderer can not parse: fall back to ChatML
      std::fprintf(stderr, "[jevons] warning: the model's chat template is not usable (%s); using chatml (see --chat-template)\n", e.what());
      auto text = [&](int32_t id) { return id >= 0 ? tok.token_text(id) : std::string(); };
      return ChatTemplate(ChatTemplate::builtin("chatml"), text(tok.bos_id()), text(tok.eos_id()));
    }
  }();
  if (!o.chat_template.empty()) {
    std::string src;
    if (std::ifstream f(o.chat_template); f) {
      std::stringstream ss;
      ss << f.rdbuf();
      src = ss.str();
    } else {
      src = ChatTemplate::builtin(o.chat_template);
    }
    tmpl = ChatTemplate(src, tmpl.bos_token(), tmpl.eos_token());
  }

  ThreadPool pool(o.threads > 0 ? o.threads : physical_core_count());
  m.model->set_thread_pool(&pool);
  KvCache cache = m.model->new_cache(n_ctx);
  std::vector<int32_t> cached;  // the tokens whose keys and values the cache holds
  std::vector<float> logits(size_t(cfg.n_vocab));
  Sampler sampler(o.sampling);

  std::vector<ChatMessage> history;
  if (!o.system.empty()) history.push_back({"system", o.system, ""});
  const bool interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  if (interactive)
    std::fprintf(stderr, "[jevons] chatting with %s (ctx %d). /reset clears the conversation, /exit or Ctrl-D ends it.\n",
                 o.model.path.c_str(), n_ctx);

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

    std::string prompt_text;
    try {
      prompt_text = tmpl.render(history, true);
    } catch (const Error& e) {
      history.pop_back();
      std::fprintf(stderr, "[jevons] error: %s\n", e.what());
      continue;
    }
    const bool has_bos_text = !tmpl.bos_token().empty() && prompt_text.compare(0, tmpl.bos_token().size(), tmpl.bos_token()) == 0;
    const std::vector<int32_t> prompt = tok.encode(prompt_text, tok.add_bos_default() && !has_bos_text, true);
    if (prompt.empty()) fail("the chat template rendered an empty prompt");
    if (int(prompt.size()) >= n_ctx) {
      history.pop_back();
      std::fprintf(stderr, "[jevons] the conversation is %zu tokens but the context is %d: /reset it or raise -c\n",
                   prompt.size(), n_ctx);
      continue;
    }

    // Reuse the cache for the longest common prefix (at least one token must be evaluated).
    size_t keep = 0;
    while (keep < cached.size() && keep < prompt.size() && cached[keep] == prompt[keep]) ++keep;
    if (keep == prompt.size()) --keep;
    cache.set_n_past(int(keep));
    cached.resize(keep);
    const auto t_prompt = std::chrono::steady_clock::now();
    m.model->forward(cache, prompt.data() + keep, int64_t(prompt.size() - keep), logits.data(), false);
    cached.insert(cached.end(), prompt.begin() + long(keep), prompt.end());
    const double prompt_s = seconds_since(t_prompt);
    for (size_t k = keep; k < prompt.size(); ++k) sampler.accept(prompt[k]);

    StreamDecoder decoder(tok);
    std::string reply;
    if (tmpl.opens_thinking()) {
      std::fputs("<think>\n", stdout);
      reply = "<think>\n";
    }
    int n_generated = 0;
    const char* stop_reason = "token limit";
    const auto t_gen = std::chrono::steady_clock::now();
    while (n_generated < o.n_predict) {
      const int32_t id = sampler.sample(logits.data(), cfg.n_vocab);
      ++n_generated;
      if (tok.is_eog(id)) {
        stop_reason = "end of turn";
        break;
      }
      sampler.accept(id);
      const std::string piece = decoder.push(id);
      reply += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      if (n_generated == o.n_predict) break;
      if (cache.n_past() >= n_ctx) {
        stop_reason = "context full (/reset or raise -c)";
        break;
      }
      m.model->forward(cache, &id, 1, logits.data(), false);
      cached.push_back(id);
    }
    const std::string tail = decoder.finish();
    reply += tail;
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    const double gen_s = seconds_since(t_gen);
    history.push_back({"assistant", reply, ""});
    std::fprintf(stderr,
                 "[jevons] reply: %s | prompt %zu new of %zu tokens in %.3f s (%.1f tok/s) | generated %d tokens in %.3f s (%.1f tok/s)\n",
                 stop_reason, prompt.size() - keep, prompt.size(), prompt_s, double(prompt.size() - keep) / std::max(prompt_s, 1e-9),
                 n_generated, gen_s, double(n_generated) / std::max(gen_s, 1e-9));
  }
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
  c->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")->check(CLI::Range(1, 1024));
  c->add_option("-c,--ctx-size", o->ctx, "Context length in tokens (default: min(4096, trained context))")->check(CLI::Range(1, 1 << 24));
  c->callback([o] { chat(*o); });
}

}  // namespace jevons::cli

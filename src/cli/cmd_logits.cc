// jevons logits: evaluate a token sequence and dump every position's logits
// (float32 little-endian, row-major [n_tokens, n_vocab]).
#include <cstdio>

#include "cli/common.h"
#include "core/error.h"
#include "core/output_file.h"
#include "core/thread_pool.h"

namespace jevons::cli {
namespace {

struct LogitsOptions {
  ModelArgs model;
  std::string tokens, out;
  int threads = 0;
  bool force = false;
};

void run_logits(const LogitsOptions& o) {
  check_output(o.out, {o.model.path}, o.force);
  LoadedModel m = load(o.model, true);
  const ModelConfig& cfg = m.model->config();
  const std::vector<int32_t> ids = parse_ids(o.tokens);
  if (ids.empty()) fail("--tokens is empty: give ids like 1,2,3");
  if (int64_t(ids.size()) > cfg.n_ctx_train)
    fail("{} tokens exceed the model's trained context of {}", ids.size(), cfg.n_ctx_train);
  ThreadPool pool(resolve_threads(o.threads));
  m.model->set_thread_pool(&pool);
  KvCache cache = m.model->new_cache(int(ids.size()), o.model.kv());
  std::vector<float> logits(ids.size() * size_t(cfg.n_vocab));
  m.model->forward(cache, ids.data(), int64_t(ids.size()), logits.data(), true);

  OutputFile out(o.out);
  out.write(logits.data(), logits.size() * sizeof(float));  // x86/ARM are little-endian
  out.commit();
  std::fprintf(stderr, "wrote %zu x %d logits to %s\n", ids.size(), cfg.n_vocab, o.out.c_str());
}

}  // namespace

void add_logits_command(CLI::App& app) {
  auto o = std::make_shared<LogitsOptions>();
  CLI::App* c = app.add_subcommand("logits", "Evaluate token ids as one sequence and write float32 logits for every position [n_tokens, n_vocab]");
  add_model_options(c, o->model);
  c->add_option("--tokens", o->tokens, "Token ids, comma-separated, e.g. 1,2,3")->required();
  c->add_option("--out", o->out, "Output file (raw little-endian float32; written whole or not at all)")->required();
  c->add_flag("--force", o->force, "Replace the output file if it exists (never the model)");
  c->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")->check(CLI::Range(1, 1024));
  c->callback([o] { run_logits(*o); });
}

}  // namespace jevons::cli

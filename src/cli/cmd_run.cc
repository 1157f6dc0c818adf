// jevons run: prompt in, streamed continuation out (one sequence through the engine).
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <random>

#include "cli/common.h"
#include "core/error.h"
#include "core/output_file.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/json_schema.h"
#include "runtime/grammar.h"
#include "meter/cli_options.h"
#include "meter/meter.h"

namespace jevons::cli {
namespace {

struct RunOptions {
  ModelArgs model;
  std::string prompt, prompt_file;
  int n_predict = 256;
  int threads = 0;
  int ctx = 0;
  bool no_bos = false;
  bool seed_given = false;
  SamplerParams sampling;
  SpecArgs spec;
  meter::Overrides meter;
  std::string energy_log;
  std::string grammar_file, json_schema_file;
  bool json = false;
};

// --grammar FILE (GBNF), --json-schema FILE or --json: the constraint, or null.
std::shared_ptr<const Grammar> resolve_grammar(const RunOptions& o) {
  const int given = !o.grammar_file.empty() + !o.json_schema_file.empty() + o.json;
  if (given > 1) fail("give one of --grammar, --json-schema and --json");
  auto read = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("cannot read {}", path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  try {
    if (!o.grammar_file.empty()) return Grammar::parse(read(o.grammar_file));
    if (o.json) return Grammar::parse(engine::json_object_grammar());
    if (!o.json_schema_file.empty()) {
      nlohmann::json schema;
      try {
        schema = nlohmann::json::parse(read(o.json_schema_file));
      } catch (const nlohmann::json::exception& e) {
        fail("{} is not JSON: {}", o.json_schema_file, e.what());
      }
      return Grammar::parse(engine::json_schema_to_gbnf(schema));
    }
  } catch (const Error& e) {
    fail("{}: {}", !o.grammar_file.empty() ? o.grammar_file : o.json ? "--json" : o.json_schema_file, e.what());
  }
  return nullptr;
}

std::string read_prompt(const RunOptions& o) {
  if (!o.prompt_file.empty()) {
    std::FILE* f = o.prompt_file == "-" ? stdin : std::fopen(o.prompt_file.c_str(), "rb");
    if (!f) fail("cannot read the prompt file {}", o.prompt_file);
    std::string text;
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    const bool bad = std::ferror(f);
    if (f != stdin) std::fclose(f);
    if (bad) fail("cannot read the prompt file {}", o.prompt_file);
    return text;
  }
  return o.prompt;
}

void run(RunOptions o) {
  const meter::MeterConfig meter_config = meter::resolve_config(o.meter);  // bad settings fail before the load
  if (!o.prompt.empty() && !o.prompt_file.empty()) fail("give the prompt with -p or -f, not both");
  // An energy log is replaced if it exists (it is jevons' own), but never when it is an input.
  if (!o.energy_log.empty()) check_output(o.energy_log, {o.model.path, o.prompt_file, o.spec.draft}, true);
  const std::string prompt_text = read_prompt(o);
  const std::shared_ptr<const Grammar> grammar = resolve_grammar(o);
  LoadedModel m = load(o.model, true);
  const ModelConfig& cfg = m.model->config();
  const int n_ctx = o.ctx > 0 ? o.ctx : default_context(cfg);
  if (!o.seed_given) o.sampling.seed = std::random_device{}();
  if (n_ctx > cfg.n_ctx_train)
    std::fprintf(stderr, "[jevons] warning: -c %d exceeds the model's trained context of %d; quality may degrade past it\n", n_ctx,
                 cfg.n_ctx_train);

  const bool add_bos = m.tokenizer->add_bos_default() && !o.no_bos;
  std::vector<int32_t> prompt = m.tokenizer->encode(prompt_text, add_bos);
  if (prompt.empty()) fail("the prompt is empty and the model adds no BOS token: give a prompt with -p");
  if (int(prompt.size()) > n_ctx)
    fail("the prompt is {} tokens but the context is {} (raise -c, up to the trained context {})", prompt.size(), n_ctx,
         cfg.n_ctx_train);

  ThreadPool pool(resolve_threads(o.threads));
  m.model->set_thread_pool(&pool);
  meter::Meter meter(meter_config);
  for (const std::string& w : meter.warnings()) std::fprintf(stderr, "[jevons] energy: %s\n", w.c_str());
  if (!o.energy_log.empty()) meter.start_log(o.energy_log);

  engine::EngineOptions eo;
  eo.parallel = 1;
  eo.n_ctx = n_ctx;
  eo.kv_type = o.model.kv();
  const Speculation spec = resolve_speculation(o.spec, o.model, m, &pool);
  eo.spec = spec.options;
  engine::Engine eng(*m.model, *m.tokenizer, meter, eo);
  engine::GenParams params;
  params.sampling = o.sampling;
  params.max_tokens = o.n_predict;
  params.split_reasoning = false;  // the text as the model wrote it
  params.grammar = grammar;

  std::fwrite(prompt_text.data(), 1, prompt_text.size(), stdout);
  std::fflush(stdout);
  engine::SequenceResult result;
  engine::SequenceSink sink;
  sink.on_delta = [](engine::Delta&& d) {
    std::fwrite(d.content.data(), 1, d.content.size(), stdout);
    std::fflush(stdout);
  };
  sink.on_finish = [&result](engine::SequenceResult&& r) { result = std::move(r); };
  const size_t n_prompt = prompt.size();
  const auto t0 = std::chrono::steady_clock::now();
  eng.add(std::make_unique<engine::Sequence>(std::move(prompt), params, *m.tokenizer, std::move(sink)));
  eng.run_until_idle();
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fputc('\n', stdout);
  std::fflush(stdout);
  meter.stop_log();

  const double prompt_s = result.prefill.seconds;
  const double gen_s = std::max(0.0, wall_s - prompt_s);
  const int n_generated = result.completion_tokens;
  meter::PhaseEnergy prefill = result.prefill, decode = result.decode;
  prefill.tokens = int64_t(n_prompt);
  decode.tokens = n_generated;
  decode.seconds = gen_s;
  const meter::EnergyReport energy =
      meter::make_report(meter.source(), meter.source_detail(), meter.estimated(), prefill, decode, meter.config().prices);
  std::string why = result.detail;
  if (why == "context full") why += " (raise -c)";
  if (why == "max tokens") why = "token limit";
  std::fprintf(stderr, "\n[jevons] stopped: %s | prompt %zu tokens in %.3f s (%.1f tok/s) | generated %d tokens in %.3f s (%.1f tok/s) | %d threads, ctx %d, seed %llu\n",
               why.c_str(), n_prompt, prompt_s, double(n_prompt) / std::max(prompt_s, 1e-9), n_generated, gen_s,
               double(n_generated) / std::max(gen_s, 1e-9), pool.size(), n_ctx, (unsigned long long)o.sampling.seed);
  if (result.drafted_tokens > 0 || eo.spec.method != engine::SpecMethod::kNone)
    std::fprintf(stderr, "[jevons] speculative (%s): %d tokens proposed, %d accepted (%.0f%%), %.2f tokens per target step\n",
                 spec.describe().c_str(), result.drafted_tokens, result.accepted_tokens,
                 100.0 * result.accepted_tokens / std::max(1, result.drafted_tokens),
                 double(n_generated) / std::max(1, result.sampling_passes));
  std::fprintf(stderr, "%s\n", meter::summary_line(energy).c_str());
  if (result.finish_reason == "error") fail("generation failed: {}", result.detail);
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* c = app.add_subcommand("run", "Generate text from a prompt; the prompt and the continuation stream to stdout, timing to stderr");
  add_model_options(c, o->model);
  c->add_option("-p,--prompt", o->prompt, "Prompt text");
  c->add_option("-f,--file", o->prompt_file, "Read the prompt from a file ('-': standard input)")->type_name("FILE");
  c->add_option("-n,--n-predict", o->n_predict, "Tokens to generate at most (stops earlier at end of text)")->capture_default_str()->check(CLI::Range(0, 1 << 30));
  add_sampling_options(c, o->sampling, o->seed_given);
  add_spec_options(c, o->spec);
  c->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")->check(CLI::Range(1, 1024));
  c->add_option("-c,--ctx-size", o->ctx, "Context length in tokens (default: min(4096, trained context))")->check(CLI::Range(1, 1 << 24));
  c->add_flag("--no-bos", o->no_bos, "Do not add the BOS token even if the model asks for it");
  c->add_option("--grammar", o->grammar_file, "Constrain the output to a GBNF grammar (llama.cpp's format; rule root)")->type_name("FILE");
  c->add_option("--json-schema", o->json_schema_file, "Constrain the output to JSON valid against this JSON Schema")->type_name("FILE");
  c->add_flag("--json", o->json, "Constrain the output to a JSON object");
  c->add_option("--energy-log", o->energy_log, "Write a CSV time series of power (t_s,watts,joules,source) every --energy-sample-ms")
      ->type_name("FILE");
  meter::add_meter_options(c, o->meter);
  c->callback([o] { run(*o); });
}

}  // namespace jevons::cli

// jevons eval: quality per joule. `eval perplexity` (llama-perplexity's method, and KL
// divergence against a reference model's saved distributions), `eval gsm8k|math500|
// arc-easy` (task accuracy through the engine, many questions in flight, resumable),
// and `eval sweep` (accuracy against joules per question over configurations, with
// the Pareto front drawn as SVG). Every result carries its energy.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "core/output_file.h"
#include "core/thread_pool.h"
#include "engine/chat_prompt.h"
#include "engine/engine.h"
#include "eval/frontier.h"
#include "eval/perplexity.h"
#include "eval/runner.h"
#include "meter/cli_options.h"
#include "meter/estimate.h"
#include "meter/meter.h"

namespace jevons::cli {
namespace {

namespace fs = std::filesystem;

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read {}", path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string shared_eval_dir() {
  const char* env = std::getenv("JEVONS_SHARED_DIR");
  return (env && *env ? std::string(env) : std::string("../shared")) + "/eval";
}

void print_json(const nlohmann::json& j) { std::printf("%s\n", j.dump(2).c_str()); }

// ---- perplexity ----

struct PerplexityArgs {
  ModelArgs model;
  std::string file, kl_base, kl_base_out;
  int ctx = 0, chunks = -1, batch = 512, threads = 0, decode_tokens = 32;
  bool json = false, force = false;
  meter::Overrides meter;
};

// Joules per decoded token: the figure to weigh a quantization's KL divergence against.
// `n` tokens decoded one by one after a short prefix of the text (greedy), on one sequence.
struct DecodeProbe {
  int tokens = 0;
  double joules = 0, seconds = 0;
};

DecodeProbe probe_decode(Model& model, const std::vector<int32_t>& text, int n, TensorType kv_type, meter::Meter& meter) {
  DecodeProbe d;
  const ModelConfig& cfg = model.config();
  const int prefix = int(std::min<size_t>(16, text.size()));
  n = std::min(n, cfg.n_ctx_train - prefix);
  if (n <= 0 || prefix == 0) return d;
  KvCache cache = model.new_cache(prefix + n, kv_type);
  std::vector<float> logits(size_t(cfg.n_vocab));
  model.forward(cache, text.data(), prefix, logits.data(), false);
  const auto t0 = std::chrono::steady_clock::now();
  const double j0 = meter.joules();
  for (int i = 0; i < n; ++i) {
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    meter.add_memory_traffic(meter::forward_traffic_bytes(model.weight_bytes_per_token(), cfg.kv_bytes_per_token(kv_type),
                                                          cache.n_past(), 1));
    model.forward(cache, &next, 1, logits.data(), false);
  }
  d.tokens = n;
  d.joules = meter.joules() - j0;
  d.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return d;
}

void run_perplexity(const PerplexityArgs& o) {
  const meter::MeterConfig meter_config = meter::resolve_config(o.meter);
  if (!o.kl_base_out.empty()) check_output(o.kl_base_out, {o.model.path, o.file, o.kl_base}, o.force);
  const std::string text = read_text_file(o.file);
  LoadedModel m = load(o.model, true);
  const ModelConfig& cfg = m.model->config();
  eval::PerplexityOptions po;
  po.n_ctx = o.ctx > 0 ? o.ctx : std::min(512, cfg.n_ctx_train);  // llama-perplexity's default
  if (po.n_ctx > cfg.n_ctx_train)
    std::fprintf(stderr, "[jevons] warning: -c %d exceeds the model's trained context of %d\n", po.n_ctx, cfg.n_ctx_train);
  po.max_chunks = o.chunks;
  po.n_batch = o.batch;
  po.add_bos = m.tokenizer->add_bos_default();
  po.bos_id = m.tokenizer->bos_id();
  po.kv_type = o.model.kv();
  std::fprintf(stderr, "[jevons] eval perplexity: tokenizing %zu bytes...\n", text.size());
  const std::vector<int32_t> tokens = m.tokenizer->encode(text, po.add_bos);
  const int n_chunks = eval::perplexity_chunks(int64_t(tokens.size()), po);
  if (n_chunks == 0)
    fail("{} is {} tokens: fewer than one chunk of -c {} (give a longer text or a smaller -c)", o.file, tokens.size(), po.n_ctx);
  const int64_t positions = int64_t(n_chunks) * (po.n_ctx - 1 - po.n_ctx / 2);
  std::fprintf(stderr, "[jevons] %zu tokens: %d chunks of %d, scoring the second half of each (%lld tokens)%s\n", tokens.size(),
               n_chunks, po.n_ctx, (long long)positions,
               int64_t(tokens.size()) / po.n_ctx > n_chunks ? fmt::format(" of {} (--chunks)", int64_t(tokens.size()) / po.n_ctx).c_str()
                                                            : "");
  std::unique_ptr<eval::KlBaseWriter> save;
  std::unique_ptr<eval::KlBaseReader> compare;
  if (!o.kl_base_out.empty()) {
    std::fprintf(stderr, "[jevons] writing the KL base %s (%.1f MB)\n", o.kl_base_out.c_str(),
                 double(eval::KlBaseWriter::bytes(cfg.n_vocab, positions)) / 1e6);
    save = std::make_unique<eval::KlBaseWriter>(o.kl_base_out, o.model.path);
  }
  if (!o.kl_base.empty()) compare = std::make_unique<eval::KlBaseReader>(o.kl_base);

  ThreadPool pool(resolve_threads(o.threads));
  m.model->set_thread_pool(&pool);
  meter::Meter meter(meter_config);
  for (const std::string& w : meter.warnings()) std::fprintf(stderr, "[jevons] energy: %s\n", w.c_str());
  Progress progress("perplexity");
  const eval::PerplexityResult r = eval::evaluate_perplexity(
      *m.model, tokens, po, meter, save.get(), compare.get(), [&](const eval::PerplexityProgress& p) {
        progress.update(size_t(p.chunks_done), size_t(p.chunks), fmt::format("PPL {:.4f}", p.perplexity));
      });
  progress.finish();
  if (save) save->commit();
  const DecodeProbe dp = probe_decode(*m.model, tokens, o.decode_tokens, po.kv_type, meter);

  meter::PhaseEnergy prefill = r.energy, decode;
  const meter::EnergyReport energy =
      meter::make_report(meter.source(), meter.source_detail(), meter.estimated(), prefill, decode, meter.config().prices);
  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model.path;
    j["file"] = o.file;
    j["perplexity"] = r.perplexity;
    j["uncertainty"] = r.uncertainty;
    j["tokens"] = r.scored;
    j["tokens_evaluated"] = r.evaluated;
    j["text_tokens"] = r.text_tokens;
    j["chunks"] = r.chunks;
    j["ctx"] = po.n_ctx;
    j["kv_type"] = o.model.kv_type;
    j["j_per_token"] = r.evaluated ? energy.total_j / double(r.evaluated) : 0;
    j["chunk_perplexity"] = r.chunk_perplexity;
    if (dp.tokens > 0)
      j["decode"] = {{"tokens", dp.tokens}, {"j_per_token", dp.joules / dp.tokens}, {"tokens_per_s", dp.tokens / std::max(dp.seconds, 1e-9)}};
    if (r.kl) {
      const eval::KlStats& k = *r.kl;
      j["kl_divergence"] = {{"base", o.kl_base},         {"base_model", k.base_model}, {"mean", k.mean},
                            {"uncertainty", k.uncertainty}, {"median", k.median},       {"p90", k.p90},
                            {"p95", k.p95},                 {"p99", k.p99},             {"p99_9", k.p999},
                            {"max", k.max},                 {"top1_agreement", k.top1_agreement},
                            {"base_perplexity", k.base_perplexity},
                            {"delta_perplexity", r.perplexity - k.base_perplexity}};
    }
    j["energy"] = meter::to_json(energy);
    print_json(j);
  } else {
    std::printf("perplexity %.4f +/- %.5f  (%lld tokens scored in %d chunks of %d; %s)\n", r.perplexity, r.uncertainty,
                (long long)r.scored, r.chunks, po.n_ctx, o.model.path.c_str());
    if (r.kl) {
      const eval::KlStats& k = *r.kl;
      std::printf("KL divergence vs %s: mean %.6f +/- %.6f | median %.6f | p90 %.6f | p95 %.6f | p99 %.6f | p99.9 %.6f | max %.6f\n",
                  k.base_model.c_str(), k.mean, k.uncertainty, k.median, k.p90, k.p95, k.p99, k.p999, k.max);
      std::printf("top-1 agreement %.2f%% | perplexity %.4f vs base %.4f (delta %+.4f)\n", 100 * k.top1_agreement, r.perplexity,
                  k.base_perplexity, r.perplexity - k.base_perplexity);
    }
    std::printf("%.3g J per token evaluated (%lld tokens in %.2f s)", r.evaluated ? energy.total_j / double(r.evaluated) : 0,
                (long long)r.evaluated, r.energy.seconds);
    if (dp.tokens > 0)
      std::printf(" | decode %.3g J per token (%.1f tok/s, %d tokens)", dp.joules / dp.tokens, dp.tokens / std::max(dp.seconds, 1e-9),
                  dp.tokens);
    std::printf("\n");
  }
  std::fprintf(stderr, "%s\n", meter::summary_line(energy).c_str());
}

// ---- tasks ----

struct TaskArgs {
  std::string task;  // set by the subcommand
  ModelArgs model;
  std::string file, results, chat_template, prompt_style = "auto";
  int64_t limit = -1, sample = -1;
  uint64_t sample_seed = 0;
  int samples = 1, n_predict = 1024, ctx = 0, parallel = 8, threads = 0;
  int think_budget = -1;
  double think_budget_j = -1;
  bool loglik = false, restart = false, json = false, seed_given = false, temp_given = false;
  SamplerParams sampling;
  meter::Overrides meter;
};

std::string file_stem(const std::string& path) {
  fs::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  return p.stem().string();
}

eval::TaskConfig task_config(const TaskArgs& o, eval::Task task) {
  eval::TaskConfig c;
  c.task = task;
  c.loglik = o.loglik;
  c.samples = o.samples;
  c.model = o.model.path;
  c.gen.sampling = o.sampling;
  if (!o.temp_given) c.gen.sampling.temperature = o.samples > 1 ? 0.6f : 0.0f;  // greedy, or R1's recommended 0.6 for votes
  if (!o.seed_given) c.gen.sampling.seed = 0;  // results must be reproducible to resume
  c.gen.max_tokens = o.n_predict;
  c.gen.max_reasoning_tokens = o.think_budget;
  c.gen.max_reasoning_joules = o.think_budget_j;
  c.prompt_style = o.prompt_style;
  return c;
}

std::string default_results_path(const eval::TaskConfig& c) {
  const uint64_t h = std::hash<std::string>{}(c.identity().dump());
  return fmt::format("eval-results/{}-{}-{:08x}.jsonl", eval::task_name(c.task), file_stem(c.model), uint32_t(h));
}

void print_summary_text(const eval::TaskSummary& s) {
  std::printf("%s | %s | %s\n", s.task.c_str(), s.model.c_str(), s.mode.c_str());
  std::printf("accuracy %.2f%% (%lld of %lld)%s%s\n", 100 * s.accuracy(), (long long)s.correct, (long long)s.items,
              s.mode == "loglik" ? fmt::format(", per-byte normalised {:.2f}%", s.items ? 100.0 * double(s.correct_norm) / double(s.items) : 0.0).c_str() : "",
              s.errors ? fmt::format(", {} not run (see the results file)", s.errors).c_str() : "");
  std::printf("energy %.1f J%s: %.3f J per question, %.3f correct answers per kJ, $%.4f per 1000 questions\n", s.energy.total_j,
              s.energy.estimated ? " (estimated)" : "", s.j_per_item(), s.correct_per_kj(), s.usd_per_1000_items());
  std::printf("tokens: %lld prompt, %lld generated (%lld reasoning) | wall %.1f s\n", (long long)s.prompt_tokens,
              (long long)s.completion_tokens, (long long)s.reasoning_tokens, s.wall_s);
}

// Runs one configuration with an already loaded model; returns its summary.
eval::TaskSummary run_task_config(const TaskArgs& o, const eval::TaskConfig& c, LoadedModel& m, ThreadPool& pool,
                                  meter::Meter& meter, const std::string& results_path, bool quiet) {
  const std::string file = o.file.empty() ? shared_eval_dir() + "/" + eval::task_default_file(c.task) : o.file;
  std::error_code ec;
  if (!fs::exists(file, ec))
    fail("the {} file {} is missing: give it with --file (the test split as JSON lines){}", eval::task_name(c.task), file,
         o.file.empty() ? ", or point JEVONS_SHARED_DIR at the shared data" : "");
  const std::vector<eval::TaskItem> items = eval::load_task(c.task, file);
  const std::vector<size_t> selection = eval::select_items(items.size(), o.limit, o.sample, o.sample_seed);
  if (const fs::path dir = fs::path(results_path).parent_path(); !dir.empty()) fs::create_directories(dir, ec);
  check_output(results_path, {o.model.path, file}, true);
  eval::ResultsFile results(results_path, c.identity(), o.restart);
  size_t resumed = 0;
  for (size_t i : selection) resumed += results.done().count(items[i].id);
  if (!quiet)
    std::fprintf(stderr, "[jevons] eval %s: %zu of %zu questions%s, results in %s (run the same command again to resume)\n",
                 eval::task_name(c.task), selection.size(), items.size(),
                 resumed ? fmt::format(", {} already done", resumed).c_str() : "", results_path.c_str());

  Progress progress(eval::task_name(c.task));
  auto on_progress = [&](const eval::RunProgress& p) {
    progress.update(size_t(p.done), size_t(p.total),
                    fmt::format("{:.1f}% right, {:.1f} J", p.done ? 100.0 * double(p.correct) / double(p.done) : 0.0, p.joules));
  };
  if (c.loglik) {
    eval::run_loglik(*m.model, *m.tokenizer, meter, c, items, selection, o.parallel, o.model.kv(), results, on_progress);
  } else {
    const ModelConfig& cfg = m.model->config();
    std::unique_ptr<ChatTemplate> tmpl;
    if (c.prompt_style == "chat") {
      std::string notice;
      tmpl = std::make_unique<ChatTemplate>(engine::resolve_chat_template(*m.file, *m.tokenizer, o.chat_template, &notice));
      if (!notice.empty() && !quiet) std::fprintf(stderr, "[jevons] %s\n", notice.c_str());
    }
    engine::EngineOptions eo;
    eo.parallel = o.parallel;
    eo.n_ctx = o.ctx > 0 ? o.ctx : default_context(cfg);
    eo.kv_type = o.model.kv();
    // Every sequence may reach the full context; blocks are taken as tokens are computed.
    eo.kv_budget_bytes = size_t(o.parallel) * size_t(eo.n_ctx) * cfg.kv_bytes_per_token(eo.kv_type);
    eo.model_identity = 0;
    engine::Engine eng(*m.model, *m.tokenizer, meter, eo);
    eval::run_generation(eng, tmpl.get(), c, items, selection, results, on_progress);
  }
  progress.finish();
  eval::TaskSummary s = eval::summarize(c, items, selection, results, meter);
  s.resumed = int64_t(resumed);
  return s;
}

std::string resolve_prompt_style(const std::string& asked, const LoadedModel& m) {
  if (asked != "auto") return asked;
  // A model that ships a chat template is asked in it; a base model gets a plain prompt.
  return m.file->find("tokenizer.chat_template") ? "chat" : "plain";
}

void run_task(TaskArgs o) {
  const eval::Task task = eval::parse_task(o.task);
  if (o.loglik && task != eval::Task::kArcEasy) fail("--loglik scores multiple-choice answers: it applies to arc-easy only");
  if (o.samples > 1 && o.loglik) fail("--samples votes over generated answers: it does not apply with --loglik");
  const meter::MeterConfig meter_config = meter::resolve_config(o.meter);
  LoadedModel m = load(o.model, true);
  o.prompt_style = resolve_prompt_style(o.prompt_style, m);
  eval::TaskConfig c = task_config(o, task);
  if (o.samples > 1 && c.gen.sampling.temperature <= 0)
    std::fprintf(stderr, "[jevons] warning: %d samples at temperature 0 are %d copies of one answer (give --temp)\n", o.samples,
                 o.samples);
  const std::string results_path = o.results.empty() ? default_results_path(c) : o.results;
  ThreadPool pool(resolve_threads(o.threads));
  m.model->set_thread_pool(&pool);
  meter::Meter meter(meter_config);
  for (const std::string& w : meter.warnings()) std::fprintf(stderr, "[jevons] energy: %s\n", w.c_str());
  const eval::TaskSummary s = run_task_config(o, c, m, pool, meter, results_path, false);
  if (o.json) {
    nlohmann::json j = s.to_json();
    j["results"] = results_path;
    print_json(j);
  } else {
    print_summary_text(s);
  }
  std::fprintf(stderr, "%s\n", meter::summary_line(s.energy).c_str());
}

void add_task_options(CLI::App* c, TaskArgs& o) {
  add_model_options(c, o.model);
  c->add_option("--file", o.file, "The task's JSON-lines file (default: $JEVONS_SHARED_DIR or ../shared, under eval/)")->type_name("FILE");
  c->add_option("--limit", o.limit, "Run the first N questions (after --sample)")->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  c->add_option("--sample", o.sample, "Run N questions drawn at random with --sample-seed")->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  c->add_option("--sample-seed", o.sample_seed, "Seed of --sample's draw")->capture_default_str();
  c->add_option("--samples", o.samples, "Answers per question; the majority vote is graded (self-consistency)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  c->add_option("-n,--n-predict", o.n_predict, "Tokens to generate per answer at most (reasoning included)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  c->add_option("--think-budget", o.think_budget, "Reasoning tokens at most; then the thought is closed and the answer begins")
      ->check(CLI::Range(0, 1 << 24));
  c->add_option("--think-budget-j", o.think_budget_j, "Reasoning joules at most (as --think-budget, in energy)")->check(CLI::Range(0.0, 1e12));
  c->add_option("--prompt-style", o.prompt_style,
                "chat: the question in the model's chat template; plain: 'Question: ...\\nAnswer:' for base models; "
                "auto: chat when the model has a template")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "chat", "plain"}));
  c->add_option("--chat-template", o.chat_template, "Template: chatml, llama3, deepseek-r1, deepseek-v3 or a Jinja file (default: the model's)");
  c->add_option("-c,--ctx-size", o.ctx, "Context per question (default: min(4096, trained context))")->check(CLI::Range(2, 1 << 24));
  c->add_option("--parallel", o.parallel, "Questions (or samples) computed together in one batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  c->add_option("-t,--threads", o.threads, "Threads (default: physical cores)")->check(CLI::Range(1, 1024));
  c->add_option("--results", o.results, "Results file (JSON lines, appended per question; default eval-results/TASK-MODEL-CONFIG.jsonl)")
      ->type_name("FILE");
  c->add_flag("--restart", o.restart, "Discard the results file's earlier answers and start over");
  c->add_flag("--json", o.json, "Print the summary as one JSON object");
  add_sampling_options(c, o.sampling, o.seed_given);
  c->get_option("--temp")->each([&o](const std::string&) { o.temp_given = true; });
  c->get_option("--temp")->description("Sampling temperature (default: 0 = greedy; 0.6 with --samples > 1)");
  meter::add_meter_options(c, o.meter);
}

// ---- sweep ----

struct SweepArgs {
  TaskArgs base;
  std::vector<std::string> models;
  std::vector<int> budgets, samples;
  std::vector<float> temps;
  std::string out_dir = "eval-sweep";
};

void run_sweep(SweepArgs a) {
  TaskArgs& o = a.base;
  const eval::Task task = eval::parse_task(o.task);
  if (a.models.empty() && !o.model.path.empty()) a.models = {o.model.path};
  if (a.models.empty()) fail("give the models to compare with --models A,B (or one with -m)");
  if (a.budgets.empty()) a.budgets = {o.think_budget};
  if (a.samples.empty()) a.samples = {o.samples};
  if (a.temps.empty()) a.temps = {-1};  // -1: the default for the sample count
  const meter::MeterConfig meter_config = meter::resolve_config(o.meter);
  std::error_code ec;
  fs::create_directories(a.out_dir, ec);
  if (ec) fail("cannot create {}: {}", a.out_dir, ec.message());
  meter::Meter meter(meter_config);
  for (const std::string& w : meter.warnings()) std::fprintf(stderr, "[jevons] energy: %s\n", w.c_str());
  ThreadPool pool(resolve_threads(o.threads));
  std::vector<eval::FrontierPoint> points;
  nlohmann::json rows = nlohmann::json::array();
  const size_t n_configs = a.models.size() * a.budgets.size() * a.samples.size() * a.temps.size();
  size_t done = 0;
  for (const std::string& model_path : a.models) {
    o.model.path = model_path;
    LoadedModel m = load(o.model, true);
    m.model->set_thread_pool(&pool);
    const std::string style = resolve_prompt_style(a.base.prompt_style, m);
    for (int budget : a.budgets)
      for (int k : a.samples)
      for (float temp : a.temps) {
        TaskArgs t = o;
        t.prompt_style = style;
        t.think_budget = budget;
        t.samples = k;
        if (temp >= 0) t.sampling.temperature = temp, t.temp_given = true;
        if (k > 1 && t.loglik) fail("--samples votes over generated answers: it does not apply with --loglik");
        const eval::TaskConfig c = task_config(t, task);
        std::string label = file_stem(model_path);
        if (budget >= 0) label += fmt::format(", think {}", budget);
        if (k > 1) label += fmt::format(", vote of {}", k);
        if (temp >= 0) label += fmt::format(", temp {:g}", temp);
        const uint64_t h = std::hash<std::string>{}(c.identity().dump());
        const std::string results = fmt::format("{}/{}-{:08x}.jsonl", a.out_dir, file_stem(model_path), uint32_t(h));
        std::fprintf(stderr, "[jevons] sweep %zu/%zu: %s\n", ++done, n_configs, label.c_str());
        const eval::TaskSummary s = run_task_config(t, c, m, pool, meter, results, true);
        points.push_back(eval::FrontierPoint{label, s.j_per_item(), s.accuracy()});
        nlohmann::json row = s.to_json();
        row["label"] = label;
        row["think_budget"] = budget;
        row["samples"] = k;
        row["temperature"] = c.gen.sampling.temperature;
        row["results"] = results;
        rows.push_back(row);
      }
  }
  eval::mark_pareto(points);
  for (size_t i = 0; i < points.size(); ++i) rows[i]["pareto"] = points[i].pareto;

  std::string table = fmt::format("| configuration | accuracy | J per question | correct per kJ | $ per 1000 | tokens generated | Pareto |\n"
                                  "|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < points.size(); ++i)
    table += fmt::format("| {} | {:.2f}% | {:.3f} | {:.3f} | {:.4f} | {} | {} |\n", points[i].label, 100 * points[i].accuracy,
                         points[i].j_per_item, rows[i]["correct_per_kj"].get<double>(), rows[i]["usd_per_1000_items"].get<double>(),
                         rows[i]["completion_tokens"].get<int64_t>(), points[i].pareto ? "yes" : "");
  const std::string title = fmt::format("{}: accuracy against energy{}", eval::task_name(task), meter.estimated() ? " (estimated)" : "");
  auto write = [](const std::string& path, const std::string& text) {
    OutputFile f(path);
    f.write(text.data(), text.size());
    f.commit();
  };
  write(a.out_dir + "/frontier.md", "# " + title + "\n\n" + table);
  write(a.out_dir + "/frontier.svg", eval::frontier_svg(points, title));
  write(a.out_dir + "/frontier.json", rows.dump(2) + "\n");
  std::printf("%s", table.c_str());
  std::fprintf(stderr, "[jevons] wrote %s/frontier.md, frontier.svg, frontier.json\n", a.out_dir.c_str());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  CLI::App* e = app.add_subcommand("eval", "Quality per joule: perplexity, KL divergence, task accuracy (GSM8K, MATH-500, ARC-Easy) "
                                           "and sweeps, each with its energy");
  e->require_subcommand(1);

  auto p = std::make_shared<PerplexityArgs>();
  CLI::App* pc = e->add_subcommand("perplexity", "Perplexity over a text, as llama-perplexity computes it (chunks of -c, the "
                                                 "second half of each scored), and KL divergence against a reference model");
  add_model_options(pc, p->model);
  pc->add_option("-f,--file", p->file, "The text (e.g. ../shared/eval/wikitext2/wiki.test.raw)")->required()->type_name("FILE");
  pc->add_option("-c,--ctx-size", p->ctx, "Tokens per chunk (default: min(512, trained context), as llama-perplexity)")
      ->check(CLI::Range(2, 1 << 24));
  pc->add_option("--chunks", p->chunks, "Evaluate the first N chunks only (default: all)")->check(CLI::Range(1, 1 << 30));
  pc->add_option("--batch", p->batch, "Tokens per forward pass at most")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  pc->add_option("--kl-base-out", p->kl_base_out,
                 "Save this (reference) model's distributions for a later --kl-base run (16-bit; about 2 bytes x vocabulary per scored token)")
      ->type_name("FILE");
  pc->add_option("--kl-base", p->kl_base, "Compare with a reference saved by --kl-base-out: KL divergence, top-1 agreement, delta perplexity")
      ->type_name("FILE");
  pc->add_flag("--force", p->force, "Replace an existing --kl-base-out file");
  pc->add_option("--decode-tokens", p->decode_tokens, "Also decode this many tokens one by one, for the joules per decoded token (0: skip)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  pc->add_option("-t,--threads", p->threads, "Threads (default: physical cores)")->check(CLI::Range(1, 1024));
  pc->add_flag("--json", p->json, "Print one JSON object (perplexity, tokens, chunks, kl_divergence, energy)");
  meter::add_meter_options(pc, p->meter);
  pc->callback([p] { run_perplexity(*p); });

  for (const char* name : {"gsm8k", "math500", "arc-easy"}) {
    auto t = std::make_shared<TaskArgs>();
    t->task = name;
    const std::string what = std::string(name) == "gsm8k"     ? "GSM8K: grade-school math, the final number graded"
                             : std::string(name) == "math500" ? "MATH-500: competition math, the \\boxed{} answer graded"
                                                              : "ARC-Easy: science multiple choice, by generation or --loglik";
    CLI::App* tc = e->add_subcommand(name, what + " (accuracy, joules per question, resumable)");
    add_task_options(tc, *t);
    if (std::string(name) == "arc-easy")
      tc->add_flag("--loglik", t->loglik, "Score each choice by its log-likelihood (lm-evaluation-harness's way) instead of generating");
    tc->callback([t] { run_task(*t); });
  }

  auto s = std::make_shared<SweepArgs>();
  CLI::App* sc = e->add_subcommand("sweep", "Accuracy against joules per question over models x thinking budgets x sample counts x temperatures: "
                                            "a table and an SVG plot with the Pareto front");
  add_task_options(sc, s->base);
  sc->get_option("-m")->required(false)->description("A model (or give several with --models)");
  sc->add_option("--models", s->models, "Models to compare, comma-separated (GGUF files or Hugging Face directories)")->delimiter(',');
  sc->add_option("--task", s->base.task, "gsm8k, math500 or arc-easy")->required();
  sc->add_option("--think-budgets", s->budgets, "Thinking budgets to sweep, e.g. 256,1024 (-1: none)")->delimiter(',');
  sc->add_option("--samples-sweep", s->samples, "Sample counts to sweep, e.g. 1,5")->delimiter(',');
  sc->add_option("--temps", s->temps, "Temperatures to sweep, e.g. 0,0.6")->delimiter(',');
  sc->add_flag("--loglik", s->base.loglik, "arc-easy: score choices by log-likelihood");
  sc->add_option("--out-dir", s->out_dir, "Where the results, frontier.md, frontier.svg and frontier.json go")->capture_default_str();
  sc->callback([s] { run_sweep(*s); });
}

}  // namespace jevons::cli

#include "eval/runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "engine/chat_prompt.h"
#include "eval/grading.h"
#include "meter/estimate.h"

namespace jevons::eval {

nlohmann::json TaskConfig::identity() const {
  nlohmann::json j;
  j["task"] = task_name(task);
  j["mode"] = loglik ? "loglik" : "generate";
  j["model"] = model;
  if (!loglik) {
    j["prompt_style"] = prompt_style;
    j["samples"] = samples;
    j["temperature"] = gen.sampling.temperature;
    j["top_k"] = gen.sampling.top_k;
    j["top_p"] = gen.sampling.top_p;
    j["min_p"] = gen.sampling.min_p;
    j["seed"] = gen.sampling.seed;
    j["max_tokens"] = gen.max_tokens;
    j["max_reasoning_tokens"] = gen.max_reasoning_tokens;
    j["max_reasoning_joules"] = gen.max_reasoning_joules;
  }
  return j;
}

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ItemRecord, id, reference, answers, vote, correct, correct_norm, error,
                                                prompt_tokens, completion_tokens, reasoning_tokens, prefill_j, decode_j, wall_s,
                                                output)

nlohmann::json ItemRecord::to_json() const { return *this; }

ItemRecord ItemRecord::from_json(const nlohmann::json& j) {
  if (!j.contains("id") || !j["id"].is_string()) throw nlohmann::json::other_error::create(501, "a record without an id", &j);
  return j.get<ItemRecord>();
}

// ---- the results file ----

ResultsFile::ResultsFile(const std::string& path, const nlohmann::json& identity, bool restart) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!restart && fs::exists(path, ec)) {
    std::ifstream in(path, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A line is complete only with its newline: a torn last line (a crash while
    // writing it) is cut off and its question runs again.
    const size_t complete = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    size_t pos = 0;
    bool header = false;
    while (pos < complete) {
      const size_t end = text.find('\n', pos);
      const std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      if (line.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        fail("{} is not a jevons eval results file (a line is not JSON); give another --results file or --restart", path);
      }
      if (!header) {
        if (!j.contains("jevons_eval")) fail("{} is not a jevons eval results file; give another --results file or --restart", path);
        if (j["config"] != identity)
          fail("{} holds results of another configuration ({} vs now {}): give another --results file, or --restart to discard them",
               path, j["config"].dump(), identity.dump());
        header = true;
        continue;
      }
      try {
        ItemRecord r = ItemRecord::from_json(j);
        done_[r.id] = std::move(r);
      } catch (const nlohmann::json::exception&) {
        fail("{}: a record without an id; give another --results file or --restart", path);
      }
    }
    if (complete < text.size() || !header) {
      if (::truncate(path.c_str(), off_t(complete)) != 0) fail("cannot repair the torn last line of {}", path);
      if (!header) done_.clear();
    }
    if (header) {
      f_ = std::fopen(path.c_str(), "ab");
      if (!f_) fail("cannot append to {}", path);
      return;
    }
  }
  // A new file (or a restart): the header is written through a temporary file and renamed.
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::FILE* t = std::fopen(tmp.c_str(), "wb");
    if (!t) fail("cannot write {} (is the directory writable?)", path);
    const std::string line = nlohmann::json{{"jevons_eval", 1}, {"config", identity}}.dump() + "\n";
    const bool ok = std::fwrite(line.data(), 1, line.size(), t) == line.size();
    if (std::fclose(t) != 0 || !ok) {
      fs::remove(tmp, ec);
      fail("cannot write {} (disk full?)", path);
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) fail("cannot create {}: {}", path, ec.message());
  f_ = std::fopen(path.c_str(), "ab");
  if (!f_) fail("cannot append to {}", path);
}

ResultsFile::~ResultsFile() {
  if (f_) std::fclose(f_);
}

void ResultsFile::append(const ItemRecord& r) {
  const std::string line = r.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    fail("cannot append to {} (disk full?)", path_);
  done_[r.id] = r;
}

// ---- generation ----

namespace {

// Appends records as questions complete: stamps each with the run's time since the
// previous one and keeps the progress figures (starting from what the file holds).
struct Recorder {
  Recorder(ResultsFile& results, const std::vector<TaskItem>& items, const std::vector<size_t>& selection) : results(results) {
    prog.total = int64_t(selection.size());
    for (size_t i : selection)
      if (auto it = results.done().find(items[i].id); it != results.done().end()) ++prog.done, prog.correct += it->second.correct;
  }
  void record(ItemRecord& r) {
    const auto now = std::chrono::steady_clock::now();
    r.wall_s = std::chrono::duration<double>(now - last).count();
    last = now;
    results.append(r);
    ++prog.done;
    prog.correct += r.correct;
    prog.joules += r.prefill_j + r.decode_j;
  }
  ResultsFile& results;
  RunProgress prog;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
};

struct Pending {
  size_t item;
  int samples_left;
  std::vector<engine::SequenceResult> results;
  std::vector<std::string> content, reasoning;
  int64_t prompt_tokens = 0;
};

}  // namespace

void run_generation(engine::Engine& eng, const ChatTemplate* tmpl, const TaskConfig& cfg, const std::vector<TaskItem>& items,
                    const std::vector<size_t>& selection, ResultsFile& results, const RunCallback& progress) {
  const Tokenizer& tok = eng.tokenizer();
  const int n_ctx = eng.options().n_ctx;
  Recorder rec(results, items, selection);
  auto record_done = [&](ItemRecord& r) {
    rec.record(r);
    if (progress) progress(rec.prog);
  };

  std::vector<std::unique_ptr<Pending>> pending;
  std::vector<size_t> finished;  // indexes into pending, completed this step
  for (size_t i : selection) {
    const TaskItem& item = items[i];
    if (results.done().count(item.id)) continue;
    std::vector<int32_t> prompt;
    engine::GenParams gen = cfg.gen;
    if (tmpl) {
      const engine::ChatPrompt p = engine::build_chat_prompt(*tmpl, tok, {ChatMessage{"user", task_question(cfg.task, item), ""}});
      prompt = p.ids;
      gen.reasoning_at_start = p.reasoning_at_start;
    } else {
      prompt = tok.encode(task_plain_prompt(cfg.task, item), tok.add_bos_default());
    }
    if (int(prompt.size()) >= n_ctx) {
      ItemRecord r;
      r.id = item.id;
      r.reference = item.reference;
      r.error = fmt::format("the prompt is {} tokens, the context {} (raise -c)", prompt.size(), n_ctx);
      r.prompt_tokens = int64_t(prompt.size());
      record_done(r);
      continue;
    }
    auto p = std::make_unique<Pending>();
    p->item = i;
    p->samples_left = cfg.samples;
    p->results.resize(size_t(cfg.samples));
    p->content.resize(size_t(cfg.samples));
    p->reasoning.resize(size_t(cfg.samples));
    p->prompt_tokens = int64_t(prompt.size());
    Pending* raw = p.get();
    const size_t slot = pending.size();
    pending.push_back(std::move(p));
    for (int k = 0; k < cfg.samples; ++k) {
      engine::GenParams g = gen;
      // Each sample its own stream of random numbers (greedy ignores them).
      g.sampling.seed = cfg.gen.sampling.seed + uint64_t(i) * 1000003u + uint64_t(k) * 7919u;
      engine::SequenceSink sink;
      sink.on_delta = [raw, k](engine::Delta&& d) {
        raw->content[size_t(k)] += d.content;
        raw->reasoning[size_t(k)] += d.reasoning;
      };
      sink.on_finish = [raw, k, slot, &finished](engine::SequenceResult&& r) {
        raw->results[size_t(k)] = std::move(r);
        if (--raw->samples_left == 0) finished.push_back(slot);
      };
      eng.add(std::make_unique<engine::Sequence>(prompt, g, tok, std::move(sink), k));
    }
  }

  while (!eng.idle()) {
    eng.step();
    for (size_t slot : finished) {
      Pending& p = *pending[slot];
      const TaskItem& item = items[p.item];
      ItemRecord r;
      r.id = item.id;
      r.reference = item.reference;
      r.prompt_tokens = p.prompt_tokens;
      for (int k = 0; k < cfg.samples; ++k) {
        const engine::SequenceResult& sr = p.results[size_t(k)];
        if (sr.finish_reason == "error" && r.error.empty()) r.error = sr.detail;
        // The answer is graded in the content; a thought cut off before any content
        // may still hold one.
        std::string answer = extract_answer(cfg.task, item, p.content[size_t(k)]);
        if (answer.empty()) answer = extract_answer(cfg.task, item, p.reasoning[size_t(k)]);
        r.answers.push_back(answer);
        r.completion_tokens += sr.completion_tokens;
        r.reasoning_tokens += sr.reasoning_tokens;
        r.prefill_j += sr.prefill.joules;
        r.decode_j += sr.decode.joules;
      }
      r.output = p.reasoning[0].empty() ? p.content[0] : "<think>" + p.reasoning[0] + "</think>" + p.content[0];
      r.vote = majority_vote(r.answers, [&](const std::string& a, const std::string& b) { return answers_agree(cfg.task, a, b); });
      r.correct = answer_correct(cfg.task, item, r.vote);
      record_done(r);
      pending[slot].reset();
    }
    finished.clear();
  }
}

// ---- log-likelihood ----

namespace {

struct Scored {
  std::vector<int32_t> tokens;  // context + continuation
  int n_cont = 0;
  size_t bytes = 0;             // of the continuation's text (lm-eval's acc_norm divides by it)
};

}  // namespace

void run_loglik(Model& model, const Tokenizer& tok, meter::Meter& meter, const TaskConfig& cfg,
                const std::vector<TaskItem>& items, const std::vector<size_t>& selection, int parallel, TensorType kv_type,
                ResultsFile& results, const RunCallback& progress) {
  const int32_t n_vocab = model.config().n_vocab;
  Recorder rec(results, items, selection);
  std::vector<size_t> todo;
  for (size_t i : selection)
    if (!results.done().count(items[i].id)) todo.push_back(i);
  const bool bos = tok.add_bos_default();
  const size_t group = size_t(std::max(1, parallel));
  std::vector<float> logits;
  for (size_t g0 = 0; g0 < todo.size(); g0 += group) {
    const size_t g1 = std::min(todo.size(), g0 + group);
    std::vector<std::vector<Scored>> scored;
    std::vector<KvCache> caches;
    std::vector<Model::Chunk> chunks;
    size_t rows = 0;
    int64_t total_tokens = 0;
    for (size_t g = g0; g < g1; ++g) {
      const TaskItem& item = items[todo[g]];
      const std::string ctx = arc_context(item);
      const std::vector<int32_t> ctx_ids = tok.encode(ctx, bos);
      std::vector<Scored> per_choice;
      for (const auto& [label, text] : item.choices) {
        Scored s;
        const std::string cont = arc_continuation(text);
        s.bytes = cont.size();
        // Encoded together, as the model would read it; split where the context ends.
        s.tokens = tok.encode(ctx + cont, bos);
        if (s.tokens.size() <= ctx_ids.size() || !std::equal(ctx_ids.begin(), ctx_ids.end(), s.tokens.begin())) {
          s.tokens = ctx_ids;
          const std::vector<int32_t> c = tok.encode(cont, false);
          s.tokens.insert(s.tokens.end(), c.begin(), c.end());
        }
        s.n_cont = int(s.tokens.size() - ctx_ids.size());
        if (s.n_cont < 1 || ctx_ids.empty()) fail("item {}: a choice encodes to no tokens", item.id);
        per_choice.push_back(std::move(s));
      }
      size_t longest = 0;
      for (const Scored& s : per_choice) longest = std::max(longest, s.tokens.size());
      if (int64_t(longest) > model.config().n_ctx_train) {
        // Not scored, and said so: counted as not run (wrong) in the totals.
        ItemRecord r;
        r.id = item.id;
        r.reference = item.reference;
        r.error = fmt::format("{} tokens, beyond the model's context of {}", longest, model.config().n_ctx_train);
        rec.record(r);
        per_choice.clear();
      }
      for (const Scored& s : per_choice) total_tokens += int64_t(s.tokens.size());
      scored.push_back(std::move(per_choice));
    }
    size_t n_chunks = 0;
    for (const auto& per_choice : scored) n_chunks += per_choice.size();
    caches.reserve(n_chunks);  // the chunks point into it
    for (auto& per_choice : scored)
      for (Scored& s : per_choice) {
        caches.push_back(model.new_cache(int(s.tokens.size()), kv_type));
        chunks.push_back(Model::Chunk{&caches.back(), s.tokens.data(), int64_t(s.tokens.size()), s.n_cont + 1});
        rows += size_t(s.n_cont + 1);
      }
    if (chunks.empty()) continue;
    logits.resize(rows * size_t(n_vocab));
    uint64_t traffic = model.weight_bytes_per_token();
    for (const Model::Chunk& c : chunks)
      traffic += meter::forward_traffic_bytes(0, model.config().kv_bytes_per_token(kv_type), 0, c.n);
    meter.add_memory_traffic(traffic);
    const double j0 = meter.joules();
    model.forward_batch(chunks, logits.data());
    const double dj = meter.joules() - j0;

    size_t row = 0;
    for (size_t g = g0; g < g1; ++g) {
      const TaskItem& item = items[todo[g]];
      if (scored[g - g0].empty()) continue;  // recorded as not run above
      ItemRecord r;
      r.id = item.id;
      r.reference = item.reference;
      double best = -INFINITY, best_norm = -INFINITY;
      std::string pick, pick_norm;
      int64_t item_tokens = 0;
      nlohmann::json ll = nlohmann::json::array();
      for (size_t c = 0; c < item.choices.size(); ++c) {
        const Scored& s = scored[g - g0][c];
        double sum = 0;
        for (int t = 0; t < s.n_cont; ++t) {
          const float* x = logits.data() + (row + size_t(t)) * size_t(n_vocab);
          const float mx = *std::max_element(x, x + n_vocab);
          double z = 0;
          for (int32_t v = 0; v < n_vocab; ++v) z += std::exp(double(x[v]) - mx);
          sum += double(x[s.tokens[s.tokens.size() - size_t(s.n_cont) + size_t(t)]]) - mx - std::log(z);
        }
        row += size_t(s.n_cont + 1);
        item_tokens += int64_t(s.tokens.size());
        const double norm = sum / double(std::max<size_t>(1, s.bytes));
        if (sum > best) best = sum, pick = item.choices[c].first;
        if (norm > best_norm) best_norm = norm, pick_norm = item.choices[c].first;
        ll.push_back(sum);
      }
      r.answers = {pick};
      r.vote = pick;
      r.correct = pick == item.reference;
      r.correct_norm = pick_norm == item.reference;
      r.prompt_tokens = item_tokens;
      r.prefill_j = dj * double(item_tokens) / double(std::max<int64_t>(1, total_tokens));
      r.output = "loglik " + ll.dump() + ", per byte picks " + pick_norm;
      rec.record(r);
    }
    if (progress) progress(rec.prog);
  }
}

// ---- the summary ----

TaskSummary summarize(const TaskConfig& cfg, const std::vector<TaskItem>& items, const std::vector<size_t>& selection,
                      const ResultsFile& results, const meter::Meter& meter) {
  TaskSummary s;
  s.task = task_name(cfg.task);
  s.model = cfg.model;
  s.mode = cfg.loglik ? "loglik" : cfg.samples > 1 ? fmt::format("generate, majority of {}", cfg.samples) : "generate";
  meter::PhaseEnergy prefill, decode;
  for (size_t i : selection) {
    const auto it = results.done().find(items[i].id);
    if (it == results.done().end()) continue;
    const ItemRecord& r = it->second;
    ++s.items;
    s.correct += r.correct;
    s.correct_norm += r.correct_norm;
    s.errors += !r.error.empty();
    s.prompt_tokens += r.prompt_tokens;
    s.completion_tokens += r.completion_tokens;
    s.reasoning_tokens += r.reasoning_tokens;
    s.wall_s += r.wall_s;
    prefill.joules += r.prefill_j;
    decode.joules += r.decode_j;
  }
  prefill.tokens = s.prompt_tokens;
  decode.tokens = s.completion_tokens;
  // Wall time is shared between the phases in proportion to their joules (the
  // hardware's cost follows time; the per-item records keep joules, not phases' time).
  const double j = prefill.joules + decode.joules;
  prefill.seconds = j > 0 ? s.wall_s * prefill.joules / j : s.wall_s;
  decode.seconds = s.wall_s - prefill.seconds;
  s.energy = meter::make_report(meter.source(), meter.source_detail(), meter.estimated(), prefill, decode, meter.config().prices);
  return s;
}

nlohmann::json TaskSummary::to_json() const {
  nlohmann::json j;
  j["task"] = task;
  j["model"] = model;
  j["mode"] = mode;
  j["items"] = items;
  j["correct"] = correct;
  j["accuracy"] = accuracy();
  if (mode == "loglik") j["accuracy_norm"] = items ? double(correct_norm) / double(items) : 0;
  j["errors"] = errors;
  j["prompt_tokens"] = prompt_tokens;
  j["completion_tokens"] = completion_tokens;
  j["reasoning_tokens"] = reasoning_tokens;
  j["wall_s"] = wall_s;
  j["joules"] = energy.total_j;
  j["j_per_item"] = j_per_item();
  j["correct_per_kj"] = correct_per_kj();
  j["usd_per_1000_items"] = usd_per_1000_items();
  j["energy"] = meter::to_json(energy);
  return j;
}

}  // namespace jevons::eval

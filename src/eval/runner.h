// Running a task: every selected question through the engine (many in flight at once,
// K samples each with a majority vote), or ARC's choices scored by log-likelihood;
// one JSON line per question appended to a results file as it completes, so an
// interrupted run resumes where it stopped; a summary with the energy of it all.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "eval/tasks.h"
#include "meter/accounting.h"
#include "tokenizer/chat_template.h"

namespace jevons::eval {

struct TaskConfig {
  Task task = Task::kGsm8k;
  bool loglik = false;     // ARC-Easy: score each choice's log-likelihood instead of generating
  int samples = 1;         // answers per question; the majority vote is graded
  engine::GenParams gen;   // sampling, max_tokens, thinking budget
  std::string model;       // the model's path, as given
  std::string prompt_style = "chat";  // "chat" (the model's template) or "plain" (a completion prompt)
  // What makes results comparable: two runs with equal identities may share a file.
  nlohmann::json identity() const;
};

// One question's outcome: a line of the results file.
struct ItemRecord {
  std::string id;
  std::string reference;
  std::vector<std::string> answers;  // per sample ("" when none could be read)
  std::string vote;                  // the majority answer
  bool correct = false;
  bool correct_norm = false;         // loglik: by log-likelihood per byte
  std::string error;                 // non-empty: not run (e.g. the prompt exceeds the context)
  int64_t prompt_tokens = 0, completion_tokens = 0, reasoning_tokens = 0;
  double prefill_j = 0, decode_j = 0;
  double wall_s = 0;   // the run's time since its previous record (these add up to its wall time)
  std::string output;  // the first sample's text (reasoning + content), for reading failures
  nlohmann::json to_json() const;
  static ItemRecord from_json(const nlohmann::json& j);
};

// The results file: a header line with the configuration's identity, then records.
class ResultsFile {
 public:
  // Opens or creates path. An existing file made with another identity is an Error
  // (restart: discard it and start over). A torn last line (a crash mid-write) is cut.
  ResultsFile(const std::string& path, const nlohmann::json& identity, bool restart);
  ~ResultsFile();
  const std::map<std::string, ItemRecord>& done() const { return done_; }
  void append(const ItemRecord& r);  // written and flushed at once
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  std::map<std::string, ItemRecord> done_;
};

struct TaskSummary {
  std::string task, model, mode;
  int64_t items = 0, correct = 0, correct_norm = 0, errors = 0, resumed = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0, reasoning_tokens = 0;
  double wall_s = 0;
  meter::EnergyReport energy;
  double accuracy() const { return items ? double(correct) / double(items) : 0; }
  double j_per_item() const { return items ? energy.total_j / double(items) : 0; }
  double correct_per_kj() const { return energy.total_j > 0 ? double(correct) / (energy.total_j / 1000) : 0; }
  double usd_per_1000_items() const { return items ? energy.cost_usd / double(items) * 1000 : 0; }
  nlohmann::json to_json() const;
};

struct RunProgress {
  int64_t done = 0, total = 0, correct = 0;
  double joules = 0;
};
using RunCallback = std::function<void(const RunProgress&)>;

// Generates answers for the selected items not yet in `results` (tmpl null: plain prompts).
void run_generation(engine::Engine& eng, const ChatTemplate* tmpl, const TaskConfig& cfg, const std::vector<TaskItem>& items,
                    const std::vector<size_t>& selection, ResultsFile& results, const RunCallback& progress);

// ARC-style log-likelihood scoring (cfg.loglik), `parallel` questions per forward pass.
void run_loglik(Model& model, const Tokenizer& tok, meter::Meter& meter, const TaskConfig& cfg,
                const std::vector<TaskItem>& items, const std::vector<size_t>& selection, int parallel, TensorType kv_type,
                ResultsFile& results, const RunCallback& progress);

// The totals over the selected items that the results file holds.
TaskSummary summarize(const TaskConfig& cfg, const std::vector<TaskItem>& items, const std::vector<size_t>& selection,
                      const ResultsFile& results, const meter::Meter& meter);

}  // namespace jevons::eval

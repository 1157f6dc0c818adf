#include "eval/tasks.h"

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/grading.h"

namespace jevons::eval {

Task parse_task(const std::string& name) {
  if (name == "gsm8k") return Task::kGsm8k;
  if (name == "math500" || name == "math-500") return Task::kMath500;
  if (name == "arc-easy" || name == "arc_easy") return Task::kArcEasy;
  fail("unknown task '{}': choose gsm8k, math500 or arc-easy", name);
}

const char* task_name(Task t) {
  switch (t) {
    case Task::kGsm8k: return "gsm8k";
    case Task::kMath500: return "math500";
    case Task::kArcEasy: return "arc-easy";
  }
  return "?";
}

const char* task_default_file(Task t) {
  switch (t) {
    case Task::kGsm8k: return "gsm8k/test.jsonl";
    case Task::kMath500: return "math500/test.jsonl";
    case Task::kArcEasy: return "arc_easy/ARC-Easy-Test.jsonl";
  }
  return "";
}

std::vector<TaskItem> load_task(Task t, const std::string& path) {
  std::ifstream f(path);
  if (!f) fail("cannot read the task file {}", path);
  std::vector<TaskItem> items;
  std::string line;
  for (int64_t n = 1; std::getline(f, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      TaskItem it;
      it.id = j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : std::to_string(n);
      switch (t) {
        case Task::kGsm8k: {
          it.question = j.at("question").get<std::string>();
          const auto ref = gsm8k_reference(j.at("answer").get<std::string>());
          if (!ref) fail("no '#### answer' in the reference");
          it.reference = *ref;
          break;
        }
        case Task::kMath500:
          it.question = j.at("problem").get<std::string>();
          it.reference = j.at("answer").get<std::string>();
          if (j.contains("unique_id") && j["unique_id"].is_string()) it.id = j["unique_id"].get<std::string>();
          break;
        case Task::kArcEasy: {
          const auto& q = j.at("question");
          it.question = q.at("stem").get<std::string>();
          for (const auto& c : q.at("choices")) it.choices.emplace_back(c.at("label").get<std::string>(), c.at("text").get<std::string>());
          it.reference = j.at("answerKey").get<std::string>();
          if (it.choices.empty()) fail("no choices");
          break;
        }
      }
      items.push_back(std::move(it));
    } catch (const nlohmann::json::exception& e) {
      fail("{} line {}: not a {} item ({})", path, n, task_name(t), e.what());
    } catch (const Error& e) {
      fail("{} line {}: {}", path, n, e.what());
    }
  }
  if (items.empty()) fail("{} holds no items", path);
  return items;
}

std::vector<size_t> select_items(size_t n_items, int64_t limit, int64_t sample, uint64_t seed) {
  std::vector<size_t> idx(n_items);
  std::iota(idx.begin(), idx.end(), size_t(0));
  if (sample >= 0 && size_t(sample) < n_items) {
    std::mt19937_64 rng(seed);
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(size_t(sample));
    std::sort(idx.begin(), idx.end());
  }
  if (limit >= 0 && size_t(limit) < idx.size()) idx.resize(size_t(limit));
  return idx;
}

std::string task_question(Task t, const TaskItem& item) {
  switch (t) {
    case Task::kGsm8k:
    case Task::kMath500:
      // DeepSeek-R1's recommended instruction for math.
      return item.question + "\nPlease reason step by step, and put your final answer within \\boxed{}.";
    case Task::kArcEasy: {
      std::string q = item.question + "\n";
      for (const auto& [label, text] : item.choices) q += label + ". " + text + "\n";
      return q + "Answer with the letter of the correct choice, as \"The answer is X\".";
    }
  }
  return item.question;
}

std::string task_plain_prompt(Task t, const TaskItem& item) {
  if (t == Task::kArcEasy) {
    std::string q = "Question: " + item.question + "\n";
    for (const auto& [label, text] : item.choices) q += label + ". " + text + "\n";
    return q + "Answer:";
  }
  return "Question: " + item.question + "\nAnswer:";
}

std::string extract_answer(Task t, const TaskItem& item, const std::string& output) {
  switch (t) {
    case Task::kGsm8k: return extract_final_number(output).value_or("");
    case Task::kMath500: return extract_boxed(output).value_or("");
    case Task::kArcEasy: {
      std::vector<std::string> labels;
      for (const auto& c : item.choices) labels.push_back(c.first);
      return extract_choice_label(output, labels).value_or("");
    }
  }
  return "";
}

bool answer_correct(Task t, const TaskItem& item, const std::string& answer) {
  if (answer.empty()) return false;
  switch (t) {
    case Task::kGsm8k: return numbers_equal(answer, item.reference);
    case Task::kMath500: return math_answers_equal(answer, item.reference);
    case Task::kArcEasy: return answer == item.reference;
  }
  return false;
}

bool answers_agree(Task t, const std::string& a, const std::string& b) {
  switch (t) {
    case Task::kGsm8k: return numbers_equal(a, b) || a == b;
    case Task::kMath500: return math_answers_equal(a, b);
    case Task::kArcEasy: return a == b;
  }
  return a == b;
}

std::string arc_context(const TaskItem& item) { return "Question: " + item.question + "\nAnswer:"; }
std::string arc_continuation(const std::string& choice_text) { return " " + choice_text; }

}  // namespace jevons::eval

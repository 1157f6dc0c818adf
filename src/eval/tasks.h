// The evaluation tasks: GSM8K, MATH-500 and ARC-Easy, read from their JSON-lines
// files (../shared/eval), the question each puts to a model, and how its answer is
// graded (grading.h).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace jevons::eval {

enum class Task { kGsm8k, kMath500, kArcEasy };

// "gsm8k", "math500", "arc-easy" -> the task; Error naming the choices otherwise.
Task parse_task(const std::string& name);
const char* task_name(Task t);
// The file under ../shared/eval that holds it: "gsm8k/test.jsonl", ...
const char* task_default_file(Task t);

struct TaskItem {
  std::string id;         // the file's id, or the line number
  std::string question;   // the problem (ARC: the stem)
  std::string reference;  // the right answer: a number, a LaTeX expression, a label
  std::vector<std::pair<std::string, std::string>> choices;  // ARC: (label, text)
};

// Reads a task file; Error naming the line when a line is not an item of this task.
std::vector<TaskItem> load_task(Task t, const std::string& path);

// Which items to run: the first `limit` (-1: all), or `sample` drawn with `seed`
// (-1: none drawn), in file order.
std::vector<size_t> select_items(size_t n_items, int64_t limit, int64_t sample, uint64_t seed);

// What the model is asked (the user turn of a chat, or the body of a plain prompt).
std::string task_question(Task t, const TaskItem& item);
// A plain (no chat template) completion prompt for base models.
std::string task_plain_prompt(Task t, const TaskItem& item);

// The answer a model's output gives ("" when none could be read).
std::string extract_answer(Task t, const TaskItem& item, const std::string& output);
// Whether an extracted answer is right.
bool answer_correct(Task t, const TaskItem& item, const std::string& answer);
// Equality of two extracted answers (for the majority vote).
bool answers_agree(Task t, const std::string& a, const std::string& b);

// ARC by log-likelihood (lm-evaluation-harness's arc_easy): the context and each
// choice's continuation, whose summed log-probability is compared.
std::string arc_context(const TaskItem& item);
std::string arc_continuation(const std::string& choice_text);

}  // namespace jevons::eval

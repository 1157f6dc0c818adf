// Tool calls in the formats the model families write them, read out of generated
// text, and the grammar that makes a model write one (tool_choice "required" or a
// named function), with the arguments constrained by the function's JSON Schema.
//
//   hermes    Qwen2.5 / Qwen3 / Hermes: <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
//   llama3    Llama 3.1-3.3 JSON tool calling: {"name": "f", "parameters": {...}}, optionally
//             after <|python_tag|>, several separated by ";"
//   deepseek  DeepSeek-V3 / R1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f
//             ```json\n{...}\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
//
// A call that does not parse (broken JSON, an unknown function) is not a call: the
// text comes back as content, never a crash or a half-made call.
#pragma once
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace jevons::engine {

enum class ToolFormat { kHermes, kLlama3, kDeepSeek };

// The format a chat template writes tool calls in (from its source; Hermes when it
// names none, as ChatML models are usually trained).
ToolFormat tool_format_of_template(const std::string& template_source);
const char* tool_format_name(ToolFormat f);

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text of an object
};

struct ToolParse {
  std::string content;          // the text outside the calls
  std::vector<ToolCall> calls;  // empty: no call (or none that parsed)
};

// Reads the calls out of a reply. names: the functions offered (others are not calls).
ToolParse parse_tool_calls(ToolFormat f, const std::string& text, const std::set<std::string>& names);

// Where a call may begin in streamed text: the offset of the format's opening marker,
// or of a tail that may still become one (the caller holds text back from there);
// npos when the text so far holds neither.
size_t tool_call_start(ToolFormat f, const std::string& text);

// GBNF for one call (parallel: one or more) of the functions of `tools` (OpenAI's
// [{"type": "function", "function": {"name", "parameters"}}]), only `name` when given.
// Error when a function's parameters cannot be enforced (json_schema.h).
std::string tool_call_grammar(ToolFormat f, const nlohmann::json& tools, const std::string& name, bool parallel);

}  // namespace jevons::engine

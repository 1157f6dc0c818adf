// Chat templates: the Jinja programs Hugging Face models ship (tokenizer.chat_template)
// that lay a conversation out as prompt text. ChatTemplate renders them with a small
// Jinja interpreter that matches jinja2 as transformers' apply_chat_template configures
// it (trim_blocks, lstrip_blocks, loop controls, HF's tojson), for the subset chat
// templates use: {{ }}, {% %}, {# #}, whitespace control, if/elif/else, for (with
// loop.*, else, filters), set (incl. namespace() and ns.attr, set blocks), raw,
// break/continue, literals, lists, dicts, attribute/subscript/slice access, filters,
// tests, operators, string/dict methods, raise_exception(), strftime_now(), range().
// Anything else is an Error naming the line and column; nesting is limited, so a
// hostile template can not blow the stack.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace jevons {

class ModelSource;
class Tokenizer;

struct ChatMessage {
  std::string role, content;
  std::string reasoning_content;  // only passed to the template when non-empty
  // Tool use, passed to the template when present: an assistant's calls (OpenAI's
  // [{"id", "type", "function": {"name", "arguments"}}], arguments as an object), and
  // a tool result's call id and function name.
  nlohmann::json tool_calls;
  std::string tool_call_id, name;
};

namespace jinja {
class Program;
}

class ChatTemplate {
 public:
  // From a model's tokenizer.chat_template, or when it has none a built-in one
  // chosen from the vocabulary (Llama 3 header tokens: "llama3"; DeepSeek's
  // <｜User｜>: "deepseek-r1"; otherwise "chatml"). bos/eos texts come from the tokenizer.
  static ChatTemplate from_source(const ModelSource& src, const Tokenizer& tok);
  // A built-in template by name: "chatml", "llama3", "deepseek-r1", "deepseek-v3".
  // Throws Error on an unknown name.
  static std::string builtin(const std::string& name);

  // Parses now: a syntax error throws Error with line:column.
  explicit ChatTemplate(std::string jinja_source, std::string bos_token = "", std::string eos_token = "");
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // The same with extra template variables (e.g. {"date_string": "1 Jan 2025"}, "tools").
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const nlohmann::json& extra) const;

  // Whether the generation prompt opens a reasoning block (ends with "<think>" and an
  // optional newline, as DeepSeek-R1's does), so the reply starts inside it.
  bool opens_thinking() const { return opens_thinking_; }
  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

 private:
  std::string source_, bos_, eos_;
  std::shared_ptr<const jinja::Program> program_;
  bool opens_thinking_ = false;
};

}  // namespace jevons

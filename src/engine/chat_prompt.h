// Chat prompts, built once for `chat` and `serve`: which template renders the
// conversation, and the rendered text as token ids with BOS added exactly once.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace jevons::engine {

// The template a conversation is rendered with. choice: "" for the model's own
// (tokenizer.chat_template, or a built-in one picked from its vocabulary), a built-in
// name (chatml, llama3, deepseek-r1, deepseek-v3) or a Jinja file. When the model's
// own template is one this renderer cannot parse, ChatML stands in and *notice says
// so (the caller tells the user). A file that cannot be read or parsed, or an unknown
// name, is an Error.
ChatTemplate resolve_chat_template(const ModelSource& src, const Tokenizer& tok, const std::string& choice, std::string* notice);

struct ChatPrompt {
  std::string text;
  std::vector<int32_t> ids;
  bool reasoning_at_start = false;  // the generation prompt opened a <think> block
};

// Renders messages with the generation prompt and encodes the text (special tokens
// parsed; BOS added only when the model adds one and the template did not write it).
// Throws Error when the template fails on these messages.
// extra: more template variables (chat_template_kwargs such as enable_thinking, tools).
ChatPrompt build_chat_prompt(const ChatTemplate& tmpl, const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                             const nlohmann::json& extra = nlohmann::json::object());

// Whether text ends with "<think>" (and optional whitespace).
bool ends_with_think(const std::string& text);

}  // namespace jevons::engine

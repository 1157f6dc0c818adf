#include "engine/chat_prompt.h"

#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "core/error.h"

namespace jevons::engine {
namespace {

std::string special_text(const Tokenizer& tok, int32_t id) { return id >= 0 ? tok.token_text(id) : std::string(); }

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

ChatTemplate resolve_chat_template(const ModelSource& src, const Tokenizer& tok, const std::string& choice, std::string* notice) {
  const std::string bos = special_text(tok, tok.bos_id()), eos = special_text(tok, tok.eos_id());
  if (!choice.empty()) {
    std::string source;
    if (is_regular_file(choice)) {
      std::ifstream f(choice, std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      if (!f && !f.eof()) fail("cannot read the chat template file {}", choice);
      source = ss.str();
    } else if (choice.find('/') != std::string::npos || choice.find('.') != std::string::npos) {
      fail("cannot read the chat template file {} (no such file; built-in names: chatml, llama3, deepseek-r1, deepseek-v3)", choice);
    } else {
      source = ChatTemplate::builtin(choice);
    }
    try {
      return ChatTemplate(std::move(source), bos, eos);
    } catch (const Error& e) {
      fail("the chat template {} cannot be used: {}", choice, e.what());
    }
  }
  try {
    return ChatTemplate::from_source(src, tok);
  } catch (const Error& e) {
    if (notice)
      *notice = fmt::format("the model's chat template is not usable ({}); using chatml instead (see --chat-template)", e.what());
    return ChatTemplate(ChatTemplate::builtin("chatml"), bos, eos);
  }
}

ChatPrompt build_chat_prompt(const ChatTemplate& tmpl, const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                             const nlohmann::json& extra) {
  ChatPrompt p;
  p.text = tmpl.render(messages, true, extra);
  const std::string& bos = tmpl.bos_token();
  const bool has_bos = !bos.empty() && p.text.rfind(bos, 0) == 0;
  p.ids = tok.encode(p.text, tok.add_bos_default() && !has_bos && tok.bos_id() >= 0, true);
  if (p.ids.empty()) fail("the chat template rendered an empty prompt");
  p.reasoning_at_start = tmpl.opens_thinking() || ends_with_think(p.text);
  return p;
}

bool ends_with_think(const std::string& s) {
  size_t end = s.size();
  while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == ' ' || s[end - 1] == '\r')) --end;
  static const std::string tag = "<think>";
  return end >= tag.size() && s.compare(end - tag.size(), tag.size(), tag) == 0;
}

}  // namespace jevons::engine

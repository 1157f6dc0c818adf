#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/jinja_template.h"
#include "tokenizer/tokenizer.h"

namespace jevons {

namespace {

// The built-in templates (the upstream model templates' tool-less paths).
constexpr const char* kChatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
constexpr const char* kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
constexpr const char* kDeepseekR1 =
    "{% set ns = namespace(system_prompt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == "
    "'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set "
    "ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- "
    "endif %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if "
    "message['role'] == 'user' %}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}"
    "{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}{% if "
    "add_generation_prompt %}{{'<｜Assistant｜><think>\\n'}}{% endif %}";
constexpr const char* kDeepseekV3 =
    "{% set ns = namespace(system_prompt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == "
    "'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set "
    "ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- "
    "endif %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if "
    "message['role'] == 'user' %}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' %}"
    "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}{% if "
    "add_generation_prompt %}{{'<｜Assistant｜>'}}{% endif %}";

std::string special_text(const Tokenizer& tok, int32_t id) {
  if (id < 0 || id >= tok.n_vocab()) return "";
  return tok.token_text(id);
}

}  // namespace

std::string ChatTemplate::builtin(const std::string& name) {
  if (name == "chatml") return kChatml;
  if (name == "llama3") return kLlama3;
  if (name == "deepseek-r1") return kDeepseekR1;
  if (name == "deepseek-v3") return kDeepseekV3;
  fail("unknown built-in chat template '{}' (known: chatml, llama3, deepseek-r1, deepseek-v3)", name);
}

ChatTemplate ChatTemplate::from_source(const ModelSource& src, const Tokenizer& tok) {
  std::string source = src.get_string_or("tokenizer.chat_template", "");
  if (source.empty()) {
    std::string name = "chatml";
    if (tok.find_token("<|start_header_id|>") >= 0 && tok.find_token("<|eot_id|>") >= 0) name = "llama3";
    else if (tok.find_token("<｜User｜>") >= 0) name = tok.find_token("<think>") >= 0 ? "deepseek-r1" : "deepseek-v3";
    source = builtin(name);
  }
  return ChatTemplate(std::move(source), special_text(tok, tok.bos_id()), special_text(tok, tok.eos_id()));
}

ChatTemplate::ChatTemplate(std::string jinja_source, std::string bos_token, std::string eos_token)
    : source_(std::move(jinja_source)), bos_(std::move(bos_token)), eos_(std::move(eos_token)) {
  program_ = jinja::parse(source_);
  try {
    const std::string with = render({{"user", "x", ""}}, true);
    const std::string without = render({{"user", "x", ""}}, false);
    std::string_view gen(with);
    if (gen.substr(0, without.size()) == without) gen.remove_prefix(without.size());
    while (!gen.empty() && (gen.back() == '\n' || gen.back() == ' ')) gen.remove_suffix(1);
    opens_thinking_ = gen.size() >= 7 && gen.substr(gen.size() - 7) == "<think>";
  } catch (const Error&) {
    opens_thinking_ = false;  // a template that needs more than one user message
  }
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return render(messages, add_generation_prompt, nlohmann::json::object());
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra) const {
  std::map<std::string, jinja::Value> globals;
  jinja::List list;
  for (const ChatMessage& m : messages) {
    jinja::Dict d;
    d.emplace_back("role", jinja::Value::string(m.role));
    d.emplace_back("content", jinja::Value::string(m.content));
    if (!m.reasoning_content.empty()) d.emplace_back("reasoning_content", jinja::Value::string(m.reasoning_content));
    if (m.tool_calls.is_array() && !m.tool_calls.empty()) d.emplace_back("tool_calls", jinja::Value::from_json(m.tool_calls));
    if (!m.tool_call_id.empty()) d.emplace_back("tool_call_id", jinja::Value::string(m.tool_call_id));
    if (!m.name.empty()) d.emplace_back("name", jinja::Value::string(m.name));
    list.push_back(jinja::Value::make_dict(std::move(d)));
  }
  globals["messages"] = jinja::Value::make_list(std::move(list));
  globals["add_generation_prompt"] = jinja::Value::boolean(add_generation_prompt);
  globals["bos_token"] = jinja::Value::string(bos_);
  globals["eos_token"] = jinja::Value::string(eos_);
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) globals[it.key()] = jinja::Value::from_json(it.value());
  return jinja::render(*program_, globals);
}

}  // namespace jevons

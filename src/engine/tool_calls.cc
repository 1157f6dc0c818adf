#include "engine/tool_calls.h"

#include "core/error.h"
#include "engine/json_schema.h"

namespace jevons::engine {
namespace {

const std::string kHermesOpen = "<tool_call>", kHermesClose = "</tool_call>";
const std::string kPythonTag = "<|python_tag|>";
const std::string kDsCallsBegin = "<｜tool▁calls▁begin｜>", kDsCallsEnd = "<｜tool▁calls▁end｜>";
const std::string kDsCallBegin = "<｜tool▁call▁begin｜>", kDsCallEnd = "<｜tool▁call▁end｜>", kDsSep = "<｜tool▁sep｜>";

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace((unsigned char)s[a])) ++a;
  while (b > a && std::isspace((unsigned char)s[b - 1])) --b;
  return s.substr(a, b - a);
}

// {"name": ..., "<args_key>": {...}} -> a call, when it is one of `names`.
bool call_from_json(const std::string& text, const char* args_key, const std::set<std::string>& names, ToolCall* out) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || !names.count(j["name"].get<std::string>())) return false;
  nlohmann::json args = j.contains(args_key) ? j[args_key] : nlohmann::json::object();
  if (args.is_string()) args = nlohmann::json::parse(args.get<std::string>(), nullptr, false);  // arguments as a JSON string
  if (!args.is_object()) return false;
  out->name = j["name"].get<std::string>();
  out->arguments = args.dump();
  return true;
}

std::string quoted(const std::string& s) {  // a GBNF literal of s
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += char(c);
  }
  return out + "\"";
}

}  // namespace

ToolFormat tool_format_of_template(const std::string& src) {
  if (src.find("tool▁calls▁begin") != std::string::npos) return ToolFormat::kDeepSeek;
  if (src.find("<tool_call>") != std::string::npos) return ToolFormat::kHermes;
  if (src.find("<|python_tag|>") != std::string::npos || src.find("ipython") != std::string::npos) return ToolFormat::kLlama3;
  return ToolFormat::kHermes;
}

const char* tool_format_name(ToolFormat f) {
  switch (f) {
    case ToolFormat::kHermes: return "hermes";
    case ToolFormat::kLlama3: return "llama3";
    case ToolFormat::kDeepSeek: return "deepseek";
  }
  return "?";
}

ToolParse parse_tool_calls(ToolFormat f, const std::string& text, const std::set<std::string>& names) {
  ToolParse r;
  switch (f) {
    case ToolFormat::kHermes: {
      size_t pos = 0;
      std::string content;
      std::vector<ToolCall> calls;
      for (;;) {
        const size_t open = text.find(kHermesOpen, pos);
        if (open == std::string::npos) {
          content += text.substr(pos);
          break;
        }
        const size_t close = text.find(kHermesClose, open);
        ToolCall c;
        if (close == std::string::npos ||
            !call_from_json(trim(text.substr(open + kHermesOpen.size(), close - open - kHermesOpen.size())), "arguments", names, &c))
          return ToolParse{text, {}};  // malformed: all of it is text
        content += text.substr(pos, open - pos);
        calls.push_back(std::move(c));
        pos = close + kHermesClose.size();
      }
      r.content = trim(content).empty() ? "" : content;
      r.calls = std::move(calls);
      return r;
    }
    case ToolFormat::kLlama3: {
      std::string body = trim(text);
      std::string content;
      if (const size_t tag = body.find(kPythonTag); tag != std::string::npos) {
        content = body.substr(0, tag);
        body = trim(body.substr(tag + kPythonTag.size()));
      } else if (body.empty() || body[0] != '{') {
        return ToolParse{text, {}};
      }
      // One call, or several separated by ';'.
      std::vector<ToolCall> calls;
      size_t start = 0;
      int depth = 0;
      bool in_string = false;
      for (size_t i = 0; i <= body.size(); ++i) {
        const char ch = i < body.size() ? body[i] : ';';
        if (in_string) {
          if (ch == '\\') ++i;
          else if (ch == '"') in_string = false;
          continue;
        }
        if (ch == '"') in_string = true;
        else if (ch == '{') ++depth;
        else if (ch == '}') --depth;
        else if (ch == ';' && depth == 0) {
          const std::string part = trim(body.substr(start, i - start));
          if (!part.empty()) {
            ToolCall c;
            if (!call_from_json(part, "parameters", names, &c) && !call_from_json(part, "arguments", names, &c))
              return ToolParse{text, {}};
            calls.push_back(std::move(c));
          }
          start = i + 1;
        }
      }
      if (calls.empty()) return ToolParse{text, {}};
      r.content = trim(content).empty() ? "" : content;
      r.calls = std::move(calls);
      return r;
    }
    case ToolFormat::kDeepSeek: {
      const size_t begin = text.find(kDsCallsBegin);
      if (begin == std::string::npos) return ToolParse{text, {}};
      std::vector<ToolCall> calls;
      size_t pos = begin + kDsCallsBegin.size();
      for (;;) {
        const size_t cb = text.find(kDsCallBegin, pos);
        if (cb == std::string::npos) break;
        const size_t sep = text.find(kDsSep, cb);
        const size_t ce = text.find(kDsCallEnd, cb);
        if (sep == std::string::npos || ce == std::string::npos || sep > ce) return ToolParse{text, {}};
        // function<｜tool▁sep｜>NAME\n```json\n{...}\n```
        std::string rest = text.substr(sep + kDsSep.size(), ce - sep - kDsSep.size());
        const size_t nl = rest.find('\n');
        if (nl == std::string::npos) return ToolParse{text, {}};
        const std::string name = trim(rest.substr(0, nl));
        std::string args = trim(rest.substr(nl + 1));
        if (args.rfind("```json", 0) == 0) args = args.substr(7);
        if (args.size() >= 3 && args.compare(args.size() - 3, 3, "```") == 0) args.resize(args.size() - 3);
        const nlohmann::json a = nlohmann::json::parse(trim(args), nullptr, false);
        if (!names.count(name) || !a.is_object()) return ToolParse{text, {}};
        calls.push_back(ToolCall{name, a.dump()});
        pos = ce + kDsCallEnd.size();
      }
      if (calls.empty()) return ToolParse{text, {}};
      const std::string content = text.substr(0, begin);
      r.content = trim(content).empty() ? "" : content;
      r.calls = std::move(calls);
      return r;
    }
  }
  return ToolParse{text, {}};
}

size_t tool_call_start(ToolFormat f, const std::string& text) {
  std::vector<std::string> markers;
  switch (f) {
    case ToolFormat::kHermes: markers = {kHermesOpen}; break;
    case ToolFormat::kDeepSeek: markers = {kDsCallsBegin}; break;
    case ToolFormat::kLlama3: {
      markers = {kPythonTag};
      // A bare JSON call: the reply begins with '{'.
      const size_t first = text.find_first_not_of(" \t\r\n");
      if (first != std::string::npos && text[first] == '{') return first;
      break;
    }
  }
  size_t best = std::string::npos;
  for (const std::string& m : markers) {
    if (const size_t at = text.find(m); at != std::string::npos) best = std::min(best, at);
    // A tail that is a prefix of the marker may still become it.
    for (size_t k = std::min(m.size() - 1, text.size()); k > 0; --k)
      if (text.compare(text.size() - k, k, m, 0, k) == 0) {
        best = std::min(best, text.size() - k);
        break;
      }
  }
  return best;
}

std::string tool_call_grammar(ToolFormat f, const nlohmann::json& tools, const std::string& only, bool parallel) {
  std::string rules, alts;
  int i = 0;
  for (const auto& t : tools) {
    const auto& fn = t["function"];
    const std::string name = fn["name"].get<std::string>();
    if (!only.empty() && name != only) continue;
    const nlohmann::json params = fn.contains("parameters") ? fn["parameters"] : nlohmann::json{{"type", "object"}};
    const std::string prefix = "f" + std::to_string(i++) + "-";
    try {
      rules += json_schema_to_gbnf(params, prefix);
    } catch (const Error& e) {
      fail("the parameters of function '{}': {}", name, e.what());
    }
    std::string call;
    switch (f) {
      case ToolFormat::kHermes:
        call = quoted("{\"name\": " + nlohmann::json(name).dump() + ", \"arguments\": ") + " " + prefix + "root " + quoted("}");
        break;
      case ToolFormat::kLlama3:
        call = quoted("{\"name\": " + nlohmann::json(name).dump() + ", \"parameters\": ") + " " + prefix + "root " + quoted("}");
        break;
      case ToolFormat::kDeepSeek:
        call = quoted(kDsCallBegin + "function" + kDsSep + name + "\n```json\n") + " " + prefix + "root " + quoted("\n```" + kDsCallEnd);
        break;
    }
    alts += (alts.empty() ? "" : " | ") + call;
  }
  if (alts.empty()) fail("tool_choice names the function '{}', which is not among the tools", only);
  std::string root;
  switch (f) {
    case ToolFormat::kHermes:
      root = "root ::= call" + std::string(parallel ? " (\"\\n\" call)*" : "") + "\ncall ::= " + quoted(kHermesOpen + "\n") +
             " (" + alts + ") " + quoted("\n" + kHermesClose) + "\n";
      break;
    case ToolFormat::kLlama3:
      root = "root ::= call" + std::string(parallel ? " (\"; \" call)*" : "") + "\ncall ::= " + alts + "\n";
      break;
    case ToolFormat::kDeepSeek:
      root = "root ::= " + quoted(kDsCallsBegin) + " call" + std::string(parallel ? " call*" : "") + " " + quoted(kDsCallsEnd) +
             "\ncall ::= " + alts + "\n";
      break;
  }
  return root + rules;
}

}  // namespace jevons::engine

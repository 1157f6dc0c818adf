#include "server/openai.h"

#include <cstdlib>
#include <random>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "engine/json_schema.h"
#include "runtime/grammar.h"

namespace jevons::server {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& msg) {
  throw ApiError(400, "invalid_request_error", msg, param);
}

double get_number(const json& b, const char* key, double lo, double hi) {
  const json& v = b.at(key);
  if (!v.is_number()) bad(key, fmt::format("'{}' must be a number", key));
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi)) bad(key, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, x));
  return x;
}

int64_t get_int(const json& b, const char* key, int64_t lo, int64_t hi) {
  const json& v = b.at(key);
  if (!v.is_number_integer() && !(v.is_number_float() && v.get<double>() == double(int64_t(v.get<double>()))))
    bad(key, fmt::format("'{}' must be an integer", key));
  const double d = v.get<double>();
  if (d < double(lo) || d > double(hi)) bad(key, fmt::format("'{}' must be between {} and {}", key, lo, hi));
  return v.is_number_unsigned() ? int64_t(v.get<uint64_t>()) : int64_t(d == double(v.get<int64_t>()) ? v.get<int64_t>() : int64_t(d));
}

bool get_bool(const json& b, const char* key) {
  const json& v = b.at(key);
  if (!v.is_boolean()) bad(key, fmt::format("'{}' must be a boolean", key));
  return v.get<bool>();
}

bool has(const json& b, const char* key) { return b.contains(key) && !b.at(key).is_null(); }

std::string content_text(const json& c, const std::string& where) {
  if (c.is_null()) return "";
  if (c.is_string()) return c.get<std::string>();
  if (c.is_array()) {
    std::string out;
    for (const json& part : c) {
      if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
        bad(where, "content parts must be objects with a 'type'");
      if (part["type"] != "text") bad(where, fmt::format("content part type '{}' is not supported (text only)", part["type"].get<std::string>()));
      if (!part.contains("text") || !part["text"].is_string()) bad(where, "a text content part needs a string 'text'");
      out += part["text"].get<std::string>();
    }
    return out;
  }
  bad(where, "'content' must be a string or an array of content parts");
}

}  // namespace

ParsedRequest parse_request(const std::string& body, bool chat, int32_t n_vocab) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) bad("", "the request body is not valid JSON");
  return parse_request(j, chat, n_vocab);
}

namespace {

// Every parameter parse_request reads, and those that change nothing here.
const std::set<std::string>& known_parameters(bool chat) {
  static const std::set<std::string> common = {
      "model", "stream", "stream_options", "n", "temperature", "top_p", "top_k", "min_p", "presence_penalty",
      "frequency_penalty", "repeat_penalty", "seed", "max_tokens", "stop", "logprobs", "speculative", "ignore_eos",
      "max_reasoning_tokens", "max_reasoning_joules", "response_format", "grammar", "json_schema", "logit_bias",
      // no effect on the output here:
      "user", "metadata", "store", "service_tier", "cache_prompt", "id_slot", "safety_identifier", "prompt_cache_key"};
  static const std::set<std::string> chat_only = {"messages", "top_logprobs", "max_completion_tokens", "chat_template_kwargs",
                                                  "reasoning_effort", "tools", "tool_choice", "parallel_tool_calls"};
  static const std::set<std::string> completion_only = {"prompt", "echo", "best_of", "suffix"};
  static const std::set<std::string> all_chat = [] {
    std::set<std::string> s = common;
    s.insert(chat_only.begin(), chat_only.end());
    return s;
  }();
  static const std::set<std::string> all_completion = [] {
    std::set<std::string> s = common;
    s.insert(completion_only.begin(), completion_only.end());
    return s;
  }();
  return chat ? all_chat : all_completion;
}

// response_format, grammar or json_schema (llama-server's fields) -> the constraint.
std::shared_ptr<const Grammar> parse_constraint(const json& b) {
  const int given = has(b, "grammar") + has(b, "json_schema") +
                    (has(b, "response_format") && b["response_format"].is_object() && b["response_format"].value("type", "text") != "text");
  if (given > 1) bad("response_format", "give one of response_format, grammar and json_schema");
  try {
    if (has(b, "grammar")) {
      if (!b["grammar"].is_string()) bad("grammar", "'grammar' must be a GBNF string");
      return Grammar::parse(b["grammar"].get<std::string>());
    }
    if (has(b, "json_schema")) return Grammar::parse(engine::json_schema_to_gbnf(b["json_schema"]));
    if (has(b, "response_format")) {
      const json& rf = b["response_format"];
      if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
        bad("response_format", "'response_format' must be an object with a 'type'");
      const std::string type = rf["type"];
      if (type == "text") return nullptr;
      if (type == "json_object") return Grammar::parse(engine::json_object_grammar());
      if (type == "json_schema") {
        if (!has(rf, "json_schema") || !rf["json_schema"].is_object() || !has(rf["json_schema"], "schema"))
          bad("response_format", "response_format json_schema needs {\"json_schema\": {\"name\": ..., \"schema\": {...}}}");
        return Grammar::parse(engine::json_schema_to_gbnf(rf["json_schema"]["schema"]));
      }
      bad("response_format", fmt::format("response_format type '{}' is not supported (text, json_object or json_schema)", type));
    }
  } catch (const Error& e) {
    const std::string param = has(b, "grammar") ? "grammar" : has(b, "json_schema") ? "json_schema" : "response_format";
    bad(param, e.what());
  }
  return nullptr;
}

}  // namespace

ParsedRequest parse_request(const json& b, bool chat, int32_t n_vocab) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  for (const auto& [key, value] : b.items())
    if (!known_parameters(chat).count(key))
      bad(key, fmt::format("'{}' is not supported by {}: jevons would otherwise ignore it and answer as if it had not been sent",
                           key, chat ? "/v1/chat/completions" : "/v1/completions"));
  ParsedRequest r;
  r.chat = chat;
  if (has(b, "model")) {
    if (!b["model"].is_string()) bad("model", "'model' must be a string");
    r.model = b["model"].get<std::string>();
  }
  if (has(b, "stream")) r.stream = get_bool(b, "stream");
  if (has(b, "stream_options")) {
    const json& so = b["stream_options"];
    if (!so.is_object()) bad("stream_options", "'stream_options' must be an object");
    if (has(so, "include_usage")) r.include_usage = get_bool(so, "include_usage");
  }
  if (has(b, "n")) r.n = int(get_int(b, "n", 1, 16));
  SamplerParams& s = r.params.sampling;
  if (has(b, "temperature")) s.temperature = float(get_number(b, "temperature", 0, 2));
  if (has(b, "top_p")) s.top_p = float(get_number(b, "top_p", 0, 1));
  if (has(b, "top_k")) s.top_k = int(get_int(b, "top_k", -1, 1 << 30));
  if (has(b, "min_p")) s.min_p = float(get_number(b, "min_p", 0, 1));
  if (has(b, "presence_penalty")) s.presence_penalty = float(get_number(b, "presence_penalty", -2, 2));
  if (has(b, "frequency_penalty")) s.frequency_penalty = float(get_number(b, "frequency_penalty", -2, 2));
  if (has(b, "repeat_penalty")) s.repeat_penalty = float(get_number(b, "repeat_penalty", 0, 10));
  if (has(b, "seed")) {
    const json& v = b["seed"];
    if (!v.is_number_integer()) bad("seed", "'seed' must be an integer");
    s.seed = v.is_number_unsigned() ? v.get<uint64_t>() : uint64_t(v.get<int64_t>());
  } else {
    s.seed = std::random_device{}();
  }
  if (has(b, "max_tokens")) r.params.max_tokens = int(get_int(b, "max_tokens", 1, 1 << 24));
  if (has(b, "max_completion_tokens")) r.params.max_tokens = int(get_int(b, "max_completion_tokens", 1, 1 << 24));
  if (has(b, "stop")) {
    const json& st = b["stop"];
    if (st.is_string()) {
      r.params.stop.push_back(st.get<std::string>());
    } else if (st.is_array()) {
      if (st.size() > 16) bad("stop", "at most 16 stop sequences");
      for (const json& x : st) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or an array of strings");
        r.params.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or an array of strings");
    }
  }
  if (chat) {
    if (has(b, "logprobs")) r.logprobs = get_bool(b, "logprobs");
    if (has(b, "top_logprobs")) {
      const int k = int(get_int(b, "top_logprobs", 0, 20));
      if (!r.logprobs) bad("top_logprobs", "'top_logprobs' requires 'logprobs': true");
      r.params.top_logprobs = k;
    } else if (r.logprobs) {
      r.params.top_logprobs = 0;
    }
  } else if (has(b, "logprobs")) {
    r.logprobs = true;
    r.params.top_logprobs = int(get_int(b, "logprobs", 0, 20));
  }
  r.params.grammar = parse_constraint(b);
  if (chat && has(b, "tools")) {
    const json& tools = b["tools"];
    if (!tools.is_array()) bad("tools", "'tools' must be an array");
    if (tools.size() > 128) bad("tools", "at most 128 tools");
    std::set<std::string> names;
    for (size_t i = 0; i < tools.size(); ++i) {
      const json& t = tools[i];
      const std::string where = fmt::format("tools[{}]", i);
      if (!t.is_object() || t.value("type", "") != "function" || !t.contains("function") || !t["function"].is_object())
        bad(where, "each tool must be {\"type\": \"function\", \"function\": {...}}");
      const json& fn = t["function"];
      if (!fn.contains("name") || !fn["name"].is_string() || fn["name"].get<std::string>().empty() || fn["name"].get<std::string>().size() > 64)
        bad(where + ".function.name", "a function needs a 'name' of 1 to 64 characters");
      for (char c : fn["name"].get<std::string>())
        if (!std::isalnum((unsigned char)c) && c != '_' && c != '-') bad(where + ".function.name", "function names use a-z, A-Z, 0-9, _ and -");
      if (!names.insert(fn["name"].get<std::string>()).second) bad(where + ".function.name", "two tools have the same name");
      if (fn.contains("parameters") && !fn["parameters"].is_object()) bad(where + ".function.parameters", "'parameters' must be a JSON Schema object");
    }
    r.tools = tools;
  }
  if (chat && has(b, "tool_choice")) {
    const json& tc = b["tool_choice"];
    if (tc.is_string() && (tc == "none" || tc == "auto" || tc == "required")) {
      r.tool_choice = tc.get<std::string>();
    } else if (tc.is_object() && tc.value("type", "") == "function" && tc.contains("function") && tc["function"].is_object() &&
               tc["function"].contains("name") && tc["function"]["name"].is_string()) {
      r.tool_choice = "function";
      r.tool_name = tc["function"]["name"].get<std::string>();
    } else {
      bad("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if ((r.tool_choice == "required" || r.tool_choice == "function") && r.tools.empty())
      bad("tool_choice", "'tool_choice' asks for a call but no 'tools' were given");
  }
  if (chat && has(b, "parallel_tool_calls")) r.parallel_tool_calls = get_bool(b, "parallel_tool_calls");
  if (r.params.grammar && (r.tool_choice == "required" || r.tool_choice == "function"))
    bad("tool_choice", "a required tool call and response_format/grammar cannot both constrain the reply");
  if (has(b, "logit_bias")) {
    const json& lb = b["logit_bias"];
    if (!lb.is_object()) bad("logit_bias", "'logit_bias' must be an object of token id -> bias");
    if (lb.size() > 1024) bad("logit_bias", "at most 1024 entries in 'logit_bias'");
    for (const auto& [key, v] : lb.items()) {
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || (n_vocab > 0 && id >= n_vocab))
        bad("logit_bias", fmt::format("'logit_bias' key '{}' is not a token id of this model{}", key,
                                      n_vocab > 0 ? fmt::format(" (0 to {})", n_vocab - 1) : ""));
      if (!v.is_number() || v.get<double>() < -100 || v.get<double>() > 100)
        bad("logit_bias", fmt::format("'logit_bias' values must be numbers from -100 to 100 (token {})", key));
      s.logit_bias.emplace_back(int32_t(id), float(v.get<double>()));
    }
  }
  if (chat) {
    if (has(b, "chat_template_kwargs")) {
      if (!b["chat_template_kwargs"].is_object()) bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
      r.template_kwargs = b["chat_template_kwargs"];
    }
    if (has(b, "reasoning_effort")) {
      const json& e = b["reasoning_effort"];
      if (!e.is_string() || (e != "low" && e != "medium" && e != "high" && e != "minimal" && e != "none"))
        bad("reasoning_effort", "'reasoning_effort' must be one of none, minimal, low, medium, high");
      r.template_kwargs["reasoning_effort"] = e;
    }
  } else {
    if (has(b, "echo")) r.echo = get_bool(b, "echo");
    if (has(b, "best_of") && get_int(b, "best_of", 1, 16) != 1)
      bad("best_of", "'best_of' other than 1 is not supported (ask for n choices instead)");
    if (has(b, "suffix") && !(b["suffix"].is_string() && b["suffix"].get<std::string>().empty()))
      bad("suffix", "'suffix' (fill in the middle) is not supported");
  }
  // jevons' own: false turns the server's speculative decoding off for this request.
  if (has(b, "speculative")) r.params.speculate = get_bool(b, "speculative");
  if (has(b, "ignore_eos")) r.params.ignore_eos = get_bool(b, "ignore_eos");  // as llama-server: a fixed length
  if (has(b, "max_reasoning_tokens")) r.params.max_reasoning_tokens = int(get_int(b, "max_reasoning_tokens", 0, 1 << 24));
  if (has(b, "max_reasoning_joules")) r.params.max_reasoning_joules = get_number(b, "max_reasoning_joules", 0, 1e12);

  if (chat) {
    if (!b.contains("messages")) bad("messages", "'messages' is required");
    const json& ms = b["messages"];
    if (!ms.is_array() || ms.empty()) bad("messages", "'messages' must be a non-empty array");
    for (size_t i = 0; i < ms.size(); ++i) {
      const json& m = ms[i];
      const std::string where = fmt::format("messages[{}]", i);
      if (!m.is_object()) bad(where, "each message must be an object");
      if (!m.contains("role") || !m["role"].is_string()) bad(where + ".role", "each message needs a string 'role'");
      ChatMessage cm;
      cm.role = m["role"].get<std::string>();
      if (cm.role != "system" && cm.role != "user" && cm.role != "assistant" && cm.role != "developer" && cm.role != "tool")
        bad(where + ".role", fmt::format("unknown role '{}'", cm.role));
      if (cm.role == "developer") cm.role = "system";
      cm.content = content_text(m.contains("content") ? m["content"] : json(), where + ".content");
      if (cm.role == "assistant" && has(m, "tool_calls")) {
        const json& calls = m["tool_calls"];
        if (!calls.is_array()) bad(where + ".tool_calls", "'tool_calls' must be an array");
        cm.tool_calls = json::array();
        for (const json& c : calls) {
          if (!c.is_object() || !c.contains("function") || !c["function"].is_object() || !c["function"].contains("name") ||
              !c["function"]["name"].is_string())
            bad(where + ".tool_calls", "each tool call needs {\"function\": {\"name\", \"arguments\"}}");
          json fn = c["function"];
          // Templates render the arguments as an object (tojson); the wire has a JSON string.
          if (fn.contains("arguments") && fn["arguments"].is_string()) {
            const json a = json::parse(fn["arguments"].get<std::string>(), nullptr, false);
            if (a.is_discarded()) bad(where + ".tool_calls", "a tool call's 'arguments' is not JSON");
            fn["arguments"] = a;
          }
          cm.tool_calls.push_back({{"id", c.value("id", "")}, {"type", "function"}, {"function", fn}});
        }
      }
      if (cm.role == "tool") {
        if (has(m, "tool_call_id")) {
          if (!m["tool_call_id"].is_string()) bad(where + ".tool_call_id", "'tool_call_id' must be a string");
          cm.tool_call_id = m["tool_call_id"].get<std::string>();
        }
        if (has(m, "name") && m["name"].is_string()) cm.name = m["name"].get<std::string>();
      }
      if (has(m, "reasoning_content")) {
        if (!m["reasoning_content"].is_string()) bad(where + ".reasoning_content", "'reasoning_content' must be a string");
        cm.reasoning_content = m["reasoning_content"].get<std::string>();
      }
      r.messages.push_back(std::move(cm));
    }
  } else {
    if (!b.contains("prompt")) bad("prompt", "'prompt' is required");
    const json& p = b["prompt"];
    r.params.split_reasoning = false;
    if (p.is_string()) {
      r.prompt_text = p.get<std::string>();
    } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
      r.prompt_text = p[0].get<std::string>();
    } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
      for (const json& x : p) {
        if (!x.is_number_integer()) bad("prompt", "a token prompt must be an array of integers");
        r.prompt_ids.push_back(int32_t(x.get<int64_t>()));
      }
      r.prompt_is_ids = true;
    } else {
      bad("prompt", "'prompt' must be a string, an array of one string, or an array of token ids");
    }
  }
  return r;
}

json tool_call_json(const std::string& name, const std::string& arguments, int index) {
  json j = {{"id", new_id("call_")}, {"type", "function"}, {"function", {{"name", name}, {"arguments", arguments}}}};
  if (index >= 0) j["index"] = index;
  return j;
}

json error_json(const std::string& message, const std::string& type, const std::string& param, const std::string& code) {
  return json{{"error",
               {{"message", message},
                {"type", type},
                {"param", param.empty() ? json(nullptr) : json(param)},
                {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

json error_json(const ApiError& e) { return error_json(e.what(), e.type, e.param, e.code); }

json energy_json(const meter::EnergyReport& r) {
  return json{{"joules", r.total_j},
              {"source", r.estimated ? "estimated" : "measured"},
              {"meter", r.source},
              {"prefill_joules", r.prefill.joules},
              {"decode_joules", r.decode.joules},
              {"tokens_per_joule", r.tokens_per_j},
              {"cost_usd", r.cost_usd},
              {"co2_g", r.co2_g}};
}

ApiError api_error(const engine::RequestError& e) {
  switch (e.kind) {
    case engine::RequestError::Kind::kBusy: return ApiError(429, "rate_limit_error", e.what(), e.param, e.code);
    case engine::RequestError::Kind::kUnavailable: return ApiError(503, "server_error", e.what(), e.param, e.code);
    case engine::RequestError::Kind::kInvalid: break;
  }
  return ApiError(400, "invalid_request_error", e.what(), e.param, e.code);
}

json usage_json(int prompt_tokens, int cached_tokens, double cached_saved_j, const std::vector<SequenceResult>& choices,
                const meter::EnergyReport& energy) {
  int completion = 0, reasoning = 0, drafted = 0, accepted = 0;
  for (const SequenceResult& c : choices) {
    completion += c.completion_tokens;
    reasoning += c.reasoning_tokens;
    drafted += c.drafted_tokens;
    accepted += c.accepted_tokens;
  }
  json e = energy_json(energy);
  // What the prefix cache saved: not measured (those tokens were not computed), so an
  // estimate at this run's prefill joules per token, labelled as one.
  e["cached_prompt_joules_saved"] = cached_saved_j;
  e["cached_prompt_joules_saved_estimated"] = true;
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion},
              {"total_tokens", prompt_tokens + completion},
              {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}},
              // Speculative decoding's proposals, in the fields OpenAI's Predicted Outputs use.
              {"completion_tokens_details",
               {{"reasoning_tokens", reasoning},
                {"accepted_prediction_tokens", accepted},
                {"rejected_prediction_tokens", drafted - accepted}}},
              {"energy", e}};
}

static json bytes_of(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(int(c));
  return a;
}

// Token pieces may be fragments of UTF-8 characters; JSON needs valid UTF-8.
static std::string safe_text(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace).size() ? json::parse(json(s).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>() : s;
}

json chat_logprob_json(const TokenLogprob& lp) {
  json top = json::array();
  for (const auto& [t, l] : lp.top) top.push_back(json{{"token", safe_text(t)}, {"logprob", l}, {"bytes", bytes_of(t)}});
  return json{{"token", safe_text(lp.token)}, {"logprob", lp.logprob}, {"bytes", bytes_of(lp.token)}, {"top_logprobs", top}};
}

std::string new_id(const std::string& prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}", prefix, rng());
}

}  // namespace jevons::server

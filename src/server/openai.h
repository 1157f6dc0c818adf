// The OpenAI wire format: request bodies to generation parameters (with the type
// checks that make a malformed request a 400), and responses, streaming chunks,
// usage (with jevons' energy) and errors as JSON.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "meter/meter.h"
#include "engine/scheduler.h"
#include "tokenizer/chat_template.h"

namespace jevons::server {

using engine::GenParams;
using engine::SequenceResult;
using engine::TokenLogprob;

// An error with the HTTP status and OpenAI error type it maps to.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, const std::string& msg, std::string param = "", std::string code = "")
      : std::runtime_error(msg), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string type, param, code;
};

// The status and type of a request the engine refused.
ApiError api_error(const engine::RequestError& e);

struct ParsedRequest {
  bool chat = false;
  std::string model;  // as sent ("" if absent)
  bool stream = false, include_usage = false;
  int n = 1;
  bool logprobs = false;
  GenParams params;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt_text;            // completions: a string prompt
  std::vector<int32_t> prompt_ids;    // completions: a token-id prompt
  bool prompt_is_ids = false;
  bool echo = false;                  // completions: the prompt comes back before the completion
  nlohmann::json template_kwargs = nlohmann::json::object();  // chat_template_kwargs (+ reasoning_effort)
  // Tool use (chat): the functions offered, and tool_choice: "none", "auto", "required"
  // or "function" (tool_name: the one it must call).
  nlohmann::json tools = nlohmann::json::array();
  std::string tool_choice = "auto", tool_name;
  bool parallel_tool_calls = true;
  bool tools_active() const { return !tools.empty() && tool_choice != "none"; }
};

// A tool call of a response: {"id", "type": "function", "function": {"name", "arguments"}}.
nlohmann::json tool_call_json(const std::string& name, const std::string& arguments, int index = -1);

// Throws ApiError(400) naming the offending parameter: a malformed value, and any
// parameter that would change the output and that jevons does not implement (rather
// than answering 200 as if it had). Parameters that change nothing here (user,
// metadata, store, llama-server's cache_prompt, ...) are accepted. n_vocab: for
// logit_bias's token ids (0: not checked).
ParsedRequest parse_request(const nlohmann::json& body, bool chat, int32_t n_vocab = 0);
// Parses the body text first (malformed JSON -> 400).
ParsedRequest parse_request(const std::string& body, bool chat, int32_t n_vocab = 0);

nlohmann::json error_json(const std::string& message, const std::string& type, const std::string& param = "",
                          const std::string& code = "");
nlohmann::json error_json(const ApiError& e);

// usage with prompt_tokens_details.cached_tokens, completion_tokens_details.reasoning_tokens
// and energy; cached_saved_j: the joules the cached prompt tokens would have cost
// (an estimate at this run's measured prefill joules per token).
nlohmann::json usage_json(int prompt_tokens, int cached_tokens, double cached_saved_j, const std::vector<SequenceResult>& choices,
                          const meter::EnergyReport& energy);
nlohmann::json energy_json(const meter::EnergyReport& r);
// OpenAI's chat logprobs entry {"token","logprob","bytes","top_logprobs"}.
nlohmann::json chat_logprob_json(const TokenLogprob& lp);

std::string new_id(const std::string& prefix);

}  // namespace jevons::server

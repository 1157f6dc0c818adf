// Tool calls: each family's format read out of replies (handwritten, including broken
// ones, which must come back as text), and the grammar that forces a call.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/tool_calls.h"
#include "runtime/grammar.h"

namespace jevons::engine {
namespace {

using nlohmann::json;

const std::set<std::string> kNames = {"get_weather", "add"};

TEST(ToolCalls, Hermes) {
  const auto r = parse_tool_calls(ToolFormat::kHermes,
                                  "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
                                  "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>",
                                  kNames);
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(r.calls[0].arguments), json({{"city", "Paris"}}));
  EXPECT_EQ(json::parse(r.calls[1].arguments), json({{"a", 1}, {"b", 2}}));
  EXPECT_EQ(r.content.find("Let me check."), 0u);
  // Arguments given as a JSON string are accepted too.
  EXPECT_EQ(parse_tool_calls(ToolFormat::kHermes, "<tool_call>{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>", kNames)
                .calls.size(),
            1u);
  // Broken: every one of these is text, not a call.
  for (const char* bad : {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }\n</tool_call>",
                          "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>",  // not offered
                          "<tool_call>{\"name\": \"add\", \"arguments\": {}}",                 // unclosed
                          "<tool_call>[1, 2]</tool_call>", "no call at all"}) {
    const auto b = parse_tool_calls(ToolFormat::kHermes, bad, kNames);
    EXPECT_TRUE(b.calls.empty()) << bad;
    EXPECT_EQ(b.content, bad);
  }
}

TEST(ToolCalls, Llama3) {
  auto r = parse_tool_calls(ToolFormat::kLlama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", kNames);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(json::parse(r.calls[0].arguments)["city"], "Oslo");
  r = parse_tool_calls(ToolFormat::kLlama3,
                       "<|python_tag|>{\"name\": \"add\", \"parameters\": {\"a\": \"x;y\"}}; {\"name\": \"add\", \"parameters\": {\"a\": 2}}", kNames);
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(json::parse(r.calls[0].arguments)["a"], "x;y");  // a ';' inside a string is not a separator
  for (const char* bad : {"{\"name\": \"add\", \"parameters\": {\"a\": }", "The answer is {1}.", "{\"foo\": 1}"})
    EXPECT_TRUE(parse_tool_calls(ToolFormat::kLlama3, bad, kNames).calls.empty()) << bad;
}

TEST(ToolCalls, DeepSeek) {
  const std::string reply =
      "I will look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Rome\"}\n```"
      "<｜tool▁call▁end｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{\"a\": 1}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  const auto r = parse_tool_calls(ToolFormat::kDeepSeek, reply, kNames);
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(r.calls[1].arguments)["a"], 1);
  EXPECT_EQ(r.content, "I will look.");
  EXPECT_TRUE(parse_tool_calls(ToolFormat::kDeepSeek, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{oops}\n```<｜tool▁call▁end｜>", kNames)
                  .calls.empty());
}

TEST(ToolCalls, FormatOfTemplateAndHoldingBack) {
  EXPECT_EQ(tool_format_of_template("{%- if tools %}<tool_call>{% endif %}"), ToolFormat::kHermes);
  EXPECT_EQ(tool_format_of_template("<｜tool▁calls▁begin｜>"), ToolFormat::kDeepSeek);
  EXPECT_EQ(tool_format_of_template("<|start_header_id|>ipython<|end_header_id|>"), ToolFormat::kLlama3);
  EXPECT_EQ(tool_call_start(ToolFormat::kHermes, "Sure, <tool_call>{"), 6u);
  EXPECT_EQ(tool_call_start(ToolFormat::kHermes, "Sure, <tool_"), 6u);  // may become the marker
  EXPECT_EQ(tool_call_start(ToolFormat::kHermes, "a < b"), std::string::npos);
  EXPECT_EQ(tool_call_start(ToolFormat::kLlama3, "  {\"name\""), 2u);
}

TEST(ToolCalls, GrammarForcesAValidCall) {
  const json tools = json::parse(R"([
    {"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},
      "unit":{"enum":["c","f"]}},"required":["city"]}}},
    {"type":"function","function":{"name":"add","parameters":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},
      "required":["a","b"]}}}])");
  struct Case {
    ToolFormat f;
    std::string text;
  };
  for (const Case& c : std::vector<Case>{
           {ToolFormat::kHermes, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"},
           {ToolFormat::kLlama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\", \"unit\": \"c\"}}"},
           {ToolFormat::kDeepSeek, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n{\"a\": 1, \"b\": 2}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"}}) {
    GrammarMatcher m(Grammar::parse(tool_call_grammar(c.f, tools, "", true)));
    EXPECT_TRUE(m.advance(c.text) && m.can_end()) << tool_format_name(c.f);
    EXPECT_EQ(parse_tool_calls(c.f, c.text, kNames).calls.size(), 1u);
  }
  // Named: only that function; its required arguments must be there.
  GrammarMatcher only_add(Grammar::parse(tool_call_grammar(ToolFormat::kHermes, tools, "add", false)));
  EXPECT_FALSE(only_add.accepts("<tool_call>\n{\"name\": \"get_weather\""));
  EXPECT_FALSE(GrammarMatcher(Grammar::parse(tool_call_grammar(ToolFormat::kHermes, tools, "add", false)))
                   .accepts("<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1}}"));
  EXPECT_THROW(tool_call_grammar(ToolFormat::kHermes, tools, "missing", false), jevons::Error);
}

}  // namespace
}  // namespace jevons::engine

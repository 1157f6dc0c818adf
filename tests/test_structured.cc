// Structured output: JSON Schema -> grammar, enforced while sampling. The golden
// models have random weights and follow no instruction, so every valid output here
// is the constraint's doing: for 100 seeds per schema, the output parses and
// validates, and it is closed within the token budget.
#include <gtest/gtest.h>

#include <regex>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/json_schema.h"
#include "formats/gguf.h"
#include "formats/hf_model.h"
#include "meter/config.h"
#include "model/model.h"
#include "runtime/grammar.h"
#include "test_util.h"

namespace jevons {
namespace {

using nlohmann::json;

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// A validator for the JSON Schema subset json_schema.h supports (what the test needs
// to decide, written apart from the converter).
bool valid(const json& v, const json& s, const json& root, std::string* why);

bool valid_ref(const json& v, const std::string& ref, const json& root, std::string* why) {
  if (ref == "#") return valid(v, root, root, why);
  const std::string defs = ref.rfind("#/$defs/", 0) == 0 ? "$defs" : "definitions";
  return valid(v, root[defs][ref.substr(ref.rfind('/') + 1)], root, why);
}

bool valid(const json& v, const json& s, const json& root, std::string* why) {
  auto no = [&](const std::string& w) {
    *why = w + " at " + v.dump();
    return false;
  };
  if (s.contains("$ref")) return valid_ref(v, s["$ref"], root, why);
  if (s.contains("const") && v != s["const"]) return no("not the const");
  if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) return no("not in the enum");
  for (const char* key : {"anyOf", "oneOf"})
    if (s.contains(key)) {
      for (const json& alt : s[key])
        if (valid(v, alt, root, why)) return true;
      return no(std::string("no ") + key + " alternative");
    }
  if (s.contains("type")) {
    std::vector<std::string> types;
    if (s["type"].is_array()) types = s["type"].get<std::vector<std::string>>();
    else types.push_back(s["type"]);
    bool any = false;
    for (const std::string& t : types)
      any = any || (t == "object" && v.is_object()) || (t == "array" && v.is_array()) || (t == "string" && v.is_string()) ||
            (t == "integer" && v.is_number_integer()) || (t == "number" && v.is_number()) || (t == "boolean" && v.is_boolean()) ||
            (t == "null" && v.is_null());
    if (!any) return no("wrong type");
  }
  if (v.is_object()) {
    for (const auto& r : s.value("required", json::array()))
      if (!v.contains(r.get<std::string>())) return no("missing " + r.dump());
    const json props = s.value("properties", json::object());
    for (const auto& [k, x] : v.items()) {
      if (props.contains(k)) {
        if (!valid(x, props[k], root, why)) return false;
      } else if (s.contains("additionalProperties")) {
        const json& ap = s["additionalProperties"];
        if (ap.is_boolean() ? !ap.get<bool>() : !valid(x, ap, root, why)) return no("extra property " + k);
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return no("too few items");
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return no("too many items");
    if (s.contains("items"))
      for (const json& x : v)
        if (!valid(x, s["items"], root, why)) return false;
  }
  if (v.is_string()) {
    const std::string str = v.get<std::string>();
    if (s.contains("minLength") && code_points(str) < s["minLength"].get<size_t>()) return no("too short");
    if (s.contains("maxLength") && code_points(str) > s["maxLength"].get<size_t>()) return no("too long");
    if (s.contains("pattern") && !std::regex_search(str, std::regex(s["pattern"].get<std::string>()))) return no("pattern");
    if (s.value("format", "") == "date" && !std::regex_match(str, std::regex(R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))")))
      return no("not a date");
  }
  if (v.is_number()) {
    if (s.contains("minimum") && v.get<double>() < s["minimum"].get<double>()) return no("below minimum");
    if (s.contains("maximum") && v.get<double>() > s["maximum"].get<double>()) return no("above maximum");
  }
  return true;
}

class Structured : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = test::shared_dir() + "/golden/qwen2/gguf/model-q8_0.gguf";
    src_ = open_model_source(path).release();
    model_ = load_model(*src_).release();
    tok_ = Tokenizer::from_gguf(*src_).release();
    threads_ = new ThreadPool(2);
    model_->set_thread_pool(threads_);
    meter::Overrides mo;
    mo.values["energy_source"] = "estimate";
    meter_ = new meter::Meter(meter::resolve_config(mo));
  }

  // The outputs of `seeds` sequences (temperature 1: the model's own randomness).
  static std::vector<engine::SequenceResult> generate(const std::shared_ptr<const Grammar>& g, int seeds, int max_tokens,
                                                      std::vector<std::string>* texts) {
    engine::EngineOptions eo;
    eo.parallel = 16;
    eo.n_ctx = 256;
    eo.kv_budget_bytes = 16 * 256 * model_->config().kv_bytes_per_token(eo.kv_type);
    engine::Engine eng(*model_, *tok_, *meter_, eo);
    std::vector<engine::SequenceResult> results(static_cast<size_t>(seeds));
    texts->assign(size_t(seeds), "");
    for (int i = 0; i < seeds; ++i) {
      engine::GenParams p;
      p.sampling.temperature = 1.0f;  // top-k 40, top-p 0.95, min-p 0.05 as run's defaults
      p.sampling.seed = uint64_t(i) + 1;
      p.max_tokens = max_tokens;
      p.split_reasoning = false;
      p.grammar = g;
      engine::SequenceSink sink;
      sink.on_delta = [texts, i](engine::Delta&& d) { (*texts)[size_t(i)] += d.content; };
      sink.on_finish = [&results, i](engine::SequenceResult&& r) { results[size_t(i)] = std::move(r); };
      eng.add(std::make_unique<engine::Sequence>(tok_->encode("The answer:", false), p, *tok_, std::move(sink)));
    }
    eng.run_until_idle();
    return results;
  }

  static inline ModelSource* src_ = nullptr;
  static inline Model* model_ = nullptr;
  static inline Tokenizer* tok_ = nullptr;
  static inline ThreadPool* threads_ = nullptr;
  static inline meter::Meter* meter_ = nullptr;
};

TEST_F(Structured, EverySeedParsesAndValidates) {
  const std::vector<json> schemas = {
      // nested objects, required and optional
      json::parse(R"({"type":"object","properties":{"name":{"type":"string","maxLength":10},"age":{"type":"integer","minimum":0},
        "address":{"type":"object","properties":{"city":{"type":"string","minLength":1,"maxLength":8},"zip":{"type":"string","pattern":"^[0-9]{5}$"}},
        "required":["city"],"additionalProperties":false}},"required":["name","address"],"additionalProperties":false})"),
      // arrays of objects with bounds, enums
      json::parse(R"({"type":"array","minItems":1,"maxItems":3,"items":{"type":"object","properties":{
        "color":{"enum":["red","green","blue"]},"count":{"type":"integer","minimum":1,"maximum":12}},"required":["color","count"]}})"),
      // const, booleans, null, type lists, anyOf, dates, numbers
      json::parse(R"({"type":"object","properties":{"kind":{"const":"event"},"ok":{"type":"boolean"},"note":{"type":["string","null"],"maxLength":6},
        "id":{"anyOf":[{"type":"integer"},{"type":"string","format":"uuid"}]},"day":{"type":"string","format":"date"},
        "score":{"type":"number","minimum":0}},"required":["kind","ok","note","id","day","score"]})"),
      // recursion through $defs
      json::parse(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer","minimum":0,"maximum":9},
        "kids":{"type":"array","maxItems":2,"items":{"$ref":"#/$defs/node"}}},"required":["v"]}},"$ref":"#/$defs/node"})"),
      // a map of string lists
      json::parse(R"({"type":"object","additionalProperties":{"type":"array","items":{"type":"string","maxLength":4},"maxItems":2}})"),
  };
  for (size_t k = 0; k < schemas.size(); ++k) {
    const auto g = Grammar::parse(engine::json_schema_to_gbnf(schemas[k]));
    std::vector<std::string> texts;
    const auto results = generate(g, 100, 120, &texts);
    int stopped = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      json v;
      ASSERT_NO_THROW(v = json::parse(texts[i])) << "schema " << k << " seed " << i + 1 << ": " << texts[i] << " ("
                                                 << results[i].detail << ") raw " << json(tok_->decode(results[i].tokens)).dump(-1, ' ', true, json::error_handler_t::replace);
      std::string why;
      EXPECT_TRUE(valid(v, schemas[k], schemas[k], &why)) << "schema " << k << " seed " << i + 1 << ": " << why;
      stopped += results[i].finish_reason == "stop";
    }
    EXPECT_EQ(stopped, 100) << "schema " << k << ": every output ends by the grammar, not by the budget";
  }
}

TEST_F(Structured, JsonObjectAndGbnfAlwaysMatch) {
  std::vector<std::string> texts;
  // A budget of 40 tokens: free-form JSON is closed in time.
  const auto results = generate(Grammar::parse(engine::json_object_grammar()), 100, 40, &texts);
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& t = texts[i];
    json v;
    ASSERT_NO_THROW(v = json::parse(t)) << t << " (" << results[i].detail << ", " << results[i].completion_tokens << " tokens)";
    EXPECT_TRUE(v.is_object());
  }
  const std::string date = "root ::= [0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])";
  generate(Grammar::parse(date), 100, 20, &texts);
  for (const std::string& t : texts) EXPECT_TRUE(std::regex_match(t, std::regex(R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))"))) << t;
  generate(Grammar::parse("root ::= word \" \" word \" \" word\nword ::= [a-z]{1,8}"), 100, 30, &texts);
  for (const std::string& t : texts) EXPECT_TRUE(std::regex_match(t, std::regex("[a-z]{1,8} [a-z]{1,8} [a-z]{1,8}"))) << t;
}

TEST(JsonSchema, UnsupportedFeaturesAreNamed) {
  auto error_of = [](const char* schema) {
    try {
      Grammar::parse(engine::json_schema_to_gbnf(json::parse(schema)));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of(R"({"type":"object","patternProperties":{"a":{}}})").find("'patternProperties'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"array","uniqueItems":true})").find("'uniqueItems'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"integer","minimum":5})").find("minimum other than 0 or 1"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"string","pattern":"abc"})").find("anchored"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"string","pattern":"^(?=a)b$"})").find("lookarounds"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"array","minItems":3,"maxItems":1})").find("accepts no array"), std::string::npos);
  EXPECT_NE(error_of(R"({"enum":[]})").find("non-empty"), std::string::npos);
  EXPECT_NE(error_of(R"({"$ref":"#/$defs/missing"})").find("does not name"), std::string::npos);
  EXPECT_NE(error_of(R"({"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})").find("accepts no output"), std::string::npos);
  EXPECT_NE(error_of(R"({"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}},"$ref":"#/$defs/a"})").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"object","properties":{"a":{"type":"object","required":["x"],"properties":{"x":false}}}})").find("false"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"type":7})").find("wrong type"), std::string::npos);
  // Deep nesting fails fast.
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += R"({"type":"array","items":)";
  deep += "{}" + std::string(200, '}');
  EXPECT_NE(error_of(deep.c_str()).find("deeper than 64"), std::string::npos);
  // A huge enum is refused, not compiled for minutes.
  json big = {{"enum", json::array()}};
  for (int i = 0; i < 20000; ++i) big["enum"].push_back(i);
  EXPECT_NE(error_of(big.dump().c_str()).find("10000"), std::string::npos);
  // Annotations are fine.
  EXPECT_EQ(error_of(R"({"title":"t","description":"d","type":"string","examples":["x"],"default":"y"})"), "");
}

}  // namespace
}  // namespace jevons

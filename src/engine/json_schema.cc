#include "engine/json_schema.h"

#include <array>
#include <map>
#include <set>
#include <vector>

#include "core/error.h"

namespace jevons::engine {
namespace {

// The JSON primitives, as llama.cpp's json.gbnf (whitespace bounded, so that a model
// cannot pad forever; integers of at most 16 digits).
const std::map<std::string, std::string>& primitives() {
  static const std::map<std::string, std::string> p = {
      {"ws", R"(| " " | "\n" [ \t]{0,20})"},
      {"char", R"([^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}))"},
      {"string", R"("\"" %char* "\"" %ws)"},
      {"integer", R"("-"? ([0-9] | [1-9] [0-9]{0,15}) %ws)"},
      {"number", R"("-"? ([0-9] | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})? %ws)"},
      {"boolean", R"(("true" | "false") %ws)"},
      {"null", R"("null" %ws)"},
      {"value", R"(%object | %array | %string | %number | %boolean | %null)"},
      {"object", R"("{" %ws ( %string ":" %ws %value ( "," %ws %string ":" %ws %value )* )? "}" %ws)"},
      {"array", R"("[" %ws ( %value ( "," %ws %value )* )? "]" %ws)"},
      {"nonneg-integer", R"(([0-9] | [1-9] [0-9]{0,15}) %ws)"},
      {"positive-integer", R"([1-9] [0-9]{0,15} %ws)"},
      {"nonneg-number", R"(([0-9] | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})? %ws)"},
      {"date-body", R"([0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]))"},
      {"time-body", R"(([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]))"},
      {"uuid-body", R"([0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12})"},
  };
  return p;
}

// What each primitive uses.
const std::map<std::string, std::vector<std::string>>& primitive_deps() {
  static const std::map<std::string, std::vector<std::string>> d = {
      {"string", {"char", "ws"}},       {"integer", {"ws"}},          {"number", {"ws"}},
      {"boolean", {"ws"}},              {"null", {"ws"}},             {"value", {"object", "array", "string", "number", "boolean", "null"}},
      {"object", {"ws", "string", "value"}}, {"array", {"ws", "value"}}, {"nonneg-integer", {"ws"}},
      {"positive-integer", {"ws"}},     {"nonneg-number", {"ws"}},
  };
  return d;
}

// A GBNF string literal of raw bytes.
std::string literal(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += char(c);
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02X}", c);
    else out += char(c);
  }
  return out + "\"";
}

const std::set<std::string>& annotations() {
  static const std::set<std::string> a = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                                          "deprecated", "readOnly", "writeOnly", "$anchor", "strict"};
  return a;
}

const std::set<std::string>& handled() {
  static const std::set<std::string> h = {"type", "properties", "required", "additionalProperties", "items", "minItems",
                                          "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
                                          "definitions", "minLength", "maxLength", "pattern", "format", "minimum",
                                          "maximum", "exclusiveMinimum", "exclusiveMaximum", "nullable"};
  return h;
}

class Converter {
 public:
  Converter(const nlohmann::json& root, std::string prefix) : root_(root), prefix_(std::move(prefix)) {}

  std::string convert() {
    const std::string top = visit(root_, "#", 0);
    std::string out = prefix_ + "root ::= " + top + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    // Primitives used, with what they use.
    std::vector<std::string> todo(used_.begin(), used_.end());
    std::set<std::string> done;
    while (!todo.empty()) {
      const std::string p = todo.back();
      todo.pop_back();
      if (!done.insert(p).second) continue;
      std::string body = primitives().at(p);
      for (size_t at = body.find('%'); at != std::string::npos; at = body.find('%', at + prefix_.size()))
        body.replace(at, 1, prefix_);
      out += prefix_ + p + " ::= " + body + "\n";
      if (auto it = primitive_deps().find(p); it != primitive_deps().end())
        for (const std::string& d : it->second) todo.push_back(d);
    }
    return out;
  }

 private:
  [[noreturn]] static void unsupported(const std::string& path, const std::string& what) {
    fail("JSON schema at {}: {} is not supported", path, what);
  }

  std::string use(const std::string& primitive) {
    used_.insert(primitive);
    return prefix_ + primitive;
  }

  std::string add_rule(const std::string& hint, const std::string& body) {
    std::string base;
    for (char c : hint) base += std::isalnum((unsigned char)c) ? char(std::tolower((unsigned char)c)) : '-';
    if (base.empty() || !std::isalpha((unsigned char)base[0])) base = "r" + base;
    std::string name = prefix_ + base + "-" + std::to_string(rules_.size());
    rules_.emplace_back(name, body);
    return name;
  }

  std::string visit(const nlohmann::json& s, const std::string& path, int depth) {
    if (depth > 64) unsupported(path, "nesting deeper than 64 levels");
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail("JSON schema at {}: `false` accepts no value", path);
      return use("value");
    }
    if (!s.is_object()) fail("JSON schema at {}: a schema must be an object or a boolean", path);
    for (const auto& [k, v] : s.items())
      if (!handled().count(k) && !annotations().count(k))
        fail("JSON schema at {}: the keyword '{}' is not supported (it would constrain the output in a way the grammar "
             "does not enforce)",
             path, k);
    std::string expr = visit_inner(s, path, depth);
    if (s.value("nullable", false)) expr = "(" + expr + " | " + use("null") + ")";
    return expr;
  }

  std::string visit_inner(const nlohmann::json& s, const std::string& path, int depth) {
    if (s.contains("$ref")) return ref(s["$ref"], path, depth);
    if (s.contains("const")) return literal(s["const"].dump()) + " " + use("ws");
    if (s.contains("enum")) {
      const auto& e = s["enum"];
      if (!e.is_array() || e.empty()) fail("JSON schema at {}: enum must be a non-empty array", path);
      if (e.size() > 10000) unsupported(path, "an enum of more than 10000 values");
      std::string alts;
      for (const auto& v : e) alts += (alts.empty() ? "" : " | ") + literal(v.dump());
      return "(" + alts + ") " + use("ws");
    }
    for (const char* key : {"anyOf", "oneOf"})
      if (s.contains(key)) {
        const auto& list = s[key];
        if (!list.is_array() || list.empty()) fail("JSON schema at {}: {} must be a non-empty array", path, key);
        std::string alts;
        for (size_t i = 0; i < list.size(); ++i)
          alts += (alts.empty() ? "" : " | ") + visit(list[i], fmt::format("{}/{}/{}", path, key, i), depth + 1);
        return "(" + alts + ")";
      }
    if (s.contains("allOf")) {
      const auto& list = s["allOf"];
      if (!list.is_array() || list.size() != 1) unsupported(path, "allOf of more than one schema");
      return visit(list[0], path + "/allOf/0", depth + 1);
    }
    if (s.contains("type") && s["type"].is_array()) {
      std::string alts;
      for (const auto& t : s["type"]) {
        nlohmann::json one = s;
        one["type"] = t;
        alts += (alts.empty() ? "" : " | ") + visit_inner(one, path, depth);
      }
      if (alts.empty()) fail("JSON schema at {}: type is an empty list", path);
      return "(" + alts + ")";
    }
    std::string type = s.contains("type") ? s["type"].get<std::string>()
                       : s.contains("properties")    ? "object"
                       : s.contains("items")         ? "array"
                                                     : "";
    if (type.empty()) return use("value");
    if (type == "object") return object(s, path, depth);
    if (type == "array") return array(s, path, depth);
    if (type == "string") return string(s, path);
    if (type == "integer") return integer(s, path);
    if (type == "number") return number(s, path);
    if (type == "boolean") return use("boolean");
    if (type == "null") return use("null");
    fail("JSON schema at {}: unknown type '{}'", path, type);
  }

  std::string ref(const nlohmann::json& r, const std::string& path, int depth) {
    if (!r.is_string()) fail("JSON schema at {}: $ref must be a string", path);
    const std::string target = r.get<std::string>();
    if (auto it = refs_.find(target); it != refs_.end()) return it->second;
    const nlohmann::json* s = nullptr;
    if (target == "#") {
      s = &root_;
    } else {
      for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
        const std::string p = prefix;
        if (target.rfind(p, 0) == 0) {
          const std::string key = p.substr(2, p.size() - 3), name = target.substr(p.size());
          if (root_.contains(key) && root_[key].contains(name)) s = &root_[key][name];
        }
      }
      if (!s) fail("JSON schema at {}: $ref '{}' does not name #, #/$defs/NAME or #/definitions/NAME of this schema", path, target);
    }
    // A rule of its own, named before it is visited, so that recursion refers to it.
    const std::string name = add_rule(target.substr(target.rfind('/') + 1), "");
    refs_[target] = name;
    const std::string body = visit(*s, target, depth + 1);
    for (auto& [n, b] : rules_)
      if (n == name) b = body;
    return name;
  }

  std::string object(const nlohmann::json& s, const std::string& path, int depth) {
    const std::string ws = use("ws");
    if (!s.contains("properties") || s["properties"].empty()) {
      if (s.contains("required") && !s["required"].empty())
        fail("JSON schema at {}: required properties must be described under properties", path);
      const auto ap = s.value("additionalProperties", nlohmann::json(true));
      if (ap.is_boolean() && !ap.get<bool>()) return "\"{\" " + ws + " \"}\" " + ws;
      const std::string value = ap.is_boolean() ? use("value") : visit(ap, path + "/additionalProperties", depth + 1);
      const std::string kv = use("string") + " \":\" " + ws + " " + value;
      return "\"{\" " + ws + " ( " + kv + " ( \",\" " + ws + " " + kv + " )* )? \"}\" " + ws;
    }
    const auto& props = s["properties"];
    if (!props.is_object()) fail("JSON schema at {}: properties must be an object", path);
    std::set<std::string> required;
    if (s.contains("required")) {
      for (const auto& r : s["required"]) {
        if (!r.is_string() || !props.contains(r.get<std::string>()))
          fail("JSON schema at {}: required property {} is not under properties", path, r.dump());
        required.insert(r.get<std::string>());
      }
    }
    // nlohmann::json keeps keys sorted; the schema's own order is lost on parsing, so
    // properties come in key order (any order is valid JSON for the schema).
    std::vector<std::pair<std::string, std::string>> kvs;  // (name, "key": value)
    for (const auto& [name, sub] : props.items()) {
      const std::string value = visit(sub, path + "/properties/" + name, depth + 1);
      kvs.emplace_back(name, literal(nlohmann::json(name).dump()) + " " + ws + " \":\" " + ws + " " + value);
    }
    // rest(i, first): the properties from i on; `first`: no comma before the next.
    std::vector<std::array<std::string, 2>> rest(kvs.size() + 1);
    for (size_t i = kvs.size() + 1; i-- > 0;)
      for (int first = 0; first < 2; ++first) {
        if (i == kvs.size()) {
          rest[i][size_t(first)] = "";
          continue;
        }
        const std::string lead = first ? "" : "\",\" " + ws + " ";
        const std::string take = lead + kvs[i].second + (rest[i + 1][0].empty() ? "" : " " + rest[i + 1][0]);
        std::string body = take;
        if (!required.count(kvs[i].first)) body = "(" + take + ")" + (rest[i + 1][size_t(first)].empty() ? "?" : " | " + rest[i + 1][size_t(first)]);
        rest[i][size_t(first)] = add_rule(path + "-" + kvs[i].first, body);
      }
    return "\"{\" " + ws + " " + rest[0][1] + " \"}\" " + ws;
  }

  std::string array(const nlohmann::json& s, const std::string& path, int depth) {
    const std::string ws = use("ws");
    const std::string item = s.contains("items") ? visit(s["items"], path + "/items", depth + 1) : use("value");
    const int64_t min = s.value("minItems", int64_t(0)), max = s.value("maxItems", int64_t(-1));
    if (min < 0 || min > 1000 || max > 1000) unsupported(path, "minItems/maxItems above 1000");
    if (max >= 0 && max < min) fail("JSON schema at {}: maxItems < minItems accepts no array", path);
    const std::string more = "\",\" " + ws + " " + item;
    std::string body;
    if (max == 0) {
      body = "";
    } else if (min >= 1) {
      body = item + " (" + more + ")" + (max < 0 ? fmt::format("{{{},}}", min - 1) : fmt::format("{{{},{}}}", min - 1, max - 1));
    } else {
      body = "(" + item + " (" + more + ")" + (max < 0 ? "*" : fmt::format("{{0,{}}}", max - 1)) + ")?";
    }
    return "\"[\" " + ws + " " + (body.empty() ? "" : add_rule(path + "-items", body) + " ") + "\"]\" " + ws;
  }

  std::string string(const nlohmann::json& s, const std::string& path) {
    const std::string ws = use("ws");
    if (s.contains("pattern")) {
      if (s.contains("minLength") || s.contains("maxLength") || s.contains("format"))
        unsupported(path, "pattern together with minLength/maxLength/format");
      return "\"\\\"\" " + add_rule(path + "-pattern", pattern(s["pattern"].get<std::string>(), path)) + " \"\\\"\" " + ws;
    }
    if (s.contains("format")) {
      const std::string f = s["format"].get<std::string>();
      const std::string body = f == "date"        ? use("date-body")
                               : f == "time"      ? use("time-body")
                               : f == "date-time" ? use("date-body") + " \"T\" " + use("time-body")
                               : f == "uuid"      ? use("uuid-body")
                                                  : "";
      if (!body.empty()) {
        if (s.contains("minLength") || s.contains("maxLength")) unsupported(path, "format together with minLength/maxLength");
        return "\"\\\"\" " + body + " \"\\\"\" " + ws;
      }
    }
    const int64_t min = s.value("minLength", int64_t(0)), max = s.value("maxLength", int64_t(-1));
    if (min < 0 || min > 10000 || max > 10000) unsupported(path, "minLength/maxLength above 10000");
    if (max >= 0 && max < min) fail("JSON schema at {}: maxLength < minLength accepts no string", path);
    if (min == 0 && max < 0) return use("string");
    return "\"\\\"\" " + use("char") + (max < 0 ? fmt::format("{{{},}}", min) : fmt::format("{{{},{}}}", min, max)) + " \"\\\"\" " + ws;
  }

  static bool has_number(const nlohmann::json& s, const char* k) { return s.contains(k) && s[k].is_number(); }

  std::string integer(const nlohmann::json& s, const std::string& path) {
    const bool lo = has_number(s, "minimum"), hi = has_number(s, "maximum");
    if (s.contains("exclusiveMaximum")) unsupported(path, "exclusiveMaximum");
    if (s.contains("exclusiveMinimum")) {
      if (lo || hi || s["exclusiveMinimum"] != 0) unsupported(path, "exclusiveMinimum other than 0 (alone)");
      return use("positive-integer");
    }
    if (lo && hi) {
      const int64_t a = s["minimum"].get<int64_t>(), b = s["maximum"].get<int64_t>();
      if (b < a) fail("JSON schema at {}: maximum < minimum accepts no integer", path);
      if (b - a > 1000) unsupported(path, "an integer range wider than 1000 (give minimum 0 or 1 alone, or a narrower range)");
      std::string alts;
      // Longest first is not needed: the grammar keeps every alternative alive.
      for (int64_t v = a; v <= b; ++v) alts += (alts.empty() ? "" : " | ") + literal(std::to_string(v));
      return "(" + alts + ") " + use("ws");
    }
    if (hi) unsupported(path, "maximum without minimum");
    if (lo) {
      const double m = s["minimum"].get<double>();
      if (m == 0) return use("nonneg-integer");
      if (m == 1) return use("positive-integer");
      unsupported(path, "minimum other than 0 or 1 without a maximum");
    }
    return use("integer");
  }

  std::string number(const nlohmann::json& s, const std::string& path) {
    for (const char* k : {"maximum", "exclusiveMaximum", "exclusiveMinimum"})
      if (s.contains(k)) unsupported(path, std::string(k) + " on a number");
    if (s.contains("minimum")) {
      if (!has_number(s, "minimum") || s["minimum"].get<double>() != 0) unsupported(path, "a number minimum other than 0");
      return use("nonneg-number");
    }
    return use("number");
  }

  // An anchored regular expression -> GBNF for the characters of a JSON string (no
  // quote or backslash: those would need escaping in JSON).
  std::string pattern(const std::string& re, const std::string& path) {
    if (re.size() < 2 || re.front() != '^' || re.back() != '$' || (re.size() >= 3 && re[re.size() - 2] == '\\'))
      unsupported(path, "a pattern not anchored as ^...$");
    if (re.size() > 1000) unsupported(path, "a pattern longer than 1000 characters");
    size_t i = 1;
    const size_t end = re.size() - 1;
    const std::string out = regex_alternation(re, i, end, path, 0);
    if (i != end) unsupported(path, "the pattern's unbalanced ')'");
    return out.empty() ? "\"\"" : out;
  }

  std::string regex_alternation(const std::string& re, size_t& i, size_t end, const std::string& path, int depth) {
    if (depth > 32) unsupported(path, "a pattern nested deeper than 32 groups");
    std::string alts = regex_sequence(re, i, end, path, depth);
    while (i < end && re[i] == '|') {
      ++i;
      alts += " | " + regex_sequence(re, i, end, path, depth);
    }
    return alts;
  }

  static std::string class_escape(char c, const std::string& path) {
    switch (c) {
      case 'd': return "0-9";
      case 'w': return "a-zA-Z0-9_";
      case 's': return " \\t\\n\\r";
      case 'n': return "\\n";
      case 't': return "\\t";
      default:
        if (std::isalnum((unsigned char)c)) unsupported(path, std::string("the pattern escape \\") + c);
        return c == ']' || c == '[' || c == '-' || c == '^' ? std::string("\\") + c : std::string(1, c);
    }
  }

  std::string regex_sequence(const std::string& re, size_t& i, size_t end, const std::string& path, int depth) {
    std::string seq;
    while (i < end && re[i] != '|' && re[i] != ')') {
      std::string atom;
      const char c = re[i++];
      if (c == '(') {
        if (re.compare(i, 2, "?:") == 0) i += 2;
        else if (i < end && re[i] == '?') unsupported(path, "pattern lookarounds and named groups");
        atom = "(" + regex_alternation(re, i, end, path, depth + 1) + ")";
        if (i >= end || re[i] != ')') unsupported(path, "the pattern's unclosed '('");
        ++i;
      } else if (c == '[') {
        std::string cls = "[";
        bool negated = false;
        if (i < end && re[i] == '^') negated = true, cls += '^', ++i;
        while (i < end && re[i] != ']') {
          const char d = re[i++];
          if (d == '\\' && i < end) cls += class_escape(re[i++], path);
          else if (d == '"') cls += "\\\"";
          else cls += d;
        }
        if (i >= end) unsupported(path, "the pattern's unclosed '['");
        ++i;
        if (negated) cls += "\"\\\\\\x00-\\x1F";  // never a character JSON would have to escape
        else if (cls.find("\\\"") != std::string::npos || cls.find("\\\\") != std::string::npos)
          unsupported(path, "quotes or backslashes in a pattern");
        atom = cls + "]";
      } else if (c == '.') {
        atom = "[^\"\\\\\\x00-\\x1F]";
      } else if (c == '\\') {
        if (i >= end) unsupported(path, "a trailing '\\' in the pattern");
        const char e = re[i++];
        if (e == 'd' || e == 'w' || e == 's') atom = "[" + class_escape(e, path) + "]";
        else if (e == 'D' || e == 'W' || e == 'S') unsupported(path, std::string("the pattern escape \\") + e);
        else if (e == '"' || e == '\\') unsupported(path, "quotes or backslashes in a pattern");
        else atom = "[" + class_escape(e, path) + "]";
      } else if (c == '^' || c == '$') {
        unsupported(path, "anchors inside a pattern");
      } else if (c == '"') {
        unsupported(path, "quotes or backslashes in a pattern");
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        unsupported(path, "a quantifier that follows nothing in the pattern");
      } else {
        atom = literal(std::string(1, c));
      }
      // A quantifier: the same syntax in GBNF (lazy '?' suffixes are not).
      if (i < end && (re[i] == '*' || re[i] == '+' || re[i] == '?')) {
        atom += re[i++];
      } else if (i < end && re[i] == '{') {
        const size_t close = re.find('}', i);
        if (close == std::string::npos || close >= end) unsupported(path, "the pattern's unclosed '{'");
        atom += re.substr(i, close - i + 1);
        i = close + 1;
      }
      if (i < end && (re[i] == '?' || re[i] == '+') && !atom.empty() &&
          (atom.back() == '*' || atom.back() == '+' || atom.back() == '?' || atom.back() == '}'))
        unsupported(path, "lazy or possessive quantifiers");
      seq += (seq.empty() ? "" : " ") + atom;
    }
    return seq.empty() ? "\"\"" : seq;
  }

  const nlohmann::json& root_;
  const std::string prefix_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::map<std::string, std::string> refs_;
  std::set<std::string> used_;
};

}  // namespace

std::string json_object_grammar() {
  return "root ::= object\n" + Converter(nlohmann::json::object(), "").convert().substr(std::string("root ::= value\n").size());
}

std::string json_schema_to_gbnf(const nlohmann::json& schema, const std::string& prefix) {
  try {
    return Converter(schema, prefix).convert();
  } catch (const nlohmann::json::exception& e) {
    fail("JSON schema: a keyword has a value of the wrong type ({})", e.what());
  }
}

}  // namespace jevons::engine

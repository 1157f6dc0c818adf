// The Jinja subset interpreter behind ChatTemplate (see chat_template.h for what it
// supports). Values are JSON-like plus jinja2's Undefined, namespaces and callables.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace jevons::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion-ordered, like Python dicts
using Args = std::vector<Value>;
using KwArgs = std::vector<std::pair<std::string, Value>>;
using Callable = std::function<Value(Args&, KwArgs&)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Function };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                  // String; also the name of an Undefined
  std::shared_ptr<List> list;     // List
  std::shared_ptr<Dict> dict;     // Dict and Namespace (shared: namespaces are mutable)
  std::shared_ptr<Callable> fn;   // Function
  int nest = 0;                   // List/Dict/Namespace: 1 + the deepest element's nest

  static Value none() { Value v; v.kind = Kind::None; return v; }
  static Value boolean(bool x) { Value v; v.kind = Kind::Bool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.kind = Kind::Int; v.i = x; return v; }
  static Value real(double x) { Value v; v.kind = Kind::Float; v.f = x; return v; }
  static Value string(std::string x) { Value v; v.kind = Kind::String; v.s = std::move(x); return v; }
  static Value make_list(List l = {}) {
    Value v; v.kind = Kind::List;
    for (const Value& x : l) v.nest = std::max(v.nest, x.nest);
    ++v.nest;
    v.list = std::make_shared<List>(std::move(l));
    return v;
  }
  static Value make_dict(Dict d = {}) {
    Value v; v.kind = Kind::Dict;
    for (const auto& kv : d) v.nest = std::max(v.nest, kv.second.nest);
    ++v.nest;
    v.dict = std::make_shared<Dict>(std::move(d));
    return v;
  }
  static Value function(Callable c) { Value v; v.kind = Kind::Function; v.fn = std::make_shared<Callable>(std::move(c)); return v; }
  static Value undefined(std::string name = "") { Value v; v.s = std::move(name); return v; }
  static Value from_json(const nlohmann::json& j);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool truthy() const;
  const Value* find(const std::string& key) const;  // Dict/Namespace key, or null
};

class Program;  // parsed template

// Parses; throws Error "chat template line L, column C: ..." on bad syntax.
std::shared_ptr<const Program> parse(const std::string& source);
// Renders with the given global variables; throws Error (with line:column) on
// runtime errors and raise_exception().
std::string render(const Program& program, const std::map<std::string, Value>& globals);

}  // namespace jevons::jinja

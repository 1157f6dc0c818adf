// JSON Schema -> GBNF (runtime/grammar.h), so that sampling can only produce JSON
// text that the schema accepts: OpenAI's response_format json_schema, tool
// parameters, `jevons run --json-schema`.
//
// Supported: type (one or a list), properties / required (properties appear in the
// schema's order; required ones always, optional ones may be left out; properties
// the schema does not name are never generated, whatever additionalProperties says,
// which keeps the output valid under either), additionalProperties as a schema for
// objects without properties, items, minItems, maxItems, enum, const, anyOf, oneOf
// (as anyOf: a grammar cannot enforce "exactly one"), allOf of one schema, $ref to
// #, #/$defs/… or #/definitions/… (recursion allowed), nullable, strings with
// minLength / maxLength, pattern (anchored ^…$; literals, classes, ., groups,
// alternation, quantifiers) and format date, time, date-time, uuid (other formats
// are annotations, as JSON Schema's default vocabulary says); integers with
// minimum 0 or 1, exclusiveMinimum 0, or a minimum and maximum at most 1000 apart;
// numbers with minimum 0. Annotations (title, description, default, examples, …)
// are ignored. Anything else is an Error naming the keyword and where it is.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace jevons::engine {

// Any JSON object (response_format {"type": "json_object"}).
std::string json_object_grammar();

// The grammar of the JSON texts valid against `schema`; Error (the server's 400)
// on what it cannot enforce. prefix: put before every rule name (the start rule is
// PREFIXroot), so that several schemas can share one grammar (tool calls).
std::string json_schema_to_gbnf(const nlohmann::json& schema, const std::string& prefix = "");

}  // namespace jevons::engine

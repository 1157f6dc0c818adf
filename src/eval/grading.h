// Answers out of model outputs, and whether they are right: GSM8K's final number,
// MATH's \boxed{} expression (normalised as Hendrycks et al.'s MATH grader does, plus
// the numeric and tuple equivalences string normalisation can decide), ARC's letter,
// and a majority vote over several samples (self-consistency, Wang et al. 2022).
// Pure string work: no model, no I/O.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jevons::eval {

// GSM8K's reference: the number after "####" ("1,234" -> "1234").
std::optional<std::string> gsm8k_reference(std::string_view answer);

// The final number of a GSM8K-style answer, in order of trust: the last \boxed{},
// the number after the last "####", after the last "answer is"/"Answer:", else the
// last number in the text. Commas, "$" and a trailing "." are dropped.
std::optional<std::string> extract_final_number(std::string_view text);

// Whether two numbers written as text are equal ("18" = "18.00" = "$18"; "3/4" = "0.75").
bool numbers_equal(std::string_view a, std::string_view b);

// The content of the last \boxed{...} (or \fbox{...}), braces balanced; nullopt when
// there is none or it is not closed.
std::optional<std::string> extract_boxed(std::string_view text);

// MATH answer normalisation: spaces, \left/\right, \!, dfrac/tfrac, degrees, \text
// units, "x =" prefixes, \frac12 -> \frac{1}{2}, a/b -> \frac{a}{b}, leading zeros of
// decimals, trailing ".".
std::string normalize_math_answer(std::string_view s);

// Equal after normalisation, or equal as numbers (fractions, decimals, integers), or
// equal component by component as tuples/intervals with the same brackets.
bool math_answers_equal(std::string_view answer, std::string_view reference);

// The letter (one of labels) a multiple-choice answer names: "answer is (B)",
// "Answer: B", "**B**", "B." at the start, a lone "(B)"; nullopt when none.
std::optional<std::string> extract_choice_label(std::string_view text, const std::vector<std::string>& labels);

// The most frequent non-empty answer (ties: the one given first); "" when none.
// equal: when two answers count as the same (default: ==).
std::string majority_vote(const std::vector<std::string>& answers,
                          const std::function<bool(const std::string&, const std::string&)>& equal = {});

}  // namespace jevons::eval

#include "eval/grading.h"

#include <cmath>
#include <cstdlib>
#include <regex>

namespace jevons::eval {
namespace {

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace((unsigned char)s[a])) ++a;
  while (b > a && std::isspace((unsigned char)s[b - 1])) --b;
  return std::string(s.substr(a, b - a));
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// A plain number: optional sign, digits (commas between groups of three allowed), decimals.
std::optional<double> parse_plain_number(std::string s) {
  if (s.empty() || s.size() > 64) return std::nullopt;  // std::regex recurses per character
  static const std::regex grouped(R"(^[-+]?\d{1,3}(,\d{3})+(\.\d+)?$)");
  if (std::regex_match(s, grouped)) replace_all(s, ",", "");
  static const std::regex plain(R"(^[-+]?(\d+\.?\d*|\.\d+)$)");
  if (!std::regex_match(s, plain)) return std::nullopt;
  return std::strtod(s.c_str(), nullptr);
}

// A number, a/b, or \frac{a}{b} (with an optional sign), as a value.
std::optional<double> parse_value(const std::string& s) {
  if (s.size() > 200) return std::nullopt;
  if (auto v = parse_plain_number(s)) return v;
  static const std::regex frac(R"(^([-+]?)\\frac\{([^{}]+)\}\{([^{}]+)\}$)");
  static const std::regex slash(R"(^([-+]?)([^/]+)/([^/]+)$)");
  std::smatch m;
  if (std::regex_match(s, m, frac) || std::regex_match(s, m, slash)) {
    const auto a = parse_plain_number(m[2].str()), b = parse_plain_number(m[3].str());
    if (a && b && *b != 0) return (m[1].str() == "-" ? -1.0 : 1.0) * *a / *b;
  }
  return std::nullopt;
}

bool values_equal(double a, double b) { return std::fabs(a - b) <= 1e-6 * std::max(1.0, std::fabs(b)); }

// Splits at commas outside any bracket.
std::vector<std::string> split_top_level(const std::string& s) {
  std::vector<std::string> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '(' || c == '[' || c == '{') ++depth;
    else if (c == ')' || c == ']' || c == '}') --depth;
    else if (c == ',' && depth == 0) parts.push_back(s.substr(start, i - start)), start = i + 1;
  }
  parts.push_back(s.substr(start));
  return parts;
}

// The brace group starting at s[open] == '{': its content, or nullopt when unclosed.
std::optional<std::string> brace_group(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    else if (s[i] == '}' && --depth == 0) return std::string(s.substr(open + 1, i - open - 1));
  }
  return std::nullopt;
}

// \frac12 -> \frac{1}{2}, \frac1{2} -> \frac{1}{2}, \frac{1}2 -> \frac{1}{2}.
std::string fix_fracs(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s.compare(i, 5, "\\frac") != 0) {
      out += s[i++];
      continue;
    }
    out += "\\frac";
    i += 5;
    for (int arg = 0; arg < 2 && i < s.size(); ++arg) {
      if (s[i] == '{') {
        const auto g = brace_group(s, i);
        if (!g) break;
        out += "{" + fix_fracs(*g) + "}";
        i += g->size() + 2;
      } else if (s[i] != '\\') {
        out += std::string("{") + s[i] + "}";
        ++i;
      } else {
        break;
      }
    }
  }
  return out;
}

// \sqrt3 -> \sqrt{3}.
std::string fix_sqrt(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 5, "\\sqrt") == 0 && i + 5 < s.size() && s[i + 5] != '{' && s[i + 5] != '[' && s[i + 5] != '\\' &&
        !std::isspace((unsigned char)s[i + 5])) {
      out += "\\sqrt{";
      out += s[i + 5];
      out += "}";
      i += 6;
    } else {
      out += s[i++];
    }
  }
  return out;
}

// \text{X}, \textbf{X}, \mbox{X}, \mathrm{X} -> X.
std::string unwrap_text(std::string s) {
  for (const char* cmd : {"\\text{", "\\textbf{", "\\mbox{", "\\mathrm{", "\\textrm{"}) {
    for (size_t p = s.find(cmd); p != std::string::npos; p = s.find(cmd, p)) {
      const size_t open = p + std::string_view(cmd).size() - 1;
      const auto g = brace_group(s, open);
      if (!g) break;
      s.replace(p, g->size() + (open - p) + 2, *g);
    }
  }
  return s;
}

}  // namespace

std::optional<std::string> gsm8k_reference(std::string_view answer) {
  const size_t p = answer.rfind("####");
  if (p == std::string_view::npos) return std::nullopt;
  std::string s = trim(answer.substr(p + 4));
  replace_all(s, ",", "");
  replace_all(s, "$", "");
  if (s.empty()) return std::nullopt;
  return s;
}

// The numbers of a text, in order, as written ("-1,234.5", "$18", ".5"), scanned by
// hand: a model's output can hold runs of thousands of digits, on which std::regex
// (recursive) would overflow the stack. A number longer than 64 characters is skipped.
static std::vector<std::string> numbers_in(std::string_view t) {
  std::vector<std::string> out;
  auto digit = [&](size_t i) { return i < t.size() && std::isdigit((unsigned char)t[i]); };
  size_t i = 0;
  while (i < t.size()) {
    if (!digit(i) && !(t[i] == '.' && digit(i + 1))) {
      ++i;
      continue;
    }
    const bool negative = i > 0 && t[i - 1] == '-' && !(i > 1 && std::isalnum((unsigned char)t[i - 2]));
    std::string n = negative ? "-" : "";
    size_t j = i;
    while (digit(j) || (t[j] == ',' && digit(j + 1) && j > i)) {
      if (t[j] != ',') n += t[j];
      ++j;
    }
    if (j < t.size() && t[j] == '.' && digit(j + 1)) {
      n += '.';
      for (++j; digit(j); ++j) n += t[j];
    }
    if (j - i <= 64) out.push_back(n[0] == '.' || (n[0] == '-' && n[1] == '.') ? std::string(n).insert(n[0] == '-', "0") : n);
    i = j;
  }
  return out;
}

std::optional<std::string> extract_final_number(std::string_view text) {
  auto last_in = [](std::string_view t) -> std::optional<std::string> {
    auto v = numbers_in(t);
    if (v.empty()) return std::nullopt;
    return v.back();
  };
  auto first_in = [](std::string_view t) -> std::optional<std::string> {
    auto v = numbers_in(t.substr(0, 200));
    if (v.empty()) return std::nullopt;
    return v.front();
  };
  if (auto boxed = extract_boxed(text)) {
    if (auto v = last_in(*boxed)) return v;
  }
  if (size_t p = text.rfind("####"); p != std::string_view::npos) {
    if (auto v = first_in(text.substr(p + 4))) return v;
  }
  std::string lower(text);
  for (char& c : lower) c = char(std::tolower((unsigned char)c));
  for (const char* cue : {"answer is", "answer:"}) {
    if (size_t p = lower.rfind(cue); p != std::string::npos)
      if (auto v = first_in(text.substr(p + std::string_view(cue).size()))) return v;
  }
  return last_in(text);
}

bool numbers_equal(std::string_view a, std::string_view b) {
  auto clean = [](std::string_view x) {
    std::string s = trim(x);
    replace_all(s, "$", "");
    replace_all(s, " ", "");
    while (!s.empty() && (s.back() == '.' || s.back() == '%')) s.pop_back();
    replace_all(s, ",", "");
    return s;
  };
  const auto va = parse_value(clean(a)), vb = parse_value(clean(b));
  return va && vb && values_equal(*va, *vb);
}

std::optional<std::string> extract_boxed(std::string_view text) {
  size_t best = std::string_view::npos, len = 0;
  for (std::string_view cmd : {"\\boxed", "\\fbox"}) {
    const size_t p = text.rfind(cmd);
    if (p != std::string_view::npos && (best == std::string_view::npos || p > best)) best = p, len = cmd.size();
  }
  if (best == std::string_view::npos) return std::nullopt;
  size_t i = best + len;
  while (i < text.size() && text[i] == ' ') ++i;
  if (i < text.size() && text[i] == '{') return brace_group(text, i);
  // "\boxed 5": up to the end of the word or the math.
  size_t j = i;
  while (j < text.size() && text[j] != '$' && !std::isspace((unsigned char)text[j])) ++j;
  if (j == i) return std::nullopt;
  return std::string(text.substr(i, j - i));
}

std::string normalize_math_answer(std::string_view in) {
  // No answer is this long; a runaway \boxed{ of a degenerate output is left as it is
  // (the rewriting below recurses into nested \frac).
  if (in.size() > 2000) return trim(in);
  std::string s(in);
  replace_all(s, "\n", "");
  replace_all(s, "\\!", "");
  replace_all(s, "\\\\", "\\");
  replace_all(s, "tfrac", "frac");
  replace_all(s, "dfrac", "frac");
  replace_all(s, "\\left", "");
  replace_all(s, "\\right", "");
  replace_all(s, "^{\\circ}", "");
  replace_all(s, "^\\circ", "");
  replace_all(s, "\\$", "");
  replace_all(s, "$", "");
  replace_all(s, "\\,", "");
  replace_all(s, "\\;", "");
  replace_all(s, "\\ ", "");
  // Units written as "5 \text{ cm}" go; other \text{} wrappers are unwrapped.
  if (size_t p = s.find("\\text{ "); p != std::string::npos && p > 0) s.resize(p);
  s = unwrap_text(s);
  replace_all(s, "\\%", "");
  replace_all(s, "%", "");
  replace_all(s, " .", " 0.");
  replace_all(s, "{.", "{0.");
  s = trim(s);
  if (!s.empty() && s[0] == '.') s = "0" + s;
  // "x = 5" -> "5" (a short name on the left only: "a+b=c" stays an equation).
  if (const size_t eq = s.find('='); eq != std::string::npos && s.find('=', eq + 1) == std::string::npos &&
                                     trim(s.substr(0, eq)).size() <= 2)
    s = trim(s.substr(eq + 1));
  s = fix_sqrt(s);
  replace_all(s, " ", "");
  s = fix_fracs(s);
  if (s == "0.5") s = "\\frac{1}{2}";
  static const std::regex int_slash(R"(^(-?\d+)/(\d+)$)");
  std::smatch m;
  if (s.size() < 64 && std::regex_match(s, m, int_slash)) s = "\\frac{" + m[1].str() + "}{" + m[2].str() + "}";
  while (!s.empty() && s.back() == '.') s.pop_back();
  if (starts_with(s, "\\frac{-")) {
    // \frac{-a}{b} -> -\frac{a}{b}
    const auto g = brace_group(s, 5);
    if (g && g->size() + 7 <= s.size()) s = "-\\frac{" + g->substr(1) + s.substr(5 + g->size() + 1);
  }
  return s;
}

bool math_answers_equal(std::string_view answer, std::string_view reference) {
  const std::string a = normalize_math_answer(answer), b = normalize_math_answer(reference);
  if (a.empty() || b.empty()) return false;
  if (a == b) return true;
  if (a.size() > 1000 || b.size() > 1000) return false;  // no answer is that long: no deeper comparison
  const auto va = parse_value(a), vb = parse_value(b);
  if (va && vb) return values_equal(*va, *vb);
  auto is_open = [](char c) { return c == '(' || c == '['; };
  auto is_close = [](char c) { return c == ')' || c == ']'; };
  if (a.size() >= 2 && b.size() >= 2 && a.front() == b.front() && a.back() == b.back() && is_open(a.front()) &&
      is_close(a.back())) {
    const auto pa = split_top_level(a.substr(1, a.size() - 2)), pb = split_top_level(b.substr(1, b.size() - 2));
    if (pa.size() == pb.size() && pa.size() > 1) {
      for (size_t i = 0; i < pa.size(); ++i)
        if (!math_answers_equal(pa[i], pb[i])) return false;
      return true;
    }
  }
  // Unordered lists of answers ("1, 2" vs "2,1") count as equal, as MATH's solutions do.
  const auto la = split_top_level(a), lb = split_top_level(b);
  if (la.size() > 1 && la.size() == lb.size()) {
    std::vector<bool> used(lb.size());
    for (const std::string& x : la) {
      bool hit = false;
      for (size_t j = 0; j < lb.size() && !hit; ++j)
        if (!used[j] && math_answers_equal(x, lb[j])) used[j] = hit = true;
      if (!hit) return false;
    }
    return true;
  }
  return false;
}

std::optional<std::string> extract_choice_label(std::string_view text, const std::vector<std::string>& labels) {
  if (labels.empty()) return std::nullopt;
  std::string alts;
  for (const std::string& l : labels) {
    if (!alts.empty()) alts += "|";
    for (char c : l) {
      if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) alts += '\\';
      alts += c;
    }
  }
  const std::string g = "(" + alts + ")";
  // Regexes run on short windows only (std::regex recurses per character).
  // Most explicit first; the last such statement is the final answer.
  const std::regex stated("^[Aa]nswer(?: is|:)\\s{0,3}(?:[Cc]hoice\\s?|[Oo]ption\\s?)?[\\(\\*\\s]{0,4}" + g + "(?![A-Za-z0-9])");
  std::string lower(text);
  for (char& c : lower) c = char(std::tolower((unsigned char)c));
  for (size_t p = lower.rfind("answer"); p != std::string::npos; p = p ? lower.rfind("answer", p - 1) : std::string::npos) {
    const std::string window(text.substr(p, 40));
    std::smatch m;
    if (std::regex_search(window, m, stated)) return m[1].str();
    if (p == 0) break;
  }
  const std::string head(text.substr(0, 40));
  std::smatch m;
  const std::regex leading("^\\s{0,8}[\\(\\*]{0,3}" + g + "(?:[\\)\\.:\\*]|\\s*$)");
  if (std::regex_search(head, m, leading)) return m[1].str();
  // A lone "(X)" anywhere.
  for (size_t p = text.find('('); p != std::string_view::npos; p = text.find('(', p + 1))
    for (const std::string& l : labels)
      if (text.substr(p + 1, l.size()) == l && text.substr(p + 1 + l.size(), 1) == ")") return l;
  return std::nullopt;
}

std::string majority_vote(const std::vector<std::string>& answers, const std::function<bool(const std::string&, const std::string&)>& equal) {
  std::string best;
  int best_count = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (answers[i].empty()) continue;
    int count = 0;
    for (const std::string& other : answers)
      if (!other.empty() && (equal ? equal(answers[i], other) : answers[i] == other)) ++count;
    if (count > best_count) best = answers[i], best_count = count;  // strict: ties keep the earlier answer
  }
  return best;
}

}  // namespace jevons::eval

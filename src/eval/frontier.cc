#include "eval/frontier.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace jevons::eval {
namespace {

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

void mark_pareto(std::vector<FrontierPoint>& points) {
  for (FrontierPoint& p : points) {
    p.pareto = true;
    for (const FrontierPoint& q : points) {
      if (&q == &p) continue;
      const bool no_worse = q.accuracy >= p.accuracy && q.j_per_item <= p.j_per_item;
      const bool better = q.accuracy > p.accuracy || q.j_per_item < p.j_per_item;
      if (no_worse && better) {
        p.pareto = false;
        break;
      }
    }
  }
}

std::string frontier_svg(const std::vector<FrontierPoint>& points, const std::string& title) {
  const double W = 760, H = 480, left = 70, right = 30, top = 50, bottom = 60;
  const double pw = W - left - right, ph = H - top - bottom;
  double xmin = INFINITY, xmax = 0, ymax = 0;
  for (const FrontierPoint& p : points) {
    xmin = std::min(xmin, std::max(p.j_per_item, 1e-9));
    xmax = std::max(xmax, std::max(p.j_per_item, 1e-9));
    ymax = std::max(ymax, p.accuracy);
  }
  if (points.empty()) xmin = 1, xmax = 10;
  const bool log_x = xmax > 10 * xmin;
  auto fx = [&](double v) { return log_x ? std::log10(std::max(v, 1e-9)) : v; };
  double x0 = fx(xmin), x1 = fx(xmax);
  if (x1 - x0 < 1e-12) x0 -= log_x ? 0.5 : 0.5 * std::max(x0, 1e-9), x1 += log_x ? 0.5 : 0.5 * std::max(x1, 1e-9);
  const double pad = 0.06 * (x1 - x0);
  x0 -= pad, x1 += pad;
  if (!log_x) x0 = 0;  // energy from zero: differences read as ratios
  const double y1 = std::min(1.0, std::max(0.1, std::ceil(ymax * 10 + 0.5) / 10));
  auto px = [&](double v) { return left + (fx(v) - x0) / (x1 - x0) * pw; };
  auto py = [&](double a) { return top + (1 - a / y1) * ph; };

  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">{3}</text>\n",
      W, H, W / 2, xml_escape(title));
  // Axes, ticks, grid.
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", left, top, pw, ph);
  for (int i = 0; i <= 5; ++i) {
    const double a = y1 * i / 5, y = py(a);
    s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left, y, left + pw, y);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.0f}%</text>\n", left - 6, y + 4, a * 100);
  }
  std::vector<double> ticks;
  if (log_x) {
    for (int e = int(std::floor(x0)); e <= int(std::ceil(x1)); ++e)
      for (double m : {1.0, 2.0, 5.0}) {
        const double v = m * std::pow(10.0, e);
        if (fx(v) >= x0 && fx(v) <= x1) ticks.push_back(v);
      }
  } else {
    // A round step: 1, 2 or 5 times a power of ten, about five ticks.
    const double raw = (x1 - x0) / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
    for (double v = 0; v <= x1 + 1e-12; v += step) ticks.push_back(v);
  }
  for (double v : ticks) {
    const double x = px(v);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"#ddd\"/>\n", x, top, x, top + ph);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x, top + ph + 18, fmt::format("{:.3g}", v));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">joules per question{}</text>\n", left + pw / 2, H - 14,
                   log_x ? " (log scale)" : "");
  s += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">accuracy</text>\n", top + ph / 2);
  // The Pareto front, left to right.
  std::vector<const FrontierPoint*> front;
  for (const FrontierPoint& p : points)
    if (p.pareto) front.push_back(&p);
  std::sort(front.begin(), front.end(), [](auto* a, auto* b) { return a->j_per_item < b->j_per_item; });
  if (front.size() > 1) {
    s += "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"";
    for (const FrontierPoint* p : front) s += fmt::format("{:.1f},{:.1f} ", px(p->j_per_item), py(p->accuracy));
    s += "\"/>\n";
  }
  std::vector<size_t> by_x(points.size());
  for (size_t i = 0; i < by_x.size(); ++i) by_x[i] = i;
  std::sort(by_x.begin(), by_x.end(), [&](size_t a, size_t b) { return points[a].j_per_item < points[b].j_per_item; });
  for (size_t rank = 0; rank < by_x.size(); ++rank) {
    const size_t i = rank;
    const FrontierPoint& p = points[by_x[rank]];
    const double x = px(p.j_per_item), y = py(p.accuracy);
    s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"5\" fill=\"{}\"/>\n", x, y, p.pareto ? "#d62728" : "#1f77b4");
    // Labels point inward (left of points in the right half) and alternate above and
    // below, so that neighbours do not overwrite each other.
    const bool right_half = x > left + pw / 2;
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" text-anchor=\"{}\">{}</text>\n", right_half ? x - 8 : x + 8,
                     i % 2 ? y + 15 : y - 7, right_half ? "end" : "start", xml_escape(p.label));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#d62728\">red: Pareto front (no configuration is both "
                   "more accurate and cheaper)</text>\n",
                   left + 6, top + 14);
  s += "</svg>\n";
  return s;
}

}  // namespace jevons::eval

// The accuracy/energy frontier of a sweep: which configurations no other one beats on
// both axes (Pareto), and a plot of accuracy against joules per question as SVG, which
// any image viewer opens (no browser, no plotting library).
#pragma once
#include <string>
#include <vector>

namespace jevons::eval {

struct FrontierPoint {
  std::string label;   // "model, budget 1024, 5 samples"
  double j_per_item;   // x
  double accuracy;     // y, 0..1
  bool pareto = false;
};

// Marks the points that no other point dominates (at least as accurate for at most
// the joules, and better in one of the two).
void mark_pareto(std::vector<FrontierPoint>& points);

// A standalone SVG: x joules per question (log scale when the values span more than
// 10x), y accuracy, every point labelled, the Pareto front joined by a line.
std::string frontier_svg(const std::vector<FrontierPoint>& points, const std::string& title);

}  // namespace jevons::eval

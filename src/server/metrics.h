// Server counters and their Prometheus text exposition (GET /metrics).
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "engine/scheduler.h"

namespace jevons::server {

class Metrics {
 public:
  void count_request(const std::string& endpoint, int status);
  void add_completed(int prompt_tokens, int completion_tokens, int reasoning_tokens, double joules, double cost_usd, double co2_g);
  // Prometheus text format 0.0.4. stats may be null while the model loads.
  std::string render(const engine::SchedulerStats* stats, const std::string& model_name, const std::string& energy_source) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0, reasoning_tokens_ = 0, completed_ = 0;
  double joules_ = 0, cost_usd_ = 0, co2_g_ = 0;
};

}  // namespace jevons::server

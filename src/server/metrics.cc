#include "server/metrics.h"

#include <fmt/format.h>

namespace jevons::server {

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::add_completed(int prompt_tokens, int completion_tokens, int reasoning_tokens, double joules, double cost_usd,
                            double co2_g) {
  std::lock_guard<std::mutex> lock(mu_);
  ++completed_;
  prompt_tokens_ += prompt_tokens;
  completion_tokens_ += completion_tokens;
  reasoning_tokens_ += reasoning_tokens;
  joules_ += joules;
  cost_usd_ += cost_usd;
  co2_g_ += co2_g;
}

static void metric(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// A metric with one unlabeled sample: its HELP and TYPE lines, then `name value`.
static void metric(std::string& out, const char* name, const char* type, const char* help, const std::string& value) {
  metric(out, name, type, help);
  out += fmt::format("{} {}\n", name, value);
}

std::string Metrics::render(const engine::SchedulerStats* s, const std::string& model_name, const std::string& energy_source) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string o;
  metric(o, "jevons_up", "gauge", "1 when the model is loaded and the server takes requests");
  o += fmt::format("jevons_up{{model=\"{}\"}} {}\n", model_name, s ? 1 : 0);
  metric(o, "jevons_requests_total", "counter", "HTTP requests by endpoint and status");
  for (const auto& [k, v] : requests_) o += fmt::format("jevons_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, v);
  metric(o, "jevons_completions_total", "counter", "Generation requests completed", fmt::format("{}", completed_));
  metric(o, "jevons_prompt_tokens_total", "counter", "Prompt tokens of completed requests", fmt::format("{}", prompt_tokens_));
  metric(o, "jevons_completion_tokens_total", "counter", "Generated tokens of completed requests", fmt::format("{}", completion_tokens_));
  metric(o, "jevons_reasoning_tokens_total", "counter", "Reasoning tokens of completed requests", fmt::format("{}", reasoning_tokens_));
  metric(o, "jevons_request_joules_total", "counter", "Joules charged to completed requests");
  o += fmt::format("jevons_request_joules_total{{source=\"{}\"}} {:.6f}\n", energy_source, joules_);
  metric(o, "jevons_request_cost_usd_total", "counter", "Cost in US dollars (energy + hardware) of completed requests", fmt::format("{:.9f}", cost_usd_));
  metric(o, "jevons_request_co2_grams_total", "counter", "Grams of CO2e of completed requests", fmt::format("{:.9f}", co2_g_));
  if (s) {
    metric(o, "jevons_queue_depth", "gauge", "Sequences waiting for a batch slot or KV blocks", fmt::format("{}", s->queued));
    metric(o, "jevons_running_sequences", "gauge", "Sequences in the running batch", fmt::format("{}", s->running));
    metric(o, "jevons_kv_blocks_used", "gauge", "KV cache blocks held by sequences", fmt::format("{}", s->kv.used_blocks));
    metric(o, "jevons_kv_blocks_cached", "gauge", "KV cache blocks held by no sequence, kept for prefix reuse until evicted",
           fmt::format("{}", s->kv.cached_blocks));
    metric(o, "jevons_kv_blocks_total", "gauge", "KV cache blocks in the pool (--kv-budget)", fmt::format("{}", s->kv.total_blocks));
    metric(o, "jevons_kv_cached_bytes", "gauge", "Bytes of the cached (reusable, unheld) KV blocks",
           fmt::format("{}", s->kv.cached_blocks * s->kv_block_bytes));
    metric(o, "jevons_prefix_cache_lookups_total", "counter", "Prefix-cache block lookups", fmt::format("{}", s->kv.lookups));
    metric(o, "jevons_prefix_cache_hits_total", "counter", "Prefix-cache block lookups that found a block", fmt::format("{}", s->kv.hits));
    metric(o, "jevons_prefix_cache_hit_rate", "gauge", "Prompt tokens served from the prefix cache over all prompt tokens",
           fmt::format("{:.6f}", s->cached_tokens + s->prompt_tokens > 0 ? double(s->cached_tokens) / double(s->cached_tokens + s->prompt_tokens) : 0.0));
    metric(o, "jevons_cached_prompt_tokens_total", "counter", "Prompt tokens found in the prefix cache (not computed)",
           fmt::format("{}", s->cached_tokens));
    metric(o, "jevons_kv_evictions_total", "counter", "Cached KV blocks evicted for new ones", fmt::format("{}", s->kv.evictions));
    metric(o, "jevons_spec_drafted_tokens_total", "counter", "Tokens proposed by speculative decoding and verified",
           fmt::format("{}", s->drafted_tokens));
    metric(o, "jevons_spec_accepted_tokens_total", "counter", "Proposed tokens the model accepted",
           fmt::format("{}", s->accepted_tokens));
    metric(o, "jevons_preemptions_total", "counter", "Sequences whose blocks were taken back when the pool ran dry",
           fmt::format("{}", s->preemptions));
    if (s->disk_tier) {
      metric(o, "jevons_kv_disk_bytes", "gauge", "Bytes of KV block files in --kv-cache-dir", fmt::format("{}", s->disk.bytes));
      metric(o, "jevons_kv_disk_hits_total", "counter", "KV blocks read back from disk", fmt::format("{}", s->disk.hits));
      metric(o, "jevons_kv_disk_saved_total", "counter", "KV blocks written to disk", fmt::format("{}", s->disk.saved));
      metric(o, "jevons_kv_disk_skipped_total", "counter", "KV block files skipped (corrupt, truncated, another model's)",
             fmt::format("{}", s->disk.skipped));
      metric(o, "jevons_kv_disk_evicted_total", "counter", "KV block files deleted to hold the size cap", fmt::format("{}", s->disk.evicted));
      metric(o, "jevons_kv_disk_read_bytes_total", "counter", "Bytes of KV block files read back", fmt::format("{}", s->disk.load_bytes));
      metric(o, "jevons_kv_disk_read_seconds_total", "counter", "Seconds reading KV block files", fmt::format("{:.6f}", s->disk.load_s));
      metric(o, "jevons_kv_disk_written_bytes_total", "counter", "Bytes of KV block files written", fmt::format("{}", s->disk.save_bytes));
      metric(o, "jevons_kv_disk_write_seconds_total", "counter", "Seconds writing KV block files", fmt::format("{:.6f}", s->disk.save_s));
    }
    metric(o, "jevons_engine_steps_total", "counter", "Batched forward passes", fmt::format("{}", s->steps));
    metric(o, "jevons_engine_prompt_tokens_total", "counter", "Prompt tokens prefilled", fmt::format("{}", s->prompt_tokens));
    metric(o, "jevons_engine_generated_tokens_total", "counter", "Tokens generated (all requests, incl. cancelled)", fmt::format("{}", s->generated_tokens));
    metric(o, "jevons_engine_joules_total", "counter", "Joules measured or estimated over forward passes", fmt::format("{:.6f}", s->joules));
    metric(o, "jevons_engine_busy_seconds_total", "counter", "Seconds spent in forward passes", fmt::format("{:.6f}", s->busy_s));
    metric(o, "jevons_engine_prefill_joules_total", "counter", "Joules of the prompt tokens computed (their share of each step)",
           fmt::format("{:.6f}", s->prefill_joules));
    metric(o, "jevons_decode_tokens_per_second", "gauge", "Recent aggregate decode throughput", fmt::format("{:.3f}", s->decode_tokens_per_s));
    metric(o, "jevons_batch_tokens", "gauge", "Tokens in the last batched forward pass", fmt::format("{}", s->batch_tokens_last));
  }
  return o;
}

}  // namespace jevons::server

// The energy estimate used where nothing measures energy (most virtual machines):
// a documented model from process CPU time, wall time and memory traffic.
//
//   E = cpus x idle_w x wall_s                    idle share of the machine the run occupies
//     + (active_w - idle_w) x cpu_s              each busy vCPU-second on top of idle
//     + dram_pj_per_bit x 1e-12 x 8 x bytes      DRAM reads (weights, KV cache)
//
// cpu_s is the process's user + system CPU time (all threads), so a 2-thread decode
// counts two busy vCPUs. At full utilisation of every vCPU this is cpus x active_w,
// at zero it is cpus x idle_w: the linear min/max-watts model of Cloud Carbon
// Footprint, plus a memory term.
//
// Defaults and their sources:
//   idle_w   0.74 W per vCPU and active_w 3.5 W per vCPU: Cloud Carbon Footprint
//            methodology (cloudcarbonfootprint.org/docs/methodology), AWS average
//            "min watts" / "max watts" per vCPU, derived from SPECpower_ssj2008 results.
//            Chosen over TDP / cores because it is measured wall power per vCPU,
//            which is what a cloud VM rents.
//   dram     20 pJ/bit: Horowitz, "Computing's energy problem", ISSCC 2014: a 64-bit
//            DRAM access costs 1.3-2.6 nJ (20-40 pJ/bit incl. I/O); the low end, since
//            DDR4/DDR5 are more efficient than the DDR3 of that table.
// All of it is an estimate: every figure it produces is labelled "estimated".
#pragma once
#include <cstdint>
#include <vector>

namespace jevons {
struct GgufTensor;
}

namespace jevons::meter {

inline constexpr double kDefaultCpuIdleW = 0.74;   // W per vCPU (CCF, AWS average min watts)
inline constexpr double kDefaultCpuActiveW = 3.5;  // W per busy vCPU (CCF, AWS average max watts)
inline constexpr double kDefaultDramPjPerBit = 20.0;  // pJ/bit (Horowitz ISSCC 2014, low end)

struct EstimateParams {
  double cpu_idle_w = kDefaultCpuIdleW;
  double cpu_active_w = kDefaultCpuActiveW;
  double dram_pj_per_bit = kDefaultDramPjPerBit;
  int cpus = 0;  // vCPUs charged the idle share; 0 = online CPUs of this machine
};

struct EstimateInputs {
  double wall_s = 0;    // elapsed time
  double cpu_s = 0;     // process CPU time (user + system, all threads) over that time
  uint64_t bytes = 0;   // bytes read from memory over that time
};

struct EstimateBreakdown {
  double idle_j = 0, cpu_j = 0, dram_j = 0;
  double total_j() const { return idle_j + cpu_j + dram_j; }
};

// The model above; cpus = p.cpus or online_cpus() when 0.
EstimateBreakdown estimate_energy(const EstimateParams& p, const EstimateInputs& in);

// User + system CPU seconds of this process, all threads (getrusage RUSAGE_SELF).
double process_cpu_seconds();
// Online logical CPUs (sysconf), at least 1.
int online_cpus();

// Memory traffic of a forward pass, for add_memory_traffic: the weights stream once
// per forward call (a batch of n tokens shares one pass), plus every KV-cache row
// attended: token t of the batch reads positions 0..n_past+t.
uint64_t forward_traffic_bytes(uint64_t weight_bytes, uint64_t kv_bytes_per_token, int64_t n_past, int64_t n_tokens);
// Bytes of weights a forward pass reads: every tensor except the token embedding
// (only n rows of it are gathered), unless the output projection is tied to it.
uint64_t weight_bytes(const std::vector<GgufTensor>& tensors);

}  // namespace jevons::meter

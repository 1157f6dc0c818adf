// The meter's command-line flags, for any subcommand that meters (run, bench, meter,
// serve). Header-only so that the engine library does not depend on CLI11.
//
//   auto o = std::make_shared<jevons::meter::Overrides>();
//   jevons::meter::add_meter_options(cmd, *o);    // o must outlive parsing
//   ... in the callback: jevons::meter::Meter meter(jevons::meter::resolve_config(*o));
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "meter/config.h"

namespace jevons::meter {

inline void add_meter_options(CLI::App* cmd, Overrides& o) {
  const char* group = "Energy meter (flags > JEVONS_* env > config file > defaults; see `jevons meter`)";
  for (const KeyInfo& k : config_keys()) {
    const std::string key = k.key;
    cmd->add_option_function<std::string>(
           k.flag, [&o, key](const std::string& v) { o.values[key] = v; },
           std::string(k.help) + " [" + k.unit + "] (env " + k.env + ")")
        ->group(group)
        ->type_name("VALUE");
  }
  cmd->add_option("--meter-config", o.config_file, "Meter config file (JSON; env JEVONS_METER_CONFIG; default ~/.config/jevons/meter.json)")
      ->group(group)
      ->type_name("FILE");
}

}  // namespace jevons::meter

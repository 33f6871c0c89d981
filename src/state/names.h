// Names of the objects a subscription owns on both servers, derived from the
// subscription name alone so that any machine with the config finds them.
#pragma once

#include <string>

namespace lorry {

struct SubscriptionNames {
  std::string name;                     // e.g. "main"
  std::string slot;                     // lorry_main (provider)
  std::string publication;              // lorry_main (provider)
  std::string insert_only_publication;  // lorry_main_insert_only (provider): tables without a replica identity
  std::string origin;                   // lorry_main (subscriber)

  static SubscriptionNames For(const std::string& name) {
    return {name, "lorry_" + name, "lorry_" + name, "lorry_" + name + "_insert_only", "lorry_" + name};
  }
};

// Advisory lock (two-key form) held on the subscriber by the active `lorry run`:
// key1 is this constant, key2 is hashtext(subscription name).
inline constexpr int kRunLockClass = 0x10775;

}  // namespace lorry

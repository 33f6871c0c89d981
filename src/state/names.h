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

// Advisory locks lorry takes on the subscriber, all here so that no two
// share a key1 (a shared one makes unrelated work wait for each other).
// Two-key form: key1 is the constant, key2 is hashtext(subscription name).
// Held by the active `lorry run`:
inline constexpr int kRunLockClass = 0x10775;
// Serialises the sequence syncs of one subscription (sync/sequence_sync.cc):
inline constexpr int kSequenceLockClass = 0x10776;
// Serialises creating/migrating the lorry schema (key2 is 1; state_store.cc):
inline constexpr int kSchemaLockClass = 0x10777;
// One `lorry compare` of a subscription at a time (admin/compare.cc):
inline constexpr int kCompareLockClass = 0x10778;

}  // namespace lorry

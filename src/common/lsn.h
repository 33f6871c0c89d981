// Lsn: a WAL position. A number; printed and parsed as PostgreSQL's "X/X".
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lorry {

struct Lsn {
  uint64_t value = 0;

  constexpr Lsn() = default;
  constexpr explicit Lsn(uint64_t v) : value(v) {}

  bool valid() const { return value != 0; }
  std::string ToString() const;
  // Parses "16/B374D848"; nullopt on anything else.
  static std::optional<Lsn> Parse(std::string_view text);

  friend constexpr auto operator<=>(Lsn a, Lsn b) = default;
};

using Xid = uint32_t;
using Oid = uint32_t;

}  // namespace lorry

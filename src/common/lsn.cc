#include "common/lsn.h"

#include <charconv>

#include <fmt/format.h>

namespace lorry {

std::string Lsn::ToString() const {
  return fmt::format("{:X}/{:X}", static_cast<uint32_t>(value >> 32), static_cast<uint32_t>(value));
}

std::optional<Lsn> Lsn::Parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size()) return std::nullopt;
  uint32_t hi = 0, lo = 0;
  auto parse = [](std::string_view part, uint32_t* out) {
    if (part.size() > 8) return false;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), *out, 16);
    return ec == std::errc() && ptr == part.data() + part.size();
  };
  if (!parse(text.substr(0, slash), &hi) || !parse(text.substr(slash + 1), &lo)) return std::nullopt;
  return Lsn((static_cast<uint64_t>(hi) << 32) | lo);
}

}  // namespace lorry

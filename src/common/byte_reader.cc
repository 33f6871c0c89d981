#include "common/byte_reader.h"

#include <fmt/format.h>

namespace lorry {

namespace {
template <typename U>
U LoadBigEndian(const char* p) {
  U v = 0;
  for (size_t i = 0; i < sizeof(U); ++i) v = static_cast<U>((v << 8) | static_cast<uint8_t>(p[i]));
  return v;
}
template <typename U>
void StoreBigEndian(std::string* dst, U v) {
  for (int i = sizeof(U) - 1; i >= 0; --i) dst->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
}  // namespace

Status ByteReader::Truncated(const char* what, size_t need) const {
  return Status::Protocol(fmt::format("truncated message reading {}: need {} bytes at offset {}, have {}",
                                      what, need, pos_, remaining()));
}

#define LORRY_READ_FIXED(T, U)                                  \
  if (remaining() < sizeof(U)) return Truncated(what, sizeof(U)); \
  *out = static_cast<T>(LoadBigEndian<U>(data_.data() + pos_));  \
  pos_ += sizeof(U);                                             \
  return Status::Ok();

Status ByteReader::ReadU8(uint8_t* out, const char* what) { LORRY_READ_FIXED(uint8_t, uint8_t) }
Status ByteReader::ReadI16(int16_t* out, const char* what) { LORRY_READ_FIXED(int16_t, uint16_t) }
Status ByteReader::ReadI32(int32_t* out, const char* what) { LORRY_READ_FIXED(int32_t, uint32_t) }
Status ByteReader::ReadU32(uint32_t* out, const char* what) { LORRY_READ_FIXED(uint32_t, uint32_t) }
Status ByteReader::ReadI64(int64_t* out, const char* what) { LORRY_READ_FIXED(int64_t, uint64_t) }
Status ByteReader::ReadU64(uint64_t* out, const char* what) { LORRY_READ_FIXED(uint64_t, uint64_t) }
#undef LORRY_READ_FIXED

Status ByteReader::ReadCString(std::string* out, const char* what) {
  size_t nul = data_.find('\0', pos_);
  if (nul == std::string_view::npos)
    return Status::Protocol(fmt::format("unterminated string reading {} at offset {}", what, pos_));
  out->assign(data_.data() + pos_, nul - pos_);
  pos_ = nul + 1;
  return Status::Ok();
}

Status ByteReader::ReadBytes(size_t n, std::string_view* out, const char* what) {
  if (remaining() < n) return Truncated(what, n);
  *out = data_.substr(pos_, n);
  pos_ += n;
  return Status::Ok();
}

std::string_view ByteReader::ReadRest() {
  std::string_view rest = data_.substr(pos_);
  pos_ = data_.size();
  return rest;
}

void PutU8(std::string* dst, uint8_t v) { dst->push_back(static_cast<char>(v)); }
void PutI16(std::string* dst, int16_t v) { StoreBigEndian<uint16_t>(dst, static_cast<uint16_t>(v)); }
void PutI32(std::string* dst, int32_t v) { StoreBigEndian<uint32_t>(dst, static_cast<uint32_t>(v)); }
void PutU32(std::string* dst, uint32_t v) { StoreBigEndian<uint32_t>(dst, v); }
void PutI64(std::string* dst, int64_t v) { StoreBigEndian<uint64_t>(dst, static_cast<uint64_t>(v)); }
void PutU64(std::string* dst, uint64_t v) { StoreBigEndian<uint64_t>(dst, v); }
void PutCString(std::string* dst, std::string_view s) {
  dst->append(s);
  dst->push_back('\0');
}

}  // namespace lorry

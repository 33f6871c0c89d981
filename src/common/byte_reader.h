// ByteReader: bounds-checked big-endian reads over a byte buffer.
//
// All wire data (walsender frames, pgoutput messages) is read through this
// class. A read past the end never touches memory outside the buffer: it
// returns a kProtocol Status naming what was being read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace lorry {

class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }
  bool empty() const { return remaining() == 0; }

  // Each Read* names `what` in the error it returns on truncated input.
  Status ReadU8(uint8_t* out, const char* what);
  Status ReadI16(int16_t* out, const char* what);
  Status ReadI32(int32_t* out, const char* what);
  Status ReadU32(uint32_t* out, const char* what);
  Status ReadI64(int64_t* out, const char* what);
  Status ReadU64(uint64_t* out, const char* what);
  // A NUL-terminated string; the NUL is consumed, not returned.
  Status ReadCString(std::string* out, const char* what);
  // Exactly n bytes, as a view into the buffer (valid while the buffer lives).
  Status ReadBytes(size_t n, std::string_view* out, const char* what);
  // The rest of the buffer.
  std::string_view ReadRest();

 private:
  Status Truncated(const char* what, size_t need) const;
  std::string_view data_;
  size_t pos_ = 0;
};

// Big-endian encoders, used to build walsender replies and test fixtures.
void PutU8(std::string* dst, uint8_t v);
void PutI16(std::string* dst, int16_t v);
void PutI32(std::string* dst, int32_t v);
void PutU32(std::string* dst, uint32_t v);
void PutI64(std::string* dst, int64_t v);
void PutU64(std::string* dst, uint64_t v);
void PutCString(std::string* dst, std::string_view s);

}  // namespace lorry

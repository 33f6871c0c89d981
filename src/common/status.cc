#include "common/status.h"

namespace lorry {

int Status::ExitCode() const {
  switch (kind_) {
    case Kind::kOk:
      return 0;
    case Kind::kNotTrue:
    case Kind::kTimeout:
      return 1;
    case Kind::kUsage:
    case Kind::kPrecondition:
      return 2;
    case Kind::kConnection:
    case Kind::kAuth:
    case Kind::kServer:
    case Kind::kProtocol:
      return 3;
    case Kind::kCancelled:
      return 130;
    case Kind::kInternal:
      return 4;
  }
  return 4;
}

Status Status::WithContext(const std::string& context) const {
  if (ok()) return *this;
  return Status(kind_, context + ": " + message_);
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return message_;
}

}  // namespace lorry

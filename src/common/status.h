// Status and Result<T>: how errors travel between lorry's modules.
//
// A Status is either ok or carries a Kind and a message. The kind decides the
// process exit code (see ExitCode) and whether an operation may be retried;
// context is prepended on the way up ("apply UPDATE public.t: <cause>").
// Exceptions are not used across module boundaries.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace lorry {

class Status {
 public:
  enum class Kind {
    kOk,
    kUsage,         // bad command line or configuration (exit 2)
    kPrecondition,  // a server or object is not as lorry needs it (exit 2)
    kNotTrue,       // the thing checked is not true, e.g. compare differs (exit 1)
    kConnection,    // cannot reach or lost a server (exit 3, retryable)
    kAuth,          // the server refused the credentials or the database (exit 3, not retryable)
    kServer,        // a server reported an error (exit 3)
    kProtocol,      // malformed replication data (exit 3)
    kTimeout,       // a wait ran out of time (exit 1)
    kCancelled,     // stopped on request (SIGINT/SIGTERM)
    kInternal,      // a bug in lorry
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status Usage(std::string m) { return Status(Kind::kUsage, std::move(m)); }
  static Status Precondition(std::string m) { return Status(Kind::kPrecondition, std::move(m)); }
  static Status NotTrue(std::string m) { return Status(Kind::kNotTrue, std::move(m)); }
  static Status Connection(std::string m) { return Status(Kind::kConnection, std::move(m)); }
  static Status Auth(std::string m) { return Status(Kind::kAuth, std::move(m)); }
  static Status Server(std::string m) { return Status(Kind::kServer, std::move(m)); }
  static Status Protocol(std::string m) { return Status(Kind::kProtocol, std::move(m)); }
  static Status Timeout(std::string m) { return Status(Kind::kTimeout, std::move(m)); }
  static Status Cancelled(std::string m) { return Status(Kind::kCancelled, std::move(m)); }
  static Status Internal(std::string m) { return Status(Kind::kInternal, std::move(m)); }

  bool ok() const { return kind_ == Kind::kOk; }
  Kind kind() const { return kind_; }
  const std::string& message() const { return message_; }

  // True for failures that may go away by themselves (a lost connection, a
  // server restarting); the daemon retries those with backoff.
  bool retryable() const { return kind_ == Kind::kConnection; }

  // Process exit status for a command that ends with this status:
  // 0 ok, 1 not true / timeout, 2 usage or precondition, 3 server or connection.
  int ExitCode() const;

  // Returns a copy whose message is "<context>: <message>". Ok stays ok.
  Status WithContext(const std::string& context) const;

  // The same kind with another message. Ok stays ok.
  Status WithMessage(std::string message) const { return ok() ? *this : Status(kind_, std::move(message)); }

  std::string ToString() const;

 private:
  Status(Kind k, std::string m) : kind_(k), message_(std::move(m)) {}
  Kind kind_ = Kind::kOk;
  std::string message_;
};

// Result<T>: a T or a non-ok Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}                 // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {           // NOLINT
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace lorry

// Propagate a non-ok Status from an expression returning Status.
#define LORRY_RETURN_IF_ERROR(expr)        \
  do {                                     \
    ::lorry::Status _st = (expr);          \
    if (!_st.ok()) return _st;             \
  } while (0)

#define LORRY_CONCAT_INNER(a, b) a##b
#define LORRY_CONCAT(a, b) LORRY_CONCAT_INNER(a, b)
// LORRY_ASSIGN_OR_RETURN(auto x, ExprReturningResult());
#define LORRY_ASSIGN_OR_RETURN(lhs, expr) \
  LORRY_ASSIGN_OR_RETURN_IMPL(LORRY_CONCAT(_res_, __LINE__), lhs, expr)
#define LORRY_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

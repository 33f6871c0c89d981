// StreamSpool: the changes of in-progress transactions that pgoutput streams
// (option streaming = on, protocol >= 2, PostgreSQL >= 14), kept in files
// until the transaction's end: STREAM COMMIT replays them in order, STREAM
// ABORT discards them, or the part written since an aborted subtransaction
// began. One file per streamed top-level transaction; lorry's memory does not
// grow with a transaction's size.
//
// The files are a cache, never state: after a crash the provider streams the
// transactions again from the slot. They hold row data, so they are private:
// - each process gets its own directory, made by mkdtemp under the parent
//   (lorry-spool-<pid>-XXXXXX, mode 0700, checked to belong to this user); a
//   directory or link someone else made beforehand is never used;
// - the parent ([run] spool_dir, default $TMPDIR or /tmp) must not let other
//   users replace that directory: writable by others only with the sticky
//   bit, owned by this user or root;
// - files are created inside it relative to its descriptor, with
//   O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600: a planted name is refused.
// The directory goes when the spool is destroyed; directories of this user's
// dead processes are removed at creation.
//
// A size limit (max_bytes) and a full disk end an Append with an error and
// full() true: the caller asks the provider for the transaction again, after
// its commit (nothing is lost, see daemon.cc).
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string_view>

#include "common/lsn.h"
#include "common/status.h"

namespace lorry::replication {

class StreamSpool {
 public:
  struct Options {
    std::filesystem::path parent;  // empty: $TMPDIR, else /tmp
    int64_t max_bytes = 0;         // all open transactions together; 0: no limit but the disk
  };
  // Makes the private directory. kPrecondition when the parent is unsafe or
  // the directory cannot be made (the message names it and the fix).
  static Result<std::unique_ptr<StreamSpool>> Create(const Options& options);
  ~StreamSpool();
  StreamSpool(const StreamSpool&) = delete;
  StreamSpool& operator=(const StreamSpool&) = delete;

  // Appends one pgoutput message (as received) of streamed transaction
  // `xid`; `subxid` is the (sub)transaction the message carries.
  Status Append(Xid xid, Xid subxid, std::string_view message);
  // STREAM ABORT: the whole transaction when subxid == xid, else the
  // subtransaction and everything spooled after its first message.
  Status Abort(Xid xid, Xid subxid);
  // STREAM COMMIT: calls `apply` with each spooled message in order, then
  // forgets the transaction (also when `apply` fails).
  Status Replay(Xid xid, const std::function<Status(std::string_view)>& apply);

  size_t open_transactions() const { return files_.size(); }
  int64_t bytes() const { return bytes_; }
  const std::filesystem::path& dir() const { return dir_; }
  // The last error was the size limit or a full disk (not a fault of the data).
  bool full() const { return full_; }

 private:
  StreamSpool(std::filesystem::path dir, int dir_fd, int64_t max_bytes)
      : dir_(std::move(dir)), dir_fd_(dir_fd), max_bytes_(max_bytes) {}
  struct File {
    std::FILE* f = nullptr;
    int64_t size = 0;
    std::map<Xid, int64_t> subxact_start;  // first offset of each subtransaction seen
  };
  Status Open(Xid xid, File* file);
  void Close(Xid xid);
  static std::string NameOf(Xid xid);
  Status IoError(const std::string& what, Xid xid);

  std::filesystem::path dir_;
  int dir_fd_ = -1;  // the directory as opened and checked: files are made relative to it
  int64_t max_bytes_ = 0;
  std::map<Xid, File> files_;
  int64_t bytes_ = 0;
  bool full_ = false;
};

}  // namespace lorry::replication

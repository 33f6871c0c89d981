#include "replication/stream_spool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/log.h"

namespace lorry::replication {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kPrefix = "lorry-spool-";

// Removes this user's spool directories whose process is gone (a kill -9
// leaves them): lorry-spool-<pid>-XXXXXX, a real directory, ours.
void RemoveStale(const fs::path& parent) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0) continue;
    struct stat st;
    if (lstat(entry.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) continue;
    pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + kPrefix.size()));
    if (pid <= 0 || pid == getpid()) continue;
    if (kill(pid, 0) != 0 && errno == ESRCH) fs::remove_all(entry.path(), ec);
  }
}

Status Refused(const fs::path& parent, const std::string& why) {
  return Status::Precondition(fmt::format(
      "cannot keep the spool of streamed transactions in {}: {}. Set [run] spool_dir in lorry.toml to a directory "
      "that only lorry's user can write (e.g. mkdir -m 700 /var/lib/lorry/spool), or one with the sticky bit as "
      "/tmp has",
      parent.string(), why));
}

// The parent must not let another user rename or replace what lorry makes in it.
Status CheckParent(const fs::path& parent) {
  struct stat st;
  if (stat(parent.c_str(), &st) != 0) return Refused(parent, std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return Refused(parent, "not a directory");
  if (st.st_uid != geteuid() && st.st_uid != 0)
    return Refused(parent, fmt::format("it belongs to another user (uid {}), who could replace lorry's files",
                                       st.st_uid));
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0)
    return Refused(parent, fmt::format("other users may write to it (mode {:o}) and it has no sticky bit, so they "
                                       "could replace lorry's directory",
                                       st.st_mode & 07777));
  return Status::Ok();
}

bool DiskFull(int err) { return err == ENOSPC || err == EDQUOT || err == EFBIG; }

}  // namespace

Result<std::unique_ptr<StreamSpool>> StreamSpool::Create(const Options& options) {
  fs::path parent = options.parent;
  if (parent.empty()) {
    std::error_code ec;
    parent = fs::temp_directory_path(ec);
    if (ec) parent = "/tmp";
  }
  LORRY_RETURN_IF_ERROR(CheckParent(parent));
  RemoveStale(parent);
  std::string path = (parent / fmt::format("{}{}-XXXXXX", kPrefix, getpid())).string();
  // mkdtemp makes a new directory with a name nobody could foresee, mode 0700.
  if (mkdtemp(path.data()) == nullptr) return Refused(parent, std::strerror(errno));
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_uid != geteuid() || fchmod(fd, 0700) != 0) {
    std::string why = fd < 0 ? std::strerror(errno) : "the directory lorry made is not its own";
    if (fd >= 0) close(fd);
    return Refused(parent, fmt::format("{}: {}", path, why));
  }
  spdlog::debug("spool for streamed transactions in {} (limit {} bytes)", path, options.max_bytes);
  return std::unique_ptr<StreamSpool>(new StreamSpool(path, fd, options.max_bytes));
}

StreamSpool::~StreamSpool() {
  while (!files_.empty()) Close(files_.begin()->first);
  if (dir_fd_ >= 0) close(dir_fd_);
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string StreamSpool::NameOf(Xid xid) { return fmt::format("{}.spool", xid); }

Status StreamSpool::IoError(const std::string& what, Xid xid) {
  int err = errno;
  full_ = DiskFull(err);
  return Status::Internal(fmt::format("{} {}: {} (the spool of streamed transactions; {})", what,
                                      (dir_ / NameOf(xid)).string(), std::strerror(err),
                                      full_ ? "free space there, or set [run] spool_dir to a larger disk"
                                            : "check [run] spool_dir"));
}

Status StreamSpool::Open(Xid xid, File* file) {
  // Relative to the checked directory; never through a link, never a file
  // that exists already.
  int fd = openat(dir_fd_, NameOf(xid).c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("cannot create", xid);
  file->f = fdopen(fd, "w+b");
  if (!file->f) {
    close(fd);
    return IoError("cannot open", xid);
  }
  return Status::Ok();
}

void StreamSpool::Close(Xid xid) {
  auto it = files_.find(xid);
  if (it == files_.end()) return;
  if (it->second.f) {
    std::fclose(it->second.f);
    unlinkat(dir_fd_, NameOf(xid).c_str(), 0);
  }
  bytes_ -= it->second.size;
  files_.erase(it);
}

Status StreamSpool::Append(Xid xid, Xid subxid, std::string_view message) {
  uint32_t n = static_cast<uint32_t>(message.size());
  int64_t add = static_cast<int64_t>(sizeof n + n);
  if (max_bytes_ > 0 && bytes_ + add > max_bytes_) {
    full_ = true;
    return Status::Internal(fmt::format(
        "the spool of streamed transactions in {} reached its limit, [run] spool_max_size = {} bytes ({} open "
        "transactions, spooling xid {})",
        dir_.string(), max_bytes_, files_.size() + (files_.count(xid) ? 0 : 1), xid));
  }
  auto [it, created] = files_.try_emplace(xid);
  File& file = it->second;
  if (created) {
    if (Status s = Open(xid, &file); !s.ok()) {
      files_.erase(it);
      return s;
    }
  }
  if (subxid != 0 && subxid != xid) file.subxact_start.try_emplace(subxid, file.size);
  if (std::fwrite(&n, sizeof n, 1, file.f) != 1 || (n > 0 && std::fwrite(message.data(), 1, n, file.f) != n))
    return IoError("cannot write", xid);
  file.size += add;
  bytes_ += add;
  return Status::Ok();
}

Status StreamSpool::Abort(Xid xid, Xid subxid) {
  auto it = files_.find(xid);
  if (it == files_.end()) return Status::Ok();  // nothing of it was spooled
  if (subxid == xid) {
    Close(xid);
    return Status::Ok();
  }
  File& file = it->second;
  auto sub = file.subxact_start.find(subxid);
  if (sub == file.subxact_start.end()) return Status::Ok();  // it changed nothing lorry saw
  int64_t keep = sub->second;
  // Subtransactions that began after it are part of it (nested) or aborted
  // with it: their offsets go too.
  for (auto s = file.subxact_start.begin(); s != file.subxact_start.end();)
    s = s->second >= keep ? file.subxact_start.erase(s) : std::next(s);
  if (std::fflush(file.f) != 0 || ftruncate(fileno(file.f), keep) != 0 || std::fseek(file.f, 0, SEEK_END) != 0)
    return IoError("cannot truncate", xid);
  bytes_ -= file.size - keep;
  file.size = keep;
  return Status::Ok();
}

Status StreamSpool::Replay(Xid xid, const std::function<Status(std::string_view)>& apply) {
  auto it = files_.find(xid);
  if (it == files_.end()) return Status::Ok();  // streamed nothing lorry kept
  File& file = it->second;
  Status result;
  if (std::fflush(file.f) != 0 || std::fseek(file.f, 0, SEEK_SET) != 0) {
    result = IoError("cannot read", xid);
  } else {
    std::string buffer;
    for (int64_t at = 0; at < file.size && result.ok();) {
      uint32_t n = 0;
      errno = 0;  // a short read is no full disk
      if (std::fread(&n, sizeof n, 1, file.f) != 1) {
        result = IoError("cannot read", xid);
        break;
      }
      buffer.resize(n);
      if (n > 0 && std::fread(buffer.data(), 1, n, file.f) != n) {
        result = IoError("cannot read", xid);
        break;
      }
      at += static_cast<int64_t>(sizeof n + n);
      result = apply(buffer);
    }
  }
  Close(xid);
  return result;
}

}  // namespace lorry::replication

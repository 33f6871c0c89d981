#include "replication/stream_spool.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/log.h"

namespace lorry::replication {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kPrefix = "lorry-spool-";

// Removes spool directories whose process is gone (a kill -9 leaves them).
void RemoveStale(const fs::path& parent) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0) continue;
    pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + kPrefix.size()));
    if (pid <= 0 || pid == getpid()) continue;
    if (kill(pid, 0) != 0 && errno == ESRCH) fs::remove_all(entry.path(), ec);
  }
}

Status IoError(const std::string& what, const fs::path& path) {
  return Status::Internal(fmt::format("{} {}: {} (the spool of streamed transactions; check free space there, "
                                      "or set TMPDIR)",
                                      what, path.string(), std::strerror(errno)));
}

}  // namespace

StreamSpool::StreamSpool(fs::path parent) {
  std::error_code ec;
  if (parent.empty()) parent = fs::temp_directory_path(ec);
  if (parent.empty()) parent = "/tmp";
  RemoveStale(parent);
  dir_ = parent / fmt::format("{}{}", kPrefix, getpid());
}

StreamSpool::~StreamSpool() {
  while (!files_.empty()) Close(files_.begin()->first);
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

fs::path StreamSpool::PathOf(Xid xid) const { return dir_ / fmt::format("{}.spool", xid); }

Status StreamSpool::Open(Xid xid, File* file) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return Status::Internal(fmt::format("cannot create {}: {}", dir_.string(), ec.message()));
  file->f = std::fopen(PathOf(xid).c_str(), "w+b");
  if (!file->f) return IoError("cannot create", PathOf(xid));
  return Status::Ok();
}

void StreamSpool::Close(Xid xid) {
  auto it = files_.find(xid);
  if (it == files_.end()) return;
  if (it->second.f) std::fclose(it->second.f);
  bytes_ -= it->second.size;
  std::error_code ec;
  fs::remove(PathOf(xid), ec);
  files_.erase(it);
}

Status StreamSpool::Append(Xid xid, Xid subxid, std::string_view message) {
  auto [it, created] = files_.try_emplace(xid);
  File& file = it->second;
  if (created) LORRY_RETURN_IF_ERROR(Open(xid, &file));
  if (subxid != 0 && subxid != xid) file.subxact_start.try_emplace(subxid, file.size);
  uint32_t n = static_cast<uint32_t>(message.size());
  if (std::fwrite(&n, sizeof n, 1, file.f) != 1 ||
      (n > 0 && std::fwrite(message.data(), 1, n, file.f) != n))
    return IoError("cannot write", PathOf(xid));
  file.size += static_cast<int64_t>(sizeof n + n);
  bytes_ += static_cast<int64_t>(sizeof n + n);
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
    return IoError("cannot truncate", PathOf(xid));
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
    result = IoError("cannot read", PathOf(xid));
  } else {
    std::string buffer;
    for (int64_t at = 0; at < file.size && result.ok();) {
      uint32_t n = 0;
      if (std::fread(&n, sizeof n, 1, file.f) != 1) {
        result = IoError("cannot read", PathOf(xid));
        break;
      }
      buffer.resize(n);
      if (n > 0 && std::fread(buffer.data(), 1, n, file.f) != n) {
        result = IoError("cannot read", PathOf(xid));
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

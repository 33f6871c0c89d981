#include "apply/row_batch.h"

#include <algorithm>

namespace lorry::apply {

using Kind = protocol::TupleColumn::Kind;

size_t RowBatch::SizeOf(const std::vector<BatchValue>& values) {
  size_t n = sizeof(BatchRow);
  for (const auto& v : values) n += sizeof(BatchValue) + v.text.size();
  return n;
}

BatchRow* RowBatch::Find(const std::string& key) {
  if (!collapse_) return nullptr;
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &rows_[it->second];
}

void RowBatch::Append(std::string key, BatchOp op, std::vector<BatchValue> values) {
  bytes_ += SizeOf(values) + key.size();
  if (collapse_) by_key_.emplace(std::move(key), static_cast<uint32_t>(rows_.size()));
  rows_.push_back({op, false, std::move(values)});
}

// The pending row takes the new values; columns not sent keep theirs.
void RowBatch::Replace(BatchRow* row, std::vector<BatchValue> values, bool merge) {
  bytes_ -= std::min(bytes_, SizeOf(row->values));
  if (merge)
    for (size_t i = 0; i < values.size() && i < row->values.size(); ++i)
      if (values[i].kind == Kind::kUnchanged) values[i] = std::move(row->values[i]);
  row->values = std::move(values);
  bytes_ += SizeOf(row->values);
}

bool RowBatch::AddInsert(std::string key, std::vector<BatchValue> values) {
  BatchRow* row = Find(key);
  if (!row) {
    Append(std::move(key), BatchOp::kInsert, std::move(values));
    return true;
  }
  if (row->op != BatchOp::kDelete) return false;
  row->op = BatchOp::kReplace;
  Replace(row, std::move(values), false);
  return true;
}

bool RowBatch::AddUpdate(std::string key, std::vector<BatchValue> values) {
  if (!collapse_) return false;
  BatchRow* row = Find(key);
  if (!row) {
    Append(std::move(key), BatchOp::kUpdate, std::move(values));
    return true;
  }
  if (row->op == BatchOp::kDelete) return false;
  Replace(row, std::move(values), true);  // insert, replace and update stay what they are
  return true;
}

bool RowBatch::AddDelete(std::string key, std::vector<BatchValue> values) {
  if (!collapse_) return false;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    Append(std::move(key), BatchOp::kDelete, std::move(values));
    return true;
  }
  BatchRow* row = &rows_[it->second];
  switch (row->op) {
    case BatchOp::kDelete:
      return false;
    case BatchOp::kInsert:
      // Inserted and deleted within the batch: nothing reaches the subscriber.
      row->dead = true;
      by_key_.erase(it);
      return true;
    case BatchOp::kUpdate:
    case BatchOp::kReplace:
      row->op = BatchOp::kDelete;
      Replace(row, std::move(values), false);
      return true;
  }
  return false;
}

void RowBatch::Clear() {
  rows_.clear();
  by_key_.clear();
  bytes_ = 0;
}

void EncodeKeyPart(std::string* key, const BatchValue& value) {
  if (value.kind != Kind::kText) {
    *key += value.kind == Kind::kNull ? 'n' : 'u';
    return;
  }
  *key += 't';
  *key += std::to_string(value.text.size());
  *key += ':';
  *key += value.text;
}

void AppendArrayElement(std::string* out, const BatchValue& value, bool first) {
  if (!first) *out += ',';
  if (value.kind != Kind::kText) {
    *out += "NULL";
    return;
  }
  *out += '"';
  for (char c : value.text) {
    if (c == '"' || c == '\\') *out += '\\';
    *out += c;
  }
  *out += '"';
}

}  // namespace lorry::apply

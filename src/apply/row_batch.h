// RowBatch: the changes to one table that the applier holds back inside the
// open subscriber transaction, to send them as a few set-based statements
// (DELETE ... USING unnest(...), UPDATE ... FROM unnest(...),
// INSERT ... SELECT ... FROM unnest(...)) instead of one statement per row.
//
// Two modes:
//  - collapsing (the table's rows are identified by a key that no other
//    unique index or exclusion constraint of the subscriber table competes
//    with, and no trigger fires on replicated changes): the changes are kept
//    per key and merged, so that each key is touched once, with the state the
//    provider left it in. Rows with different keys cannot interfere, so the
//    batch may apply all its deletes, then its updates, then its inserts.
//  - insert runs (any other table): only consecutive INSERTs are held; the
//    applier sends the run before any other change to the table.
//
// Merging, per key (what is pending, then what arrives -> what is pending):
//   -      + INSERT -> insert        -      + UPDATE -> update     -      + DELETE -> delete
//   insert + UPDATE -> insert(new)   insert + DELETE -> nothing
//   update + UPDATE -> update(new)   update + DELETE -> delete
//   delete + INSERT -> replace (delete the old row, insert the new one)
//   replace+ UPDATE -> replace(new)  replace+ DELETE -> delete
// Anything else (an INSERT of a key already inserted, a change after a
// DELETE other than INSERT) cannot happen on a consistent replica; Add*
// returns false and the caller sends the batch first, so the change is then
// applied in its original order and fails or is skipped as it would alone.
// An UPDATE merged into a pending row keeps the pending values of columns it
// did not send (unchanged TOASTed values).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol/pgoutput.h"

namespace lorry::apply {

struct BatchValue {
  protocol::TupleColumn::Kind kind = protocol::TupleColumn::Kind::kNull;  // kNull, kText or kUnchanged
  std::string text;
};

enum class BatchOp : uint8_t { kInsert, kUpdate, kDelete, kReplace };

struct BatchRow {
  BatchOp op = BatchOp::kInsert;
  bool dead = false;                // merged away (an insert then deleted)
  std::vector<BatchValue> values;   // one per column of the relation; for kDelete the key columns matter
};

class RowBatch {
 public:
  explicit RowBatch(bool collapse) : collapse_(collapse) {}

  bool collapsing() const { return collapse_; }

  // `key` is the row's key in any unambiguous encoding (see EncodeKey);
  // ignored when not collapsing. Return false: send the batch, then retry.
  bool AddInsert(std::string key, std::vector<BatchValue> values);
  bool AddUpdate(std::string key, std::vector<BatchValue> values);
  bool AddDelete(std::string key, std::vector<BatchValue> values);

  const std::vector<BatchRow>& rows() const { return rows_; }
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  size_t bytes() const { return bytes_; }
  void Clear();

 private:
  BatchRow* Find(const std::string& key);
  void Append(std::string key, BatchOp op, std::vector<BatchValue> values);
  void Replace(BatchRow* row, std::vector<BatchValue> values, bool merge);
  static size_t SizeOf(const std::vector<BatchValue>& values);

  bool collapse_;
  std::vector<BatchRow> rows_;
  std::unordered_map<std::string, uint32_t> by_key_;
  size_t bytes_ = 0;
};

// Appends `value` to an unambiguous key encoding (length-prefixed; NULL
// differs from every string).
void EncodeKeyPart(std::string* key, const BatchValue& value);

// PostgreSQL array literal of text elements: {"a","b\"c",NULL}.
void AppendArrayElement(std::string* out, const BatchValue& value, bool first);

}  // namespace lorry::apply

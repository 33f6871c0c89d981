#include "catalog/partitions.h"

#include <map>
#include <set>

#include <fmt/format.h>

namespace lorry::catalog {

namespace {

struct Node {
  pg::QualifiedName name, parent;
  std::string bound;    // FOR VALUES ... / DEFAULT
  std::string partkey;  // PARTITION BY ... when itself partitioned, else ""
};

// Every partition under `root` on the provider, parents before children.
Result<std::vector<Node>> Tree(pg::PgConn& provider, const pg::QualifiedName& root) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, provider.ExecParams(
                  "SELECT n.nspname, c.relname, pn.nspname, p.relname, pg_get_expr(c.relpartbound, c.oid), "
                  "  CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END "
                  "FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid "
                  "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class p ON p.oid = t.parentrelid "
                  "JOIN pg_namespace pn ON pn.oid = p.relnamespace "
                  "WHERE t.level > 0 AND c.relkind IN ('r', 'p') ORDER BY t.level, 1, 2",
                  {root.Quoted()}));
  std::vector<Node> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({{std::string(r.Get(i, 0)), std::string(r.Get(i, 1))},
                   {std::string(r.Get(i, 2)), std::string(r.Get(i, 3))},
                   std::string(r.Get(i, 4)),
                   r.IsNull(i, 5) ? "" : std::string(r.Get(i, 5))});
  return out;
}

// The subscriber's partitioned tables among `names` -> whether each has a
// DEFAULT partition, and the names of every partition it has at all.
struct SubscriberSide {
  std::map<pg::QualifiedName, bool> partitioned;  // -> has a default partition
  std::set<pg::QualifiedName> tables;
};

Result<SubscriberSide> ReadSubscriber(pg::PgConn& subscriber, const pg::QualifiedName& root) {
  SubscriberSide side;
  LORRY_ASSIGN_OR_RETURN(
      auto r, subscriber.ExecParams(
                  "SELECT n.nspname, c.relname, c.relkind = 'p', "
                  "  EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class d ON d.oid = i.inhrelid "
                  "          WHERE i.inhparent = c.oid AND pg_get_expr(d.relpartbound, d.oid) = 'DEFAULT') "
                  "FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid "
                  "JOIN pg_namespace n ON n.oid = c.relnamespace",
                  {root.Quoted()}));
  for (int i = 0; i < r.rows(); ++i) {
    pg::QualifiedName q{std::string(r.Get(i, 0)), std::string(r.Get(i, 1))};
    side.tables.insert(q);
    if (r.GetBool(i, 2)) side.partitioned[q] = r.GetBool(i, 3);
  }
  return side;
}

}  // namespace

Result<std::vector<PartitionGap>> MissingPartitions(pg::PgConn& provider, pg::PgConn& subscriber,
                                                    const std::vector<pg::QualifiedName>& roots) {
  std::vector<PartitionGap> out;
  for (const auto& root : roots) {
    LORRY_ASSIGN_OR_RETURN(auto tree, Tree(provider, root));
    if (tree.empty()) continue;
    LORRY_ASSIGN_OR_RETURN(auto side, ReadSubscriber(subscriber, root));
    bool same_layout = false;
    for (const auto& n : tree) same_layout |= side.tables.count(n.name) > 0;
    if (!same_layout) continue;
    for (const auto& n : tree) {
      if (side.tables.count(n.name)) continue;
      auto parent = side.partitioned.find(n.parent);
      // Its parent missing too (reported itself), not partitioned there, or
      // with a default partition that takes the rows: no gap.
      if (parent == side.partitioned.end() || parent->second) continue;
      std::string fix = fmt::format("CREATE TABLE {} PARTITION OF {} {}{};", n.name.Quoted(), n.parent.Quoted(),
                                    n.bound, n.partkey.empty() ? "" : " PARTITION BY " + n.partkey);
      out.push_back({root, n.parent, n.name, fix});
    }
  }
  return out;
}

std::string DescribeGap(const PartitionGap& gap) {
  return fmt::format("partition {} of {} is missing on the subscriber: its rows cannot be applied there (\"no "
                     "partition ... found for row\"). Fix: on the subscriber, {} (or `lorry init --capture-ddl` to "
                     "replay new partitions)",
                     gap.partition.Display(), gap.parent.Display(), gap.fix);
}

}  // namespace lorry::catalog

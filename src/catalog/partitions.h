// Partitions of replicated partitioned tables that the subscriber lacks.
//
// A root replicated through itself (publish_via_partition_root) sends the
// rows of every partition, present and future, as the root's; the
// subscriber routes them through its own table of the root's name. A
// subscriber table that is not partitioned holds them all; one partitioned
// like the provider's (the same partition names, as `add --create` makes it)
// and without a DEFAULT partition refuses the rows of a partition created on
// the provider later ("no partition of relation ... found for row"), until
// that partition exists there too. Those are the gaps found here, each with
// the statement that closes it. A subscriber partitioned otherwise (no
// partition name in common) is not judged: its bounds are its own.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"

namespace lorry::catalog {

struct PartitionGap {
  pg::QualifiedName root;       // the replicated table
  pg::QualifiedName parent;     // the partition's parent (the root, or a partition of it)
  pg::QualifiedName partition;  // on the provider, missing on the subscriber
  std::string fix;              // CREATE TABLE ... PARTITION OF ... FOR VALUES ...;
};

// The gaps under each of `roots` (replicated tables; those that are not
// partitioned on the provider are skipped).
Result<std::vector<PartitionGap>> MissingPartitions(pg::PgConn& provider, pg::PgConn& subscriber,
                                                    const std::vector<pg::QualifiedName>& roots);

// "partition public.p5 of public.payment is missing on the subscriber (...).
// Fix: on the subscriber, CREATE TABLE ...;"
std::string DescribeGap(const PartitionGap& gap);

}  // namespace lorry::catalog

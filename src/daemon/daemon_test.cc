#include "daemon/daemon.h"

#include <gtest/gtest.h>

namespace lorry::daemon {
namespace {

TEST(StreamOptions, AllPublicationsAndMessagesAndStreamingFromFourteen) {
  EXPECT_EQ(StreamOptions(1, {"lorry_main", "lorry_main_insert_only"}),
            "proto_version '1', publication_names '\"lorry_main\",\"lorry_main_insert_only\"'");
  EXPECT_EQ(StreamOptions(3, {"lorry_main", "lorry_main_insert_only", "lorry_main_ops_iu"}),
            "proto_version '3', publication_names '\"lorry_main\",\"lorry_main_insert_only\",\"lorry_main_ops_iu\"', "
            "messages 'true', streaming 'on'");
  EXPECT_EQ(StreamOptions(2, {"lorry_main"}, false), "proto_version '2', publication_names '\"lorry_main\"', messages 'true'");
  EXPECT_EQ(ProtocolVersionFor(140005), 2);
  // PostgreSQL 16+: changes the provider applied from its own provider are sent too (cascades).
  EXPECT_EQ(StreamOptions(4, {"lorry_b"}), "proto_version '4', publication_names '\"lorry_b\"', messages 'true', "
                                           "streaming 'on', origin 'any'");
}

}  // namespace
}  // namespace lorry::daemon

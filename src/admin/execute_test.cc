#include <gtest/gtest.h>

#include "admin/admin.h"

namespace lorry::admin {
namespace {

TEST(FindTransactionControl, FindsStatementsThatEndTheTransaction) {
  EXPECT_EQ(FindTransactionControl("ALTER TABLE t ADD c int; COMMIT;"), "COMMIT");
  EXPECT_EQ(FindTransactionControl("begin;\nalter table t add c int;"), "BEGIN");
  EXPECT_EQ(FindTransactionControl("-- x\n/* y */ rollback"), "ROLLBACK");
  EXPECT_EQ(FindTransactionControl("select 1;savepoint a"), "SAVEPOINT");
}

TEST(FindTransactionControl, IgnoresWordsInsideStatementsLiteralsAndBodies) {
  EXPECT_EQ(FindTransactionControl("ALTER TABLE t ADD COLUMN \"commit\" int"), std::nullopt);
  EXPECT_EQ(FindTransactionControl("INSERT INTO t VALUES ('; COMMIT')"), std::nullopt);
  EXPECT_EQ(FindTransactionControl("SELECT E'\\'; commit'"), std::nullopt);
  EXPECT_EQ(FindTransactionControl("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END "
                                   "$body$; SELECT 1"),
            std::nullopt);
  EXPECT_EQ(FindTransactionControl("-- commit\nSELECT 1 /* ; rollback */"), std::nullopt);
  EXPECT_EQ(FindTransactionControl("CREATE TABLE ends (a int); UPDATE t SET a = $1"), std::nullopt);
}

}  // namespace
}  // namespace lorry::admin

#include "apply/statement_builder.h"

#include <gtest/gtest.h>

namespace lorry::apply {
namespace {

const pg::QualifiedName kTable{"My Schema", "we\"ird"};

TEST(StatementBuilder, InsertQuotesEverything) {
  EXPECT_EQ(BuildInsert(kTable, {"id", "Select", "a b"}),
            R"(INSERT INTO "My Schema"."we""ird" ("id", "Select", "a b") OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3))");
  EXPECT_EQ(BuildInsert(kTable, {}), R"(INSERT INTO "My Schema"."we""ird" DEFAULT VALUES)");
}

TEST(StatementBuilder, UpdateNumbersSetThenKey) {
  EXPECT_EQ(BuildUpdate({"public", "t"}, {"a", "b"}, {{"id", false, false}}, false),
            R"(UPDATE "public"."t" SET "a" = $1, "b" = $2 WHERE "id" = $3)");
}

TEST(StatementBuilder, UpdateFullIdentityTouchesOneRow) {
  std::vector<KeyColumn> key{{"id", false, false}, {"j", false, true}, {"n", true, false}, {"x", false, false}};
  EXPECT_EQ(BuildUpdate({"public", "t"}, {"j"}, key, true),
            R"(UPDATE "public"."t" SET "j" = $1 WHERE ctid = (SELECT ctid FROM "public"."t" WHERE )"
            R"("id" = $2 AND "j"::text = $3 AND "n" IS NULL AND "x" = $4 LIMIT 1))");
}

TEST(StatementBuilder, Delete) {
  EXPECT_EQ(BuildDelete({"s", "t"}, {{"k1", false, false}, {"k2", false, false}}, false),
            R"(DELETE FROM "s"."t" WHERE "k1" = $1 AND "k2" = $2)");
  EXPECT_EQ(BuildDelete({"s", "t"}, {{"k1", true, false}}, true),
            R"(DELETE FROM "s"."t" WHERE ctid = (SELECT ctid FROM "s"."t" WHERE "k1" IS NULL LIMIT 1))");
}

TEST(StatementBuilder, Truncate) {
  EXPECT_EQ(BuildTruncate({{"a", "t1"}, {"b", "T2"}}, true, true),
            R"(TRUNCATE "a"."t1", "b"."T2" RESTART IDENTITY CASCADE)");
  EXPECT_EQ(BuildTruncate({{"a", "t1"}}, false, false), R"(TRUNCATE "a"."t1")");
}

}  // namespace
}  // namespace lorry::apply

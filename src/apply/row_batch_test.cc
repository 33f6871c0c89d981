#include "apply/row_batch.h"

#include <gtest/gtest.h>

#include "apply/statement_builder.h"

namespace lorry::apply {
namespace {

using Kind = protocol::TupleColumn::Kind;

BatchValue T(std::string s) { return {Kind::kText, std::move(s)}; }
BatchValue Null() { return {Kind::kNull, ""}; }
BatchValue Unchanged() { return {Kind::kUnchanged, ""}; }

std::string Key(const std::string& k) {
  std::string out;
  EncodeKeyPart(&out, T(k));
  return out;
}

// The live (not merged away) rows as "op:v1,v2" strings.
std::vector<std::string> Live(const RowBatch& b) {
  std::vector<std::string> out;
  for (const auto& r : b.rows()) {
    if (r.dead) continue;
    std::string s = r.op == BatchOp::kInsert ? "I" : r.op == BatchOp::kUpdate ? "U" : r.op == BatchOp::kDelete ? "D" : "R";
    s += ":";
    for (size_t i = 0; i < r.values.size(); ++i) {
      if (i) s += ",";
      s += r.values[i].kind == Kind::kText ? r.values[i].text : r.values[i].kind == Kind::kNull ? "NULL" : "u";
    }
    out.push_back(s);
  }
  return out;
}

TEST(RowBatch, UpdatesOfOneKeyCollapseToTheLast) {
  RowBatch b(true);
  EXPECT_TRUE(b.AddUpdate(Key("1"), {T("1"), T("a")}));
  EXPECT_TRUE(b.AddUpdate(Key("2"), {T("2"), T("x")}));
  EXPECT_TRUE(b.AddUpdate(Key("1"), {T("1"), T("b")}));
  EXPECT_EQ(Live(b), (std::vector<std::string>{"U:1,b", "U:2,x"}));
}

TEST(RowBatch, InsertThenUpdateStaysAnInsertWithTheNewValues) {
  RowBatch b(true);
  EXPECT_TRUE(b.AddInsert(Key("1"), {T("1"), T("a"), T("big")}));
  EXPECT_TRUE(b.AddUpdate(Key("1"), {T("1"), T("b"), Unchanged()}));
  EXPECT_EQ(Live(b), (std::vector<std::string>{"I:1,b,big"}));
}

TEST(RowBatch, UnchangedToastKeepsThePendingValue) {
  RowBatch b(true);
  EXPECT_TRUE(b.AddUpdate(Key("1"), {T("1"), T("a"), T("doc")}));
  EXPECT_TRUE(b.AddUpdate(Key("1"), {T("1"), T("b"), Unchanged()}));
  EXPECT_EQ(Live(b), (std::vector<std::string>{"U:1,b,doc"}));
  EXPECT_TRUE(b.AddUpdate(Key("2"), {T("2"), T("c"), Unchanged()}));
  EXPECT_EQ(Live(b)[1], "U:2,c,u");
}

TEST(RowBatch, InsertThenDeleteLeavesNothingAndTheKeyIsFreeAgain) {
  RowBatch b(true);
  EXPECT_TRUE(b.AddInsert(Key("1"), {T("1"), T("a")}));
  EXPECT_TRUE(b.AddDelete(Key("1"), {T("1"), Null()}));
  EXPECT_TRUE(Live(b).empty());
  EXPECT_TRUE(b.AddInsert(Key("1"), {T("1"), T("again")}));
  EXPECT_EQ(Live(b), (std::vector<std::string>{"I:1,again"}));
}

TEST(RowBatch, UpdatedThenDeletedThenInsertedAgainIsAReplace) {
  RowBatch b(true);
  EXPECT_TRUE(b.AddUpdate(Key("1"), {T("1"), T("a")}));
  EXPECT_TRUE(b.AddDelete(Key("1"), {T("1"), Null()}));
  EXPECT_EQ(Live(b), (std::vector<std::string>{"D:1,NULL"}));
  EXPECT_TRUE(b.AddInsert(Key("1"), {T("1"), T("new")}));
  EXPECT_EQ(Live(b), (std::vector<std::string>{"R:1,new"}));
  EXPECT_TRUE(b.AddUpdate(Key("1"), {T("1"), T("newer")}));
  EXPECT_EQ(Live(b), (std::vector<std::string>{"R:1,newer"}));
  EXPECT_TRUE(b.AddDelete(Key("1"), {T("1"), Null()}));
  EXPECT_EQ(Live(b), (std::vector<std::string>{"D:1,NULL"}));
}

TEST(RowBatch, ImpossibleSequencesAskForAFlush) {
  RowBatch b(true);
  EXPECT_TRUE(b.AddInsert(Key("1"), {T("1")}));
  EXPECT_FALSE(b.AddInsert(Key("1"), {T("1")}));
  EXPECT_TRUE(b.AddDelete(Key("2"), {T("2")}));
  EXPECT_FALSE(b.AddUpdate(Key("2"), {T("2")}));
  EXPECT_FALSE(b.AddDelete(Key("2"), {T("2")}));
}

TEST(RowBatch, InsertRunsKeepEveryRowAndTakeNothingElse) {
  RowBatch b(false);
  EXPECT_TRUE(b.AddInsert("", {T("1")}));
  EXPECT_TRUE(b.AddInsert("", {T("1")}));
  EXPECT_FALSE(b.AddUpdate("", {T("1")}));
  EXPECT_FALSE(b.AddDelete("", {T("1")}));
  EXPECT_EQ(b.size(), 2u);
  b.Clear();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.bytes(), 0u);
}

TEST(RowBatch, KeyEncodingIsUnambiguous) {
  std::string a, b, c;
  EncodeKeyPart(&a, T("1:2"));
  EncodeKeyPart(&a, T("3"));
  EncodeKeyPart(&b, T("1"));
  EncodeKeyPart(&b, T("2:3"));
  EncodeKeyPart(&c, Null());
  EXPECT_NE(a, b);
  std::string empty;
  EncodeKeyPart(&empty, T(""));
  EXPECT_NE(c, empty);
}

TEST(RowBatch, ArrayLiteralQuotesEveryElement) {
  std::string a = "{";
  AppendArrayElement(&a, T("plain"), true);
  AppendArrayElement(&a, T("with \"quotes\" and \\ backslash"), false);
  AppendArrayElement(&a, Null(), false);
  AppendArrayElement(&a, T(""), false);
  AppendArrayElement(&a, T("NULL"), false);
  AppendArrayElement(&a, T("{,}"), false);
  a += "}";
  EXPECT_EQ(a, R"({"plain","with \"quotes\" and \\ backslash",NULL,"","NULL","{,}"})");
}

TEST(BatchStatements, QuoteEverythingAndCastEachColumn) {
  pg::QualifiedName table{"My Schema", "we\"ird"};
  std::vector<BatchColumn> key{{"id", "\"pg_catalog\".\"int4\"", false}};
  std::vector<BatchColumn> set{{"a b", "\"pg_catalog\".\"varchar\"", false}};
  EXPECT_EQ(BuildBatchInsert(table, {key[0], set[0]}),
            R"(INSERT INTO "My Schema"."we""ird" ("id", "a b") OVERRIDING SYSTEM VALUE SELECT v.a1::"pg_catalog"."int4", )"
            R"(v.a2::"pg_catalog"."varchar" FROM unnest($1::text[], $2::text[]) AS v(a1, a2))");
  EXPECT_EQ(BuildBatchUpdate(table, key, set),
            R"(UPDATE "My Schema"."we""ird" AS t SET "a b" = v.a2::"pg_catalog"."varchar" FROM )"
            R"(unnest($1::text[], $2::text[]) AS v(a1, a2) WHERE t."id" = v.a1::"pg_catalog"."int4")");
  std::vector<BatchColumn> text_key{{"j", "\"pg_catalog\".\"json\"", true}, {"n", "\"pg_catalog\".\"int8\"", false}};
  EXPECT_EQ(BuildBatchDelete(table, text_key),
            R"(DELETE FROM "My Schema"."we""ird" AS t USING unnest($1::text[], $2::text[]) AS v(a1, a2) )"
            R"(WHERE t."j"::text = v.a1 AND t."n" = v.a2::"pg_catalog"."int8")");
}

}  // namespace
}  // namespace lorry::apply

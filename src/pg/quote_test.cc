// Tests for SQL quoting and qualified-name parsing (no server needed).
#include "pg/quote.h"

#include <map>

#include <gtest/gtest.h>

namespace lorry::pg {
namespace {

QualifiedName MustParse(std::string_view text) {
  auto r = ParseQualifiedName(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().message();
  return r.ok() ? r.value() : QualifiedName{};
}

std::string ParseError(std::string_view text) {
  auto r = ParseQualifiedName(text);
  EXPECT_FALSE(r.ok()) << "expected an error for: " << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().kind(), Status::Kind::kUsage);
  return r.status().message();
}

TEST(QuoteIdent, AlwaysQuotes) {
  EXPECT_EQ(QuoteIdent("t"), "\"t\"");
  EXPECT_EQ(QuoteIdent("select"), "\"select\"");
  EXPECT_EQ(QuoteIdent("MyTable"), "\"MyTable\"");
  EXPECT_EQ(QuoteIdent(""), "\"\"");
}

TEST(QuoteIdent, DoublesEmbeddedQuotes) {
  EXPECT_EQ(QuoteIdent("we\"ird"), "\"we\"\"ird\"");
  EXPECT_EQ(QuoteIdent("\""), "\"\"\"\"");
  EXPECT_EQ(QuoteIdent("a.b c"), "\"a.b c\"");
  EXPECT_EQ(QuoteIdent("it's"), "\"it's\"");
  EXPECT_EQ(QuoteIdent("back\\slash"), "\"back\\slash\"");
}

TEST(QuoteIdent, KeepsUnicode) { EXPECT_EQ(QuoteIdent("tëst_日本"), "\"tëst_日本\""); }

TEST(QuoteIdent, NulIsKeptForTheServerToReject) {
  std::string with_nul("a\0b", 3);
  EXPECT_EQ(QuoteIdent(with_nul), std::string("\"a\0b\"", 5));
}

TEST(QuoteLiteral, PlainValues) {
  EXPECT_EQ(QuoteLiteral(""), "''");
  EXPECT_EQ(QuoteLiteral("abc"), "'abc'");
  EXPECT_EQ(QuoteLiteral("00000003-00000002-1"), "'00000003-00000002-1'");
  EXPECT_EQ(QuoteLiteral("日本"), "'日本'");
}

TEST(QuoteLiteral, DoublesSingleQuotes) {
  EXPECT_EQ(QuoteLiteral("it's"), "'it''s'");
  EXPECT_EQ(QuoteLiteral("'"), "''''");
  EXPECT_EQ(QuoteLiteral("\"x\""), "'\"x\"'");
}

TEST(QuoteLiteral, BackslashesUseEscapeSyntax) {
  // E'' reads the same whatever standard_conforming_strings says.
  EXPECT_EQ(QuoteLiteral("a\\b"), "E'a\\\\b'");
  EXPECT_EQ(QuoteLiteral("\\"), "E'\\\\'");
  EXPECT_EQ(QuoteLiteral("it's \\n"), "E'it''s \\\\n'");
  EXPECT_EQ(QuoteLiteral("\\'"), "E'\\\\'''");
}

TEST(QuoteIdentIfNeeded, BareOnlyWhenSafe) {
  EXPECT_EQ(QuoteIdentIfNeeded("orders"), "orders");
  EXPECT_EQ(QuoteIdentIfNeeded("_x1$"), "_x1$");
  EXPECT_EQ(QuoteIdentIfNeeded("Orders"), "\"Orders\"");
  EXPECT_EQ(QuoteIdentIfNeeded("1abc"), "\"1abc\"");
  EXPECT_EQ(QuoteIdentIfNeeded("$a"), "\"$a\"");
  EXPECT_EQ(QuoteIdentIfNeeded("a b"), "\"a b\"");
  EXPECT_EQ(QuoteIdentIfNeeded("a-b"), "\"a-b\"");
  EXPECT_EQ(QuoteIdentIfNeeded("café"), "\"café\"");
  EXPECT_EQ(QuoteIdentIfNeeded(""), "\"\"");
}

TEST(QuoteIdentIfNeeded, KeywordsAreQuoted) {
  for (std::string_view kw : {"select", "table", "user", "order", "from", "all", "group", "end", "system_user"})
    EXPECT_EQ(QuoteIdentIfNeeded(kw), "\"" + std::string(kw) + "\"") << kw;
  // Type/function-name and column-name keywords too, as quote_ident does.
  for (std::string_view kw : {"left", "join", "int", "values", "json_table", "merge_action", "xmltable"})
    EXPECT_TRUE(IsKeywordNeedingQuotes(kw)) << kw;
  // Unreserved keywords are fine bare.
  for (std::string_view w : {"name", "data", "key", "password", "abort", "zone", "select_", "users"}) {
    EXPECT_FALSE(IsKeywordNeedingQuotes(w)) << w;
    EXPECT_EQ(QuoteIdentIfNeeded(w), w);
  }
}

TEST(QualifiedName, QuotedForSql) {
  EXPECT_EQ((QualifiedName{"public", "t"}).Quoted(), "\"public\".\"t\"");
  EXPECT_EQ((QualifiedName{"", "t"}).Quoted(), "\"t\"");
  EXPECT_EQ((QualifiedName{"My Schema", "we\"ird.name"}).Quoted(), "\"My Schema\".\"we\"\"ird.name\"");
}

TEST(QualifiedName, DisplayForPeople) {
  EXPECT_EQ((QualifiedName{"public", "orders"}).Display(), "public.orders");
  EXPECT_EQ((QualifiedName{"", "orders"}).Display(), "orders");
  EXPECT_EQ((QualifiedName{"public", "select"}).Display(), "public.\"select\"");
  EXPECT_EQ((QualifiedName{"Sales", "t"}).Display(), "\"Sales\".t");
  EXPECT_EQ((QualifiedName{"s", "a.b"}).Display(), "s.\"a.b\"");
  EXPECT_EQ((QualifiedName{"s", "日本"}).Display(), "s.\"日本\"");
  EXPECT_EQ((QualifiedName{"My Schema", "we\"ird"}).Display(), "\"My Schema\".\"we\"\"ird\"");
}

TEST(QualifiedName, ComparesBySchemaThenName) {
  QualifiedName a{"a", "z"}, b{"b", "a"}, a2{"a", "z"};
  EXPECT_EQ(a, a2);
  EXPECT_NE(a, b);
  EXPECT_LT(a, b);
  EXPECT_LT((QualifiedName{"", "x"}), (QualifiedName{"a", "a"}));
  EXPECT_LT((QualifiedName{"s", "T"}), (QualifiedName{"s", "t"}));
  std::map<QualifiedName, int> m{{b, 2}, {a, 1}};
  EXPECT_EQ(m.begin()->first, a);
}

TEST(ParseQualifiedName, Unqualified) {
  EXPECT_EQ(MustParse("t"), (QualifiedName{"", "t"}));
  EXPECT_EQ(MustParse("_t$1"), (QualifiedName{"", "_t$1"}));
}

TEST(ParseQualifiedName, Qualified) { EXPECT_EQ(MustParse("s.t"), (QualifiedName{"s", "t"})); }

TEST(ParseQualifiedName, FoldsUnquotedToLowerCase) {
  EXPECT_EQ(MustParse("Public.MyTable"), (QualifiedName{"public", "mytable"}));
  EXPECT_EQ(MustParse("SELECT"), (QualifiedName{"", "select"}));
  // Only ASCII is folded, as in a UTF-8 database.
  EXPECT_EQ(MustParse("ÉTÉ"), (QualifiedName{"", "ÉtÉ"}));
  EXPECT_EQ(MustParse("Straße"), (QualifiedName{"", "straße"}));
}

TEST(ParseQualifiedName, QuotedKeptExactly) {
  EXPECT_EQ(MustParse("\"My Schema\".\"we\"\"ird.name\""), (QualifiedName{"My Schema", "we\"ird.name"}));
  EXPECT_EQ(MustParse("\"MyTable\""), (QualifiedName{"", "MyTable"}));
  EXPECT_EQ(MustParse("\"select\""), (QualifiedName{"", "select"}));
  EXPECT_EQ(MustParse("\"a.b.c\""), (QualifiedName{"", "a.b.c"}));
  EXPECT_EQ(MustParse("\"  \""), (QualifiedName{"", "  "}));
  EXPECT_EQ(MustParse("\"\"\"\""), (QualifiedName{"", "\""}));
  EXPECT_EQ(MustParse("\"日本\".\"表 1\""), (QualifiedName{"日本", "表 1"}));
}

TEST(ParseQualifiedName, MixedQuotedAndUnquoted) {
  EXPECT_EQ(MustParse("Sales.\"Q1\""), (QualifiedName{"sales", "Q1"}));
  EXPECT_EQ(MustParse("\"Sales\".Q1"), (QualifiedName{"Sales", "q1"}));
}

TEST(ParseQualifiedName, UnquotedUnicode) { EXPECT_EQ(MustParse("données.tâche"), (QualifiedName{"données", "tâche"})); }

TEST(ParseQualifiedName, WhitespaceAroundParts) {
  EXPECT_EQ(MustParse("  s . t  "), (QualifiedName{"s", "t"}));
  EXPECT_EQ(MustParse("\ts.\n\"T\" "), (QualifiedName{"s", "T"}));
}

TEST(ParseQualifiedName, DisplayRoundTrips) {
  for (const QualifiedName& n : {QualifiedName{"public", "orders"}, QualifiedName{"", "select"},
                                 QualifiedName{"My Schema", "we\"ird.name"}, QualifiedName{"Sales", "Q1"},
                                 QualifiedName{"日本", "表"}, QualifiedName{"s", "user"}}) {
    EXPECT_EQ(MustParse(n.Display()), n) << n.Display();
    EXPECT_EQ(MustParse(n.Quoted()), n) << n.Quoted();
  }
}

TEST(ParseQualifiedName, ErrorsNameTheInput) {
  EXPECT_NE(ParseError("s..t").find("'s..t'"), std::string::npos);
  EXPECT_NE(ParseError("a.b.c").find("'a.b.c'"), std::string::npos);
}

TEST(ParseQualifiedName, EmptyParts) {
  EXPECT_NE(ParseError("").find("empty"), std::string::npos);
  EXPECT_NE(ParseError("   ").find("empty"), std::string::npos);
  EXPECT_NE(ParseError(".t").find("empty name part"), std::string::npos);
  EXPECT_NE(ParseError("s.").find("empty name part"), std::string::npos);
  EXPECT_NE(ParseError("s. ").find("empty name part"), std::string::npos);
  EXPECT_NE(ParseError("s..t").find("empty name part"), std::string::npos);
  EXPECT_NE(ParseError(".").find("empty name part"), std::string::npos);
  EXPECT_NE(ParseError("\"\"").find("zero-length"), std::string::npos);
  EXPECT_NE(ParseError("s.\"\"").find("zero-length"), std::string::npos);
}

TEST(ParseQualifiedName, UnterminatedQuote) {
  EXPECT_NE(ParseError("\"abc").find("unterminated"), std::string::npos);
  EXPECT_NE(ParseError("s.\"t").find("unterminated"), std::string::npos);
  EXPECT_NE(ParseError("\"a\"\"").find("unterminated"), std::string::npos);
  EXPECT_NE(ParseError("\"").find("unterminated"), std::string::npos);
}

TEST(ParseQualifiedName, TooManyParts) {
  EXPECT_NE(ParseError("db.s.t").find("more than two parts"), std::string::npos);
  EXPECT_NE(ParseError("\"a\".\"b\".\"c\"").find("more than two parts"), std::string::npos);
}

TEST(ParseQualifiedName, Junk) {
  EXPECT_NE(ParseError("s t").find("unexpected 't'"), std::string::npos);
  EXPECT_NE(ParseError("t;").find("unexpected ';'"), std::string::npos);
  EXPECT_NE(ParseError("t; DROP TABLE x").find("unexpected ';'"), std::string::npos);
  EXPECT_NE(ParseError("a-b").find("unexpected '-'"), std::string::npos);
  EXPECT_NE(ParseError("\"a\"b").find("unexpected 'b'"), std::string::npos);
  EXPECT_NE(ParseError("a\"b\"").find("unexpected '\"'"), std::string::npos);
  EXPECT_NE(ParseError("1abc").find("starting with a digit"), std::string::npos);
  EXPECT_NE(ParseError("s.$t").find("unexpected '$'"), std::string::npos);
  EXPECT_NE(ParseError("t(").find("unexpected '('"), std::string::npos);
  EXPECT_NE(ParseError("U&\"d\\0061t\"").find("unexpected '&'"), std::string::npos);
  EXPECT_NE(ParseError("s.t ·").find("unexpected '·'"), std::string::npos);  // whole UTF-8 character
  EXPECT_NE(ParseError(std::string("a\0b", 3)).find("NUL"), std::string::npos);
  EXPECT_NE(ParseError(std::string("\"a\0b\"", 5)).find("NUL"), std::string::npos);
}

}  // namespace
}  // namespace lorry::pg

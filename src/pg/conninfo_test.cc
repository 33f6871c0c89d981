// Tests for conninfo validation and password redaction (no server needed).
#include "pg/conninfo.h"

#include <gtest/gtest.h>

namespace lorry::pg {
namespace {

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// --- RedactConninfo ---

TEST(RedactConninfo, KeyValueKeepsUsefulKeysInOrder) {
  EXPECT_EQ(RedactConninfo("user=bob dbname=app port=5433 host=db1"), "host=db1 port=5433 dbname=app user=bob");
  EXPECT_EQ(RedactConninfo("dbname=app"), "dbname=app");
  EXPECT_EQ(RedactConninfo("host=db1 sslmode=require application_name=x"),
            "host=db1 application_name=x sslmode=require");  // the rest in libpq's order
}

TEST(RedactConninfo, KeyValuePasswordHidden) {
  std::string r = RedactConninfo("host=db1 user=bob password=s3cret dbname=app");
  EXPECT_EQ(r, "host=db1 dbname=app user=bob password=********");
  EXPECT_FALSE(Contains(r, "s3cret"));
}

TEST(RedactConninfo, QuotedPasswordWithSpacesHidden) {
  std::string r = RedactConninfo("host=db1 password='my s3cret \\' pw'");
  EXPECT_FALSE(Contains(r, "s3cret"));
  EXPECT_FALSE(Contains(r, "pw"));
  EXPECT_EQ(r, "host=db1 password=********");
}

TEST(RedactConninfo, SslPasswordHidden) {
  std::string r = RedactConninfo("host=db1 sslpassword=keypass");
  EXPECT_FALSE(Contains(r, "keypass"));
  EXPECT_TRUE(Contains(r, "sslpassword=********"));
}

TEST(RedactConninfo, UriUserInfoPasswordHidden) {
  for (std::string_view uri : {"postgresql://bob:s3cret@db1:5433/app", "postgres://bob:s3cret@db1:5433/app"}) {
    std::string r = RedactConninfo(uri);
    EXPECT_EQ(r, "host=db1 port=5433 dbname=app user=bob password=********") << uri;
  }
}

TEST(RedactConninfo, UriQueryPasswordHidden) {
  std::string r = RedactConninfo("postgresql://bob@db1/app?password=s3cret&sslmode=require");
  EXPECT_EQ(r, "host=db1 dbname=app user=bob password=******** sslmode=require");
}

TEST(RedactConninfo, UriPercentEncodedPasswordHidden) {
  std::string r = RedactConninfo("postgresql://bob:p%40ss%20word@db1/app");
  EXPECT_FALSE(Contains(r, "p@ss"));
  EXPECT_FALSE(Contains(r, "%40"));
  EXPECT_TRUE(Contains(r, "password=********"));
}

TEST(RedactConninfo, UriWithoutPasswordOrParts) {
  EXPECT_EQ(RedactConninfo("postgresql://"), "<libpq defaults>");
  EXPECT_EQ(RedactConninfo("postgresql://db1"), "host=db1");
  EXPECT_EQ(RedactConninfo("postgresql://h1:5432,h2:5433/app"), "host=h1,h2 port=5432,5433 dbname=app");
  EXPECT_EQ(RedactConninfo("postgresql://[::1]:5432/app"), "host=::1 port=5432 dbname=app");
}

TEST(RedactConninfo, ValuesWithSpacesStayQuoted) {
  EXPECT_EQ(RedactConninfo("dbname='my db' options='-c search_path=x'"),
            "dbname='my db' options='-c search_path=x'");
  EXPECT_EQ(RedactConninfo("dbname='it\\'s'"), "dbname='it\\'s'");
  EXPECT_EQ(RedactConninfo("dbname=''"), "dbname=''");
}

TEST(RedactConninfo, NestedConninfoInDbnameScrubbed) {
  // libpq may expand a dbname that is itself a conninfo or URI.
  std::string r = RedactConninfo("dbname='host=x password=s3cret'");
  EXPECT_FALSE(Contains(r, "s3cret"));
  r = RedactConninfo("dbname=postgresql://bob:s3cret@h/app");
  EXPECT_FALSE(Contains(r, "s3cret"));
}

TEST(RedactConninfo, EmptyMeansLibpqDefaults) {
  EXPECT_EQ(RedactConninfo(""), "<libpq defaults>");
  EXPECT_EQ(RedactConninfo("   "), "<libpq defaults>");
}

TEST(RedactConninfo, UnparsableGivesNothingAway) {
  for (std::string_view bad : {"host=db1 password=s3cret oops", "host=a password='s3cret", "postgresql://bob:s3cret@[::1/app",
                               "postgresql://bob:s3cret@h/app?bogus=1", "s3cret", "host=a hots=s3cret"}) {
    EXPECT_EQ(RedactConninfo(bad), "<unparsable conninfo>") << bad;
  }
  EXPECT_EQ(RedactConninfo(std::string("host=a\0password=s3cret", 22)), "<unparsable conninfo>");
}

// --- RedactSecrets ---

TEST(RedactSecrets, LeavesOrdinaryTextAlone) {
  for (std::string_view s :
       {"", "nothing to see", "FATAL:  password authentication failed for user \"bob\"", "host=a port=5432 user=bob",
        "see https://example.com/docs", "postgresql://bob@db1/app", "password", "the password is wrong"}) {
    EXPECT_EQ(RedactSecrets(s), s);
  }
}

TEST(RedactSecrets, UnquotedPassword) {
  EXPECT_EQ(RedactSecrets("host=a password=s3cret user=bob"), "host=a password=******** user=bob");
  EXPECT_EQ(RedactSecrets("password=s3cret"), "password=********");
  EXPECT_EQ(RedactSecrets("password=s3cret\nnext line"), "password=********\nnext line");
}

TEST(RedactSecrets, QuotedPassword) {
  EXPECT_EQ(RedactSecrets("host=a password='s3 cr et' user=bob"), "host=a password='********' user=bob");
  EXPECT_EQ(RedactSecrets("password='it\\'s a secret' x=1"), "password='********' x=1");
  EXPECT_EQ(RedactSecrets("password=\"dq secret\" x=1"), "password=\"********\" x=1");
  EXPECT_EQ(RedactSecrets("password=''"), "password='********'");
}

TEST(RedactSecrets, UnterminatedQuoteHidesTheRest) {
  EXPECT_EQ(RedactSecrets("password='s3cret and more"), "password='********");
}

TEST(RedactSecrets, SpacesAroundEquals) {
  EXPECT_EQ(RedactSecrets("password = s3cret host=a"), "password = ******** host=a");
  EXPECT_EQ(RedactSecrets("password =\t's3 cret'"), "password =\t'********'");
}

TEST(RedactSecrets, AnyCaseAndPrefixedKeys) {
  EXPECT_EQ(RedactSecrets("PASSWORD=s3cret"), "PASSWORD=********");
  EXPECT_EQ(RedactSecrets("PGPASSWORD=s3cret psql"), "PGPASSWORD=******** psql");
  EXPECT_EQ(RedactSecrets("sslpassword=s3cret"), "sslpassword=********");
}

TEST(RedactSecrets, MultipleOccurrences) {
  std::string r = RedactSecrets(
      "provider: password=one subscriber: password='two 2' uri postgresql://u:three@h/db and password=four");
  EXPECT_EQ(r,
            "provider: password=******** subscriber: password='********' uri postgresql://u:********@h/db and "
            "password=********");
}

TEST(RedactSecrets, UriUserInfo) {
  EXPECT_EQ(RedactSecrets("postgresql://bob:s3cret@db1:5432/app"), "postgresql://bob:********@db1:5432/app");
  EXPECT_EQ(RedactSecrets("postgres://bob:s3cret@db1"), "postgres://bob:********@db1");
  EXPECT_EQ(RedactSecrets("cannot connect (postgres://bob:s3cret@db1/app): x"),
            "cannot connect (postgres://bob:********@db1/app): x");
  EXPECT_EQ(RedactSecrets("\"postgresql://u:p@h\""), "\"postgresql://u:********@h\"");
  EXPECT_EQ(RedactSecrets("postgresql://u:@h"), "postgresql://u:********@h");
}

TEST(RedactSecrets, UriRawAtSignInPasswordHidden) {
  EXPECT_EQ(RedactSecrets("postgresql://bob:p@ss@db1/app"), "postgresql://bob:********@db1/app");
}

TEST(RedactSecrets, UriWithoutPasswordUnchanged) {
  EXPECT_EQ(RedactSecrets("postgresql://bob@db1:5432/app"), "postgresql://bob@db1:5432/app");
  EXPECT_EQ(RedactSecrets("postgresql://db1:5432/app"), "postgresql://db1:5432/app");
  EXPECT_EQ(RedactSecrets("postgresql://[::1]:5432/app"), "postgresql://[::1]:5432/app");
  EXPECT_EQ(RedactSecrets("http://example.com:8080/x@y"), "http://example.com:8080/x@y");
}

TEST(RedactSecrets, UriQueryPasswordStopsAtAmpersand) {
  EXPECT_EQ(RedactSecrets("postgresql://bob@h/app?password=s3cret&sslmode=require"),
            "postgresql://bob@h/app?password=********&sslmode=require");
  EXPECT_EQ(RedactSecrets("postgresql://bob@h/app?sslmode=require&password=s3cret"),
            "postgresql://bob@h/app?sslmode=require&password=********");
  // Outside a URI query, '&' may be part of a password: hidden too.
  EXPECT_EQ(RedactSecrets("password=a&b host=x"), "password=******** host=x");
}

TEST(RedactSecrets, IsIdempotent) {
  for (std::string_view s :
       {"host=a password=s3cret", "password='a b'", "provider (host=a password=********): failed",
        "postgresql://u:pw@h/db?password=x&a=b", "password=\"q\"", "password='x"}) {
    std::string once = RedactSecrets(s);
    EXPECT_EQ(RedactSecrets(once), once) << s;
  }
  // An already redacted value keeps what follows it.
  EXPECT_EQ(RedactSecrets("(host=a password=********): x"), "(host=a password=********): x");
}

TEST(RedactSecrets, RedactConninfoOutputIsStable) {
  std::string label = RedactConninfo("postgresql://bob:s3cret@db1/app");
  EXPECT_EQ(RedactSecrets(label), label);
}

// --- ValidateConninfo ---

TEST(ValidateConninfo, AcceptsValidStrings) {
  for (std::string_view ok : {"", "   ", "host=a", "host=a port=5432 dbname='my db' user=bob password=x",
                              "postgresql://", "postgresql://bob:pw@h:5432/app?sslmode=require",
                              "postgres://h1,h2/app", "service=mysvc"}) {
    Status s = ValidateConninfo(ok, "provider");
    EXPECT_TRUE(s.ok()) << ok << ": " << s.message();
  }
}

TEST(ValidateConninfo, RejectsWithKeyAndLibpqReason) {
  Status s = ValidateConninfo("host=a hots=b", "provider");
  EXPECT_EQ(s.kind(), Status::Kind::kUsage);
  EXPECT_EQ(s.message(), "provider: invalid connection string: invalid connection option \"hots\"");

  s = ValidateConninfo("host='a", "subscriber");
  EXPECT_EQ(s.kind(), Status::Kind::kUsage);
  EXPECT_TRUE(Contains(s.message(), "subscriber: invalid connection string: unterminated quoted string"))
      << s.message();

  s = ValidateConninfo("just-a-word", "provider");
  EXPECT_TRUE(Contains(s.message(), "missing \"=\" after \"just-a-word\"")) << s.message();

  s = ValidateConninfo("postgresql://h/app?bogus=1", "provider");
  EXPECT_TRUE(Contains(s.message(), "invalid URI query parameter: \"bogus\"")) << s.message();
}

TEST(ValidateConninfo, NeverEchoesAPassword) {
  // An unquoted password with a space: libpq complains about its second half.
  Status s = ValidateConninfo("host=a password=first second", "provider");
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(Contains(s.message(), "first"));
  EXPECT_FALSE(Contains(s.message(), "second"));
  EXPECT_TRUE(Contains(s.message(), "missing \"=\" after \"...\"")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "holds a password")) << s.message();

  s = ValidateConninfo("postgresql://bob:s3c%zzret@h/app", "subscriber");
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(Contains(s.message(), "s3c")) << s.message();

  s = ValidateConninfo("postgresql://bob:s3cret@[::1/app", "subscriber");
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(Contains(s.message(), "s3cret")) << s.message();

  s = ValidateConninfo("mysql://bob:s3cret@h", "subscriber");
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(Contains(s.message(), "s3cret")) << s.message();
  // Already redacted by RedactSecrets: shown, and nothing said to be hidden.
  EXPECT_TRUE(Contains(s.message(), "after \"mysql://bob:********@h\"")) << s.message();
  EXPECT_FALSE(Contains(s.message(), "hidden")) << s.message();
}

TEST(ValidateConninfo, RejectsNul) {
  Status s = ValidateConninfo(std::string("host=a\0x", 8), "provider");
  EXPECT_EQ(s.kind(), Status::Kind::kUsage);
  EXPECT_TRUE(Contains(s.message(), "NUL")) << s.message();
}

}  // namespace
}  // namespace lorry::pg

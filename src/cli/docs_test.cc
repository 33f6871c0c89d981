#include "cli/docs.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "cli/cli.h"

namespace lorry::cli {
namespace {

struct Built {
  CLI::App app{kDescription, "lorry"};
  GlobalOptions g;
  Action action;
  Built() { BuildApp(app, g, action); }
};

TEST(Docs, ManPageHasEveryVisibleCommandAndOption) {
  Built b;
  std::string man = ManPage(b.app, "9.9");
  EXPECT_EQ(man.rfind(".TH LORRY 1 \"\" \"lorry 9.9\"", 0), 0u);
  for (const char* want : {".SS init", ".SS add", ".SS run", ".SS status", ".SS wait", "\\-\\-metrics\\-addr",
                           "\\-\\-max\\-lag\\-seconds", "LORRY_PROVIDER", ".SH EXIT STATUS", ".SH ENVIRONMENT"})
    EXPECT_NE(man.find(want), std::string::npos) << want;
  EXPECT_EQ(man.find(".SS decode"), std::string::npos) << "hidden commands stay hidden";
  // No line may start with a dot that is not a request we wrote.
  std::istringstream lines(man);
  std::string line;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] == '.')
      EXPECT_TRUE(line.rfind(".TH", 0) == 0 || line.rfind(".SH", 0) == 0 || line.rfind(".SS", 0) == 0 ||
                  line.rfind(".TP", 0) == 0 || line.rfind(".B ", 0) == 0 || line.rfind(".PP", 0) == 0 ||
                  line.rfind(".RS", 0) == 0 || line.rfind(".RE", 0) == 0 || line.rfind(".I ", 0) == 0)
          << line;
}

// Runs the completion in bash as it would for `lorry <words>` with the
// cursor on the last word; returns COMPREPLY.
std::string Complete(const std::string& script, const std::string& words) {
  std::string path = "/tmp/lorry_completion_test.bash";
  std::ofstream(path) << script;
  std::string cmd = "bash -c 'source " + path + "; COMP_WORDS=(lorry " + words +
                    "); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _lorry; echo ${COMPREPLY[*]}'";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  std::remove(path.c_str());
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(Docs, BashCompletionCompletesCommandsAndTheirOptions) {
  Built b;
  std::string script = BashCompletion(b.app);
  EXPECT_EQ(Complete(script, "sta"), "status");
  EXPECT_EQ(Complete(script, "status --ch"), "--check");
  EXPECT_EQ(Complete(script, "--provider x st"), "status") << "a flag's value is not the command";
  EXPECT_EQ(Complete(script, "run --metrics"), "--metrics-addr");
  EXPECT_EQ(Complete(script, "dec"), "") << "hidden";
  EXPECT_EQ(Complete(script, "init --prov"), "--provider");
}

}  // namespace
}  // namespace lorry::cli

#include "cli/docs.h"

#include <cctype>
#include <set>
#include <vector>

#include <fmt/format.h>

namespace lorry::cli {

namespace {

// Subcommands users see (option groups are nameless subcommands).
std::vector<const CLI::App*> Commands(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App* s) { return !s->get_name().empty() && !s->get_group().empty(); });
}

// The app's options and those of its option groups, visible ones only.
std::vector<const CLI::Option*> Options(const CLI::App& app) {
  std::vector<const CLI::Option*> out;
  auto visible = [](const CLI::Option* o) { return !o->get_group().empty(); };
  for (const auto* o : app.get_options(visible)) out.push_back(o);
  for (const auto* group : app.get_subcommands([](const CLI::App* s) { return s->get_name().empty(); }))
    for (const auto* o : group->get_options(visible))
      if (o->get_name() != "--help") out.push_back(o);  // the group's own, the app has one
  return out;
}

// troff: a leading dot or quote would be a request; backslashes and
// hyphens are escaped.
std::string Roff(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\e";
    else if (c == '-')
      out += "\\-";
    else
      out.push_back(c);
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out = "\\&" + out;
  return out;
}

std::string OptionSpelling(const CLI::Option* o) {
  if (o->get_positional()) {
    std::string name = o->get_name(true);
    for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name + (o->get_items_expected_max() > 1 ? "..." : "");
  }
  std::vector<std::string> names;
  for (const auto& s : o->get_snames()) names.push_back("-" + s);
  for (const auto& l : o->get_lnames()) names.push_back("--" + l);
  std::string out = fmt::format("{}", fmt::join(names, ", "));
  if (o->get_items_expected_max() > 0) {
    // "INT:NONNEGATIVE" -> N, "TEXT:{text,json}" -> {text,json}, "TEXT" -> VALUE
    std::string type = o->get_type_name();
    size_t brace = type.find('{');
    if (brace != std::string::npos)
      out += " " + type.substr(brace);
    else if (type.rfind("INT", 0) == 0 || type.rfind("FLOAT", 0) == 0)
      out += " N";
    else
      out += " VALUE";
  }
  return out;
}

std::string OptionsRoff(const std::vector<const CLI::Option*>& options) {
  std::string out;
  for (const auto* o : options) {
    std::string spelling = OptionSpelling(o);
    out += ".TP\n.B " + Roff(spelling) + "\n" + Roff(o->get_description());
    if (!o->get_envname().empty()) out += " (environment: \\fB" + Roff(o->get_envname()) + "\\fR)";
    out += "\n";
  }
  return out;
}

}  // namespace

std::string ManPage(const CLI::App& app, const std::string& version) {
  std::string out;
  out += fmt::format(".TH LORRY 1 \"\" \"lorry {}\" \"User Commands\"\n", Roff(version));
  out += ".SH NAME\nlorry \\- logical replication for PostgreSQL, table by table\n";
  out += ".SH SYNOPSIS\n.B lorry\n[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]\n";
  out += ".SH DESCRIPTION\n"
         "lorry copies chosen tables from one PostgreSQL database (the provider) to another (the subscriber), "
         "continuously, with the server's own logical decoding (pgoutput), publications, replication slots and "
         "replication origins. Nothing is installed inside either server.\n.PP\n"
         "A typical start: \\fBlorry init\\fR, \\fBlorry add \\-\\-all\\fR, \\fBlorry run\\fR (the daemon), "
         "\\fBlorry wait\\fR, \\fBlorry status\\fR.\n";
  out += ".SH GLOBAL OPTIONS\nEvery command takes these.\n" + OptionsRoff(Options(app));
  out += ".SH COMMANDS\n";
  for (const auto* cmd : Commands(app)) {
    out += ".SS " + Roff(cmd->get_name()) + "\n" + Roff(cmd->get_description()) + "\n";
    auto options = Options(*cmd);
    std::vector<const CLI::Option*> shown;
    for (const auto* o : options)
      if (o->get_name() != "--help") shown.push_back(o);
    if (!shown.empty()) out += ".RS\n" + OptionsRoff(shown) + ".RE\n";
  }
  out += ".SH ENVIRONMENT\n"
         ".TP\n.B LORRY_CONFIG\nThe config file when \\fB\\-c\\fR is not given (default \\fB./lorry.toml\\fR).\n"
         ".TP\n.B LORRY_PROVIDER, LORRY_SUBSCRIBER, LORRY_NAME\nAs \\fB\\-\\-provider\\fR, \\fB\\-\\-subscriber\\fR, "
         "\\fB\\-\\-name\\fR: a flag wins over them, they win over the config file.\n"
         ".TP\n.B PGPASSWORD, PGPASSFILE, PGSERVICE, PGHOST ...\nThe usual libpq variables and \\fI~/.pgpass\\fR "
         "work for both servers.\n";
  out += ".SH EXIT STATUS\n"
         ".TP\n.B 0\nSuccess.\n"
         ".TP\n.B 1\nThe thing checked is not true (e.g. \\fBcompare\\fR found differences, \\fBwait\\fR timed out).\n"
         ".TP\n.B 2\nUsage, configuration or precondition error (restarting would not help).\n"
         ".TP\n.B 3\nA server or connection error, or a refused password.\n"
         ".PP\n\\fBlorry status \\-\\-check\\fR exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios).\n";
  out += ".SH FILES\n.TP\n.I /etc/lorry/lorry.toml\nThe config file of the packaged systemd unit "
         "(\\fBlorry.service\\fR); an example is in \\fI/usr/share/doc/lorry/examples/lorry.toml\\fR.\n";
  out += ".SH SEE ALSO\n\\fI/usr/share/doc/lorry/README.md\\fR, \\fBpsql\\fR(1), \\fBsystemctl\\fR(1)\n";
  return out;
}

std::string BashCompletion(const CLI::App& app) {
  auto words = [](const std::vector<const CLI::Option*>& options, bool with_value_only) {
    std::set<std::string> out;
    for (const auto* o : options) {
      if (o->get_positional()) continue;
      if (with_value_only && o->get_items_expected_max() == 0) continue;
      for (const auto& s : o->get_snames()) out.insert("-" + s);
      for (const auto& l : o->get_lnames()) out.insert("--" + l);
    }
    return fmt::format("{}", fmt::join(out, " "));
  };
  auto global = Options(app);
  std::vector<std::string> names;
  std::string cases, valued = words(global, true);
  for (const auto* cmd : Commands(app)) {
    names.push_back(cmd->get_name());
    auto own = Options(*cmd);
    cases += fmt::format("    {}) opts=\"{} $global\" ;;\n", cmd->get_name(), words(own, false));
    std::string v = words(own, true);
    if (!v.empty()) valued += " " + v;
  }
  return fmt::format(R"sh(# bash completion for lorry, generated from its command line (lorry_docs).
_lorry() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
  local global="{}"
  local commands="{}"
  local valued=" {} "
  local cmd="" i word
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${{COMP_WORDS[i]}}
    if [[ $valued == *" $word "* ]]; then ((i++)); continue; fi
    if [[ $word != -* ]]; then cmd=$word; break; fi
  done
  case $prev in
    -c|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  if [[ $valued == *" $prev "* ]]; then COMPREPLY=(); return; fi
  local opts
  case $cmd in
    "") opts="$commands $global" ;;
{}    *) opts="$global" ;;
  esac
  if [[ $cmd == execute && $cur != -* ]]; then COMPREPLY=($(compgen -f -- "$cur")); return; fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -F _lorry lorry
)sh",
                     words(global, false), fmt::join(names, " "), valued, cases);
}

}  // namespace lorry::cli

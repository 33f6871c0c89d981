// lorry_docs: writes lorry's man page (--man) or bash completion (--bash)
// to stdout, from the command line definition (cli/docs.h). Built and run
// at build time; not installed.
#include <cstring>
#include <iostream>

#include "cli/cli.h"
#include "cli/docs.h"

int main(int argc, char** argv) {
  if (argc != 2 || (std::strcmp(argv[1], "--man") != 0 && std::strcmp(argv[1], "--bash") != 0)) {
    std::cerr << "usage: lorry_docs --man | --bash\n";
    return 2;
  }
  CLI::App app{lorry::cli::kDescription, "lorry"};
  lorry::cli::GlobalOptions g;
  lorry::cli::Action action;
  lorry::cli::BuildApp(app, g, action);
  std::cout << (std::strcmp(argv[1], "--man") == 0 ? lorry::cli::ManPage(app, LORRY_VERSION)
                                                    : lorry::cli::BashCompletion(app));
  return 0;
}

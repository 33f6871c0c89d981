// lorry's entry point: everything happens in cli::Main.
#include "cli/cli.h"

int main(int argc, char** argv) { return lorry::cli::Main(argc, argv); }

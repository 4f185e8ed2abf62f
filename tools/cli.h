/* cli.h — what the kiln subcommands share: failing with a one-line message, and options. */
#ifndef KILN_TOOLS_CLI_H
#define KILN_TOOLS_CLI_H

#include "kiln.h"

#include <stdbool.h>

/* Prints "kiln: <status name>: <kiln_last_error()>" to stderr and returns the exit code (1). */
int cli_fail(kiln_status s);
/* Prints "kiln <cmd>: <message>" and a hint to run --help; returns exit code 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True if stderr is a terminal (progress is shown only then). */
bool cli_interactive(void);

int cmd_run(int argc, char **argv);

#endif /* KILN_TOOLS_CLI_H */

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

/* One "name:AxBxC" entry of a shape list. */
typedef struct cli_shape {
    char name[256];
    int rank;
    int64_t dims[KILN_MAX_RANK];
} cli_shape;
/* Parses "a:1x3x8x8,b:4" into out (at most cap entries); 0 on success, -1 on bad syntax. */
int cli_parse_shapes(const char *spec, cli_shape *out, int cap, int *n);
const cli_shape *cli_find_shape(const cli_shape *s, int n, const char *name);
/* True if path ends in .kiln or the file starts with the engine magic. */
bool cli_is_engine(const char *path);

int cmd_run(int argc, char **argv);
int cmd_build(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_compare(int argc, char **argv);

#endif /* KILN_TOOLS_CLI_H */

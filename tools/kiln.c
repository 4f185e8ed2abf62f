/* kiln.c — the kiln command: dispatches to one file per subcommand (tools/cmd_*.c). */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_fail(kiln_status s) {
    fprintf(stderr, "kiln: %s: %s\n", kiln_status_name(s), kiln_last_error());
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'kiln %s --help')\n", cmd);
    va_end(ap);
    return 2;
}

bool cli_interactive(void) { return isatty(2); }

bool cli_is_engine(const char *path) {
    size_t n_path = strlen(path);
    if (n_path >= 5 && strcmp(path + n_path - 5, ".kiln") == 0) return true;
    char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    return n == sizeof magic && memcmp(magic, "KILNENG", 8) == 0;
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"build", cmd_build, "optimize an ONNX model into a .kiln engine (profiles, precisions, memory plan)"},
    {"calibrate", cmd_calibrate, "run an ONNX model over calibration data and write its INT8 calibration cache"},
    {"compare", cmd_compare, "compare a model's outputs with an engine's (errors, cosine, NaN, contracts, streaming state)"},
    {"inspect", cmd_inspect, "show an engine's layers, fusions, kernels, precisions, profiles and memory"},
    {"run", cmd_run, "run a model or engine on inputs from .npy/.npz files and print or save its outputs"},
    {"bench", cmd_bench, "time an engine: throughput, latency percentiles, per-layer profile, --streams, --json"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: kiln <command> [options]\n\n"
               "kiln imports ONNX models and runs them.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'kiln <command> --help' describes a command. 'kiln --version' prints the version.\n");
}

int main(int argc, char **argv) {
    /* The OpenMP runtime under oneDNN's CPU kernels reads its settings when it loads, before main;
     * its default spins its threads after every parallel region, which costs a command run more
     * CPU than the work whenever kiln's own kernels run between oneDNN's (10-30x on small models).
     * So the command runs itself with OMP_WAIT_POLICY=passive unless the caller chose a policy
     * (OMP_WAIT_POLICY=active for the last percent of a long oneDNN-bound benchmark). */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv); /* on failure, carry on as we are */
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("kiln %s\n", KILN_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

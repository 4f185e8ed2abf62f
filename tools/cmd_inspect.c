/* cmd_inspect.c — `kiln inspect ENGINE`: the engine's inputs, outputs, profiles, memory plan,
 * weights and every layer (op, fused activation, kernel, precision, shapes), as text or --json. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static void help(void) {
    printf("usage: kiln inspect ENGINE.kiln [--json]\n\n"
           "Prints what the engine holds: inputs and outputs, optimization profiles, the memory plan (arena\n"
           "against the naive sum of all tensors), weights, what the passes did, and one line per layer with\n"
           "its op, fused activation, kernel, precision and output shape.\n\n"
           "  --json      the same as JSON\n"
           "  -h, --help  this text\n");
}

static void print_shape(const cJSON *shape) {
    if (!cJSON_IsArray(shape)) { printf("?"); return; }
    printf("[");
    const cJSON *d;
    bool first = true;
    cJSON_ArrayForEach(d, shape) {
        if (cJSON_IsNumber(d)) printf("%s%lld", first ? "" : ",", (long long)d->valuedouble);
        else printf("%s%s", first ? "" : ",", cJSON_IsString(d) ? d->valuestring : "?");
        first = false;
    }
    printf("]");
}

static void print_text(const cJSON *j) {
    const cJSON *x, *it;
    printf("kiln engine: backend %s, device %s, opset %d\n", cJSON_GetObjectItem(j, "backend")->valuestring,
           cJSON_GetObjectItem(j, "device")->valuestring, cJSON_GetObjectItem(j, "opset")->valueint);
    const cJSON *prec = cJSON_GetObjectItem(j, "precisions");
    if (cJSON_IsArray(prec) && cJSON_GetArraySize(prec) > 0) {
        printf("precisions allowed:");
        cJSON_ArrayForEach(it, prec) printf(" %s", cJSON_IsString(it) ? it->valuestring : "?");
        printf("\n");
    }
    const cJSON *tuning_note = cJSON_GetObjectItem(j, "tuning_note");
    if (cJSON_IsString(tuning_note)) printf("tuning: %s\n", tuning_note->valuestring);
    const cJSON *fb = cJSON_GetObjectItem(j, "host_fallback_nodes");
    if (cJSON_IsNumber(fb)) printf("host fallback: on, %d node%s without a GPU kernel run on the CPU\n", fb->valueint, fb->valueint == 1 ? "" : "s");
    const char *io[2] = {"inputs", "outputs"};
    for (int k = 0; k < 2; k++) {
        printf("%s:\n", io[k]);
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, io[k])) {
            printf("  %-24s %-6s ", cJSON_GetObjectItem(it, "name")->valuestring, cJSON_GetObjectItem(it, "dtype")->valuestring);
            print_shape(cJSON_GetObjectItem(it, "shape"));
            printf("\n");
        }
    }
    int p = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "profiles")) {
        printf("profile %d:\n", p++);
        const cJSON *s;
        cJSON_ArrayForEach(s, cJSON_GetObjectItem(it, "inputs")) {
            printf("  %-24s min ", cJSON_GetObjectItem(s, "name")->valuestring);
            print_shape(cJSON_GetObjectItem(s, "min"));
            printf(" opt ");
            print_shape(cJSON_GetObjectItem(s, "opt"));
            printf(" max ");
            print_shape(cJSON_GetObjectItem(s, "max"));
            printf("\n");
        }
        const cJSON *mem = cJSON_GetObjectItem(it, "memory");
        double arena = cJSON_GetObjectItem(mem, "arena_bytes")->valuedouble, naive = cJSON_GetObjectItem(mem, "naive_bytes")->valuedouble;
        printf("  memory: arena %.3f MiB, naive sum of tensors %.3f MiB (%.1f%%), %d in place, %d dynamic\n", arena / 1048576.0,
               naive / 1048576.0, naive > 0 ? 100.0 * arena / naive : 100.0, cJSON_GetObjectItem(mem, "in_place")->valueint,
               cJSON_GetObjectItem(mem, "dynamic_values")->valueint);
    }
    x = cJSON_GetObjectItem(j, "weights");
    printf("weights: %d tensors, %.3f MiB\n", cJSON_GetObjectItem(x, "tensors")->valueint,
           cJSON_GetObjectItem(x, "bytes")->valuedouble / 1048576.0);
    printf("passes: %d nodes before, %d after\n", cJSON_GetObjectItem(j, "nodes_before_passes")->valueint,
           cJSON_GetObjectItem(j, "nodes_after_passes")->valueint);
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "passes")) {
        printf("  %-20s removed %d, fused %d, folded %d\n", cJSON_GetObjectItem(it, "pass")->valuestring,
               cJSON_GetObjectItem(it, "removed")->valueint, cJSON_GetObjectItem(it, "fused")->valueint,
               cJSON_GetObjectItem(it, "folded")->valueint);
    }
    printf("layers:\n  %-4s %-32s %-22s %-8s %-6s %s\n", "#", "name", "op (+fused)", "kernel", "prec", "output");
    int i = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "layers")) {
        char op[64];
        const cJSON *act = cJSON_GetObjectItem(it, "fused_activation");
        snprintf(op, sizeof op, "%s%s%s", cJSON_GetObjectItem(it, "op")->valuestring, act ? "+" : "", act ? act->valuestring : "");
        printf("  %-4d %-32s %-22s %-8s %-6s ", i++, cJSON_GetObjectItem(it, "name")->valuestring, op,
               cJSON_GetObjectItem(it, "kernel")->valuestring, cJSON_GetObjectItem(it, "precision")->valuestring);
        const cJSON *outs = cJSON_GetObjectItem(it, "outputs");
        const cJSON *o0 = cJSON_GetArrayItem(outs, 0);
        if (o0 && cJSON_GetObjectItem(o0, "shape")) print_shape(cJSON_GetObjectItem(o0, "shape"));
        printf("\n");
        const cJSON *prog = cJSON_GetObjectItem(it, "fused_program");
        if (cJSON_IsString(prog)) printf("       computes %s\n", prog->valuestring);
        const cJSON *note = cJSON_GetObjectItem(it, "int8_note");
        if (cJSON_IsString(note)) printf("       not int8: %s\n", note->valuestring);
        const cJSON *why = cJSON_GetObjectItem(it, "host_fallback");
        if (cJSON_IsString(why)) printf("       on the host: %s\n", why->valuestring);
    }
}

int cmd_inspect(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') json = true;
        else if (c == 'h') { help(); return 0; }
        else return cli_usage_error("inspect", "bad option");
    }
    if (optind != argc - 1) return cli_usage_error("inspect", "expected exactly one ENGINE argument");
    kiln_engine_t *e;
    kiln_status s = kiln_engine_load(argv[optind], &e);
    if (s) return cli_fail(s);
    char *desc;
    s = kiln_engine_describe(e, &desc);
    kiln_engine_destroy(e);
    if (s) return cli_fail(s);
    if (json) printf("%s\n", desc);
    else {
        cJSON *j = cJSON_Parse(desc);
        print_text(j);
        cJSON_Delete(j);
    }
    free(desc);
    return 0;
}

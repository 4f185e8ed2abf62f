/* cli_shapes.c — parsing shape lists given on the command line: "x:1x3x224x224,mask:1x128".
 * A name may itself contain ':' (the last one in an entry separates the dims). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_shapes(const char *spec, cli_shape *out, int cap, int *n) {
    *n = 0;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *colon = NULL;
        for (const char *q = p; q < end; q++)
            if (*q == ':') colon = q;
        if (!colon || colon == p || *n == cap) return -1;
        cli_shape *s = &out[(*n)++];
        size_t nl = (size_t)(colon - p);
        if (nl >= sizeof s->name) return -1;
        memcpy(s->name, p, nl);
        s->name[nl] = 0;
        s->rank = 0;
        const char *d = colon + 1;
        if (d < end && !(d + 1 == end && *d == '-')) /* "name:" or "name:-" is a scalar */
            for (;;) {
                char *e;
                if (s->rank == KILN_MAX_RANK) return -1;
                long long v = strtoll(d, &e, 10);
                if (e == d || v < 0) return -1;
                s->dims[s->rank++] = v;
                if (e == end) break;
                if (*e != 'x' && *e != 'X') return -1;
                d = e + 1;
            }
        p = *end ? end + 1 : end;
    }
    return 0;
}

const cli_shape *cli_find_shape(const cli_shape *s, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0) return &s[i];
    return NULL;
}

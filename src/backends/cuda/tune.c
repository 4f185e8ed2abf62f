/* tune.c — the tactic timing cache (kiln build --timing-cache FILE).
 *
 * Kernels with several implementations (cuBLASLt algorithms, cuDNN convolution algorithms) time
 * them at build time and keep the fastest. The cache remembers each decision under a key that
 * names the op, dtypes, shapes and attributes, so a rebuild skips the timing and makes the same
 * choices. The file is text: a first line "kiln-timing-cache 1 <GPU name>", then one line per
 * key, "<tactic>\t<milliseconds>\t<key>". A cache written on another GPU is ignored (with a
 * message from the builder) rather than trusted. */
#include "cuda_exec.h"
#include "cuda_backend.h"

#include <string.h>

typedef struct tc_entry {
    char *key;
    int tactic;
    double ms;
} tc_entry;

struct kiln_timing_cache {
    char *path;
    char device[96];
    tc_entry *items;
    int n, cap;
    int hits, misses;
    bool dirty;
};

#define TC_MAGIC "kiln-timing-cache 1 "

static kiln_status tc_add(struct kiln_timing_cache *tc, const char *key, int tactic, double ms) {
    for (int i = 0; i < tc->n; i++)
        if (strcmp(tc->items[i].key, key) == 0) {
            tc->items[i].tactic = tactic;
            tc->items[i].ms = ms;
            return KILN_STATUS_OK;
        }
    if (tc->n == tc->cap) {
        int cap = tc->cap ? tc->cap * 2 : 64;
        tc_entry *it = realloc(tc->items, sizeof *it * (size_t)cap);
        if (!it) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        tc->items = it;
        tc->cap = cap;
    }
    char *k = kiln_strdup(key);
    if (!k) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    tc->items[tc->n++] = (tc_entry){k, tactic, ms};
    return KILN_STATUS_OK;
}

kiln_status kiln_timing_cache_open(const char *path, const char *device, struct kiln_timing_cache **out) {
    *out = NULL;
    struct kiln_timing_cache *tc = kiln_calloc(1, sizeof *tc);
    if (!tc || !(tc->path = kiln_strdup(path))) {
        free(tc);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    snprintf(tc->device, sizeof tc->device, "%s", device);
    FILE *f = fopen(path, "r");
    if (!f) {
        *out = tc; /* no cache yet: it is written after the build */
        return KILN_STATUS_OK;
    }
    char line[4096];
    kiln_status s = KILN_STATUS_OK;
    if (!fgets(line, sizeof line, f) || strncmp(line, TC_MAGIC, strlen(TC_MAGIC)) != 0) {
        s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: not a kiln timing cache (first line should start '%s')", path, TC_MAGIC);
    } else {
        line[strcspn(line, "\r\n")] = 0;
        if (strcmp(line + strlen(TC_MAGIC), device) == 0) {
            int lineno = 1;
            while (s == KILN_STATUS_OK && fgets(line, sizeof line, f)) {
                lineno++;
                line[strcspn(line, "\r\n")] = 0;
                if (!line[0]) continue;
                char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
                if (!t1 || !t2) {
                    s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s:%d: expected '<tactic>\\t<ms>\\t<key>'", path, lineno);
                    break;
                }
                *t1 = *t2 = 0;
                s = tc_add(tc, t2 + 1, atoi(line), atof(t1 + 1));
            }
        }
        /* else: written on another GPU; its decisions do not hold here, so start afresh */
    }
    fclose(f);
    if (s != KILN_STATUS_OK) {
        kiln_timing_cache_free(tc);
        return s;
    }
    *out = tc;
    return KILN_STATUS_OK;
}

int kiln_timing_cache_get(struct kiln_timing_cache *tc, const char *key) {
    if (!tc) return -1;
    for (int i = 0; i < tc->n; i++)
        if (strcmp(tc->items[i].key, key) == 0) {
            tc->hits++;
            return tc->items[i].tactic;
        }
    tc->misses++;
    return -1;
}

void kiln_timing_cache_put(struct kiln_timing_cache *tc, const char *key, int tactic, double ms) {
    if (!tc || strchr(key, '\n') || strchr(key, '\t')) return;
    if (tc_add(tc, key, tactic, ms) == KILN_STATUS_OK) tc->dirty = true;
}

kiln_status kiln_timing_cache_save(struct kiln_timing_cache *tc) {
    if (!tc || !tc->dirty) return KILN_STATUS_OK;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", tc->path);
    FILE *f = fopen(tmp, "w");
    if (!f) return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot write the timing cache", tmp);
    fprintf(f, TC_MAGIC "%s\n", tc->device);
    for (int i = 0; i < tc->n; i++) fprintf(f, "%d\t%.6f\t%s\n", tc->items[i].tactic, tc->items[i].ms, tc->items[i].key);
    if (fclose(f) != 0 || rename(tmp, tc->path) != 0) {
        remove(tmp);
        return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot write the timing cache", tc->path);
    }
    tc->dirty = false;
    return KILN_STATUS_OK;
}

void kiln_timing_cache_free(struct kiln_timing_cache *tc) {
    if (!tc) return;
    for (int i = 0; i < tc->n; i++) free(tc->items[i].key);
    free(tc->items);
    free(tc->path);
    free(tc);
}

int kiln_timing_cache_hits(const struct kiln_timing_cache *tc) { return tc ? tc->hits : 0; }
int kiln_timing_cache_misses(const struct kiln_timing_cache *tc) { return tc ? tc->misses : 0; }

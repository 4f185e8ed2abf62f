/* npy_roundtrip.c — test helper for tests/unit/test_npy_numpy.py: reads IN (.npz, or .npy as a
 * single member named "arr_0") with kiln and writes it back out as OUT: an .npz (stored, or
 * deflated with --compress), or an .npy when OUT ends in ".npy" and there is one array.
 *     npy_roundtrip IN OUT [--compress]
 * Exits 0 on success; 1 with kiln's message on stderr on failure. */
#include "io/npy.h"

#include <string.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* .npy files begin with "\x93NUMPY"; anything else is handed to the npz reader. */
static bool is_npy(const char *path) {
    unsigned char magic[6] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return ends_with(path, ".npy");
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    return n == 6 && !memcmp(magic, "\x93NUMPY", 6);
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "--compress"))) {
        fprintf(stderr, "usage: %s IN.npz|IN.npy OUT.npz|OUT.npy [--compress]\n", argv[0]);
        return 2;
    }
    kiln_named_tensor *items = NULL;
    int n = 0;
    kiln_status st;
    if (is_npy(argv[1])) {
        kiln_tensor *t = NULL;
        st = kiln_npy_read(argv[1], &t);
        if (!st) {
            items = calloc(1, sizeof *items);
            items[0].name = kiln_strdup("arr_0");
            items[0].t = t;
            n = 1;
        }
    } else {
        st = kiln_npz_read(argv[1], &items, &n);
    }
    if (!st) {
        if (ends_with(argv[2], ".npy")) {
            if (n != 1) {
                fprintf(stderr, "npy_roundtrip: %s holds %d arrays; an .npy takes one\n", argv[1], n);
                kiln_named_tensors_free(items, n);
                return 1;
            }
            st = kiln_npy_write(argv[2], items[0].t);
        } else {
            st = kiln_npz_write(argv[2], items, n, argc == 4);
        }
    }
    kiln_named_tensors_free(items, n);
    if (st) {
        fprintf(stderr, "npy_roundtrip: %s: %s\n", kiln_status_name(st), kiln_last_error());
        return 1;
    }
    return 0;
}

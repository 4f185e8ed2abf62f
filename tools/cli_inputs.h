/* cli_inputs.h — input data for the kiln commands that feed a model many times (compare, bench):
 * a seeded generator for random inputs within per-input ranges, and step-wise access to data
 * given as an .npz (arrays with or without a leading step axis) or a folder (one file per step).
 *
 * Data layouts (docs/compare.md):
 *   FILE.npz   one array per input name. An array whose rank is the input's rank + 1 carries a
 *              leading step axis (step k reads array[k]); one of the input's own rank is the same
 *              at every step. When the input's rank is unknown, an array is stepped if more than
 *              one step is asked for.
 *   DIR/       .npy and .npz files (not recursive, sorted by name, dot-names skipped): file k is
 *              step k; an .npz holds one array per input name, an .npy feeds the only input.
 * Random data: uniform in [lo, hi) for floats, uniform integers in [lo, hi] for integers and
 * bools (defaults: -1,1 for floats, 0,7 for integers, 0,1 for bools), drawn from xorshift64*
 * seeded by --seed, in input order, one step after the other. With the default ranges the first
 * step's values are those of `kiln run --random` and `kiln bench` for the same seed. */
#ifndef KILN_TOOLS_CLI_INPUTS_H
#define KILN_TOOLS_CLI_INPUTS_H

#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- seeded random data ---- */
typedef struct cli_rng {
    uint64_t s;
} cli_rng;

void cli_rng_seed(cli_rng *r, uint64_t seed);
/* Uniform in [0, 1), 53 bits. */
double cli_rng_uniform(cli_rng *r);

/* One --input-range entry: "NAME:LO,HI", or "LO,HI" for every input (name empty). */
typedef struct cli_range {
    char name[256];
    double lo, hi;
} cli_range;
/* Parses one entry; 0 on success, -1 on bad syntax (lo > hi is bad syntax too). */
int cli_parse_range(const char *arg, cli_range *out);
/* The range for an input: its own entry, else the last nameless one, else the dtype's default. */
void cli_range_for(const cli_range *ranges, int n, const char *name, kiln_dtype dt, double *lo, double *hi);
/* A new tensor of random values in [lo, hi) (floats) or [lo, hi] (integers, bools). */
kiln_status cli_random_tensor(kiln_dtype dt, int rank, const int64_t *dims, double lo, double hi, cli_rng *rng,
                              kiln_tensor_t **out);

/* ---- data given in files ---- */
typedef struct cli_data {
    char *path;
    bool dir;
    /* npz: every array, kept in memory */
    struct cli_data_array { char *name; kiln_tensor_t *t; } *arrays;
    int n_arrays;
    /* folder: one file per step, sorted; each read when its step is asked for */
    char **files;
    int n_files;
} cli_data;

/* Opens an .npz file or a folder of .npy/.npz files. IO_ERROR / INVALID_ARGUMENT name the path. */
kiln_status cli_data_open(const char *path, cli_data *d);
void cli_data_close(cli_data *d);
/* How many steps the data holds: the folder's file count, or the length of the leading axis of the
 * npz arrays that have one (given each input's rank through rank_of; -1 when unknown), or 0 when
 * no array is stepped (the data is the same at every step). INVALID_ARGUMENT when stepped arrays
 * disagree. */
typedef int (*cli_rank_fn)(const char *name, void *user);
kiln_status cli_data_steps(const cli_data *d, cli_rank_fn rank_of, void *user, int64_t *steps);
/* The value of input `name` at `step` (a new tensor, *out NULL when the data does not name it).
 * rank is the input's declared rank (-1 unknown); stepped_hint says to treat an array of unknown
 * rank as stepped. only_input: for a folder's .npy files, whether `name` is the model's only input.
 * INVALID_ARGUMENT when the step lies beyond the data, naming file, array and step. */
kiln_status cli_data_get(const cli_data *d, const char *name, int rank, bool stepped_hint, bool only_input, int64_t step,
                         kiln_tensor_t **out);

/* A new tensor holding t[k] (t's leading axis removed). */
kiln_status cli_tensor_slice(const kiln_tensor_t *t, int64_t k, kiln_tensor_t **out);
/* A new tensor stacking n tensors of one dtype and shape on a new leading axis. */
kiln_status cli_tensor_stack(kiln_tensor_t *const *ts, int64_t n, kiln_tensor_t **out);

#endif /* KILN_TOOLS_CLI_INPUTS_H */

/* npy.h — NumPy .npy and .npz files in and out of kiln tensors.
 *
 * .npy format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
 *     "\x93NUMPY" major minor              magic and version: 1.0, 2.0 or 3.0
 *     header_len                           u16 LE (1.0) or u32 LE (2.0, 3.0)
 *     header                               a Python dict literal, padded with spaces, ending '\n':
 *         {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *     data                                 prod(shape) elements, raw
 * .npz: a zip archive of NAME.npy members, stored (np.savez) or deflated (np.savez_compressed).
 *
 * Read: versions 1.0/2.0/3.0; keys in any order, extra whitespace, trailing commas, "(3,)" and
 * "()" (rank 0), Python-2 "3L" dims. descr '<', '=', '|' or '>' (big-endian is byte-swapped)
 * with f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1. fortran_order True is transposed into C order.
 * Bytes after the data are ignored, as numpy does.
 * bf16: numpy has none; ml_dtypes' bfloat16 (what onnx uses) saves as '<V2', so a 2-byte void
 * is read as bf16 and bf16 is written as '<V2'.
 * Refused (UNSUPPORTED, naming the dtype): strings, objects, other void sizes,
 * complex, datetimes, structured dtypes. Malformed or truncated input is INVALID_ARGUMENT; a
 * file that cannot be opened or read is IO_ERROR. No input can make kiln allocate more than
 * the file (or npz member, capped at 4 GiB) could hold.
 * Write: version 1.0 (2.0 if the header does not fit in 65535 bytes), native little-endian,
 * C order, data aligned to 64 bytes, as numpy writes. bf16 and string tensors are refused.
 *
 * Tests: tests/unit/test_npy.c (round trips, hostile input) and tests/unit/test_npy_numpy.py
 * (files made by numpy itself, through tests/unit/npy_roundtrip.c). */
#ifndef KILN_IO_NPY_H
#define KILN_IO_NPY_H

#include "../core/core.h"

#include <stdbool.h>
#include <stddef.h>

/* A named tensor, as in an .npz archive. */
typedef struct kiln_named_tensor {
    char *name;     /* malloc'ed, NUL-terminated */
    kiln_tensor *t; /* heap tensor owning its data */
} kiln_named_tensor;

/* Reads an .npy file into a new heap tensor (free with kiln_tensor_release + free, or
 * kiln_tensor_destroy). *out is NULL on failure. */
kiln_status kiln_npy_read(const char *path, kiln_tensor **out);
/* Same, from size bytes at buf; `what` names the source in error messages. */
kiln_status kiln_npy_parse(const void *buf, size_t size, const char *what, kiln_tensor **out);
/* Writes t (known shape, data present) as an .npy file, through a temporary file and a rename. */
kiln_status kiln_npy_write(const char *path, const kiln_tensor *t);
/* Serialises t into a malloc'ed buffer (*buf, *size) holding a whole .npy file. */
kiln_status kiln_npy_serialize(const kiln_tensor *t, void **buf, size_t *size);

/* Reads every .npy member of an .npz archive, in archive order, into a malloc'ed array of n
 * items (free with kiln_named_tensors_free). Names lose their ".npy" suffix; directory entries
 * are skipped. On failure *items is NULL and *n is 0. */
kiln_status kiln_npz_read(const char *path, kiln_named_tensor **items, int *n);
/* Writes the tensors as NAME.npy members (stored, not compressed, unless compress is true).
 * Writes to a temporary file beside path then renames, so a failure never leaves a corrupt
 * file. Names must be non-empty and distinct. */
kiln_status kiln_npz_write(const char *path, const kiln_named_tensor *items, int n, bool compress);
/* Frees names, tensors (kiln_tensor_release + free) and the array. NULL is a no-op. */
void kiln_named_tensors_free(kiln_named_tensor *items, int n);

#endif /* KILN_IO_NPY_H */

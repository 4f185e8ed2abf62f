/* cache.h — INT8 calibration caches in TensorRT's text format, and the fingerprint hash.
 *
 * The file (docs/calibration.md has an example):
 *   line 1   <producer>-<algorithm>[ fingerprint=<16 lowercase hex digits>]
 *            kiln writes   KILN-0.1.0-EntropyCalibration2 fingerprint=0123456789abcdef
 *            TensorRT      TRT-8601-EntropyCalibration2            (no fingerprint)
 *   line 2.. <tensor name>: <scale as 8 hex digits>
 *            the scale's IEEE-754 float32 bit pattern as a big-endian hex number, written in
 *            lower case (0.0078125 = 0x3c000000 -> "3c000000"); upper case is accepted on read.
 *            A name may hold ':' and spaces: a line splits at its LAST ": ".
 * Blank lines and a final newline (or its absence), and "\r\n" line ends, are accepted.
 * kiln writes the entries in the order given; reading keeps the file's order.
 *
 * The fingerprint is the caller's (a hash of the model's graph, e.g. kiln_fnv1a64 over a
 * canonical description): a kiln cache written for another graph is refused. TensorRT caches
 * carry none; they are accepted and *fingerprint_checked says the check was skipped.
 * Tested by tests/unit/test_quant.c. */
#ifndef KILN_QUANT_CACHE_H
#define KILN_QUANT_CACHE_H

#include "core/core.h"

/* 64-bit FNV-1a of n bytes, continuing from h: start with KILN_FNV1A64_INIT and chain calls
 * to hash several pieces (the result is the hash of their concatenation). */
#define KILN_FNV1A64_INIT 0xcbf29ce484222325ull
uint64_t kiln_fnv1a64(const void *data, size_t n, uint64_t h);

typedef struct kiln_calib_entry {
    char *name;  /* the tensor's ONNX name, malloc'ed */
    float scale; /* amax / 127 */
} kiln_calib_entry;

/* Writes a kiln cache: header "KILN-<version>-<algorithm> fingerprint=<hex>", then names[i]
 * and scales[i] for i < n, in that order. The file is written beside path and renamed over it,
 * so a failure never leaves a partial cache. INVALID_ARGUMENT for an algorithm name that is
 * empty or holds '-', whitespace or control characters, an empty name, a name holding a line
 * break, or a scale that is NaN, Inf or negative (each named); IO_ERROR naming the path. */
kiln_status kiln_calib_cache_write(const char *path, const char *algorithm, uint64_t fingerprint,
                                   const char *const *names, const float *scales, int64_t n);
/* The same cache as text in memory (malloc'ed, *size bytes plus a terminating NUL; the caller frees
 * it), for a kiln_calibrator's write_cache callback; `what` names it in messages. */
kiln_status kiln_calib_cache_format(const char *what, const char *algorithm, uint64_t fingerprint,
                                    const char *const *names, const float *scales, int64_t n, char **text, size_t *size);

/* Reads a kiln or TensorRT cache. On success *entries (n of them; free with
 * kiln_calib_entries_free) and *algorithm (free()) are the caller's, and *fingerprint_checked
 * is true for a kiln cache (whose fingerprint matched expected_fingerprint), false for a TensorRT
 * one. Failures leave the outputs NULL/0/false:
 *   IO_ERROR          the file cannot be opened or read (naming it);
 *   INVALID_ARGUMENT  a kiln cache for another graph: both fingerprints named;
 *   INVALID_MODEL     a malformed header or line, or a tensor named twice: "path:line: what". */
kiln_status kiln_calib_cache_read(const char *path, uint64_t expected_fingerprint, kiln_calib_entry **entries,
                                  int64_t *n, char **algorithm, bool *fingerprint_checked);
/* The same from memory (a cache a kiln_calibrator's read_cache callback returns); `what` names
 * it in messages where a path would be. */
kiln_status kiln_calib_cache_parse(const char *what, const void *data, size_t size, uint64_t expected_fingerprint,
                                   kiln_calib_entry **entries, int64_t *n, char **algorithm, bool *fingerprint_checked);
void kiln_calib_entries_free(kiln_calib_entry *entries, int64_t n);

#endif /* KILN_QUANT_CACHE_H */

/* kiln_file.h — the .kiln engine file. Written out here; docs/kiln-format.md says the same.
 *
 * All integers little-endian. Offsets are from the start of the file.
 *
 *   header (64 bytes)
 *     0   char[8]  magic "KILNENG\0"
 *     8   u32      format version (KILN_FILE_VERSION)
 *     12  u32      header size (64)
 *     16  u64      file size
 *     24  u64      section table offset
 *     32  u32      section count
 *     36  u32      flags (0)
 *     40  u32      CRC-32 of the section table
 *     44  u32      CRC-32 of header bytes 0..43 and 48..63 (this field read as 0)
 *     48  char[16] kiln version that wrote it, NUL padded
 *   section table: count entries of 32 bytes
 *     0   u32 id (KILN_SECTION_*)   4 u32 CRC-32 of the section
 *     8   u64 offset (64-aligned)   16 u64 size   24 u64 reserved (0)
 *   sections, each starting on a 64-byte boundary:
 *     META     JSON (UTF-8): kiln version, backend, device and its capabilities, precisions,
 *              opset, what the passes did, node counts
 *     GRAPH    the optimized graph as an ONNX ModelProto; constants above 256 bytes are external
 *              data at location "@weights" with an offset into WEIGHTS
 *     WEIGHTS  raw tensor data, each tensor 64-byte aligned: memory-mapped at load, not copied
 *     PLAN     u32 profiles, u32 inputs, u32 slots; per profile: per input i32 rank and
 *              rank x i64 min, opt, max; then u64 arena bytes, u64 naive bytes, u32 in-place
 *              count, u32 dynamic count, and per slot i64 offset, u64 bytes
 *
 * Same engine → same bytes (no timestamps, deterministic orders). */
#ifndef KILN_PLAN_KILN_FILE_H
#define KILN_PLAN_KILN_FILE_H

#define KILN_FILE_MAGIC "KILNENG"
#define KILN_FILE_VERSION 1
#define KILN_FILE_HEADER_SIZE 64
#define KILN_FILE_ENTRY_SIZE 32

enum { KILN_SECTION_META = 1, KILN_SECTION_GRAPH = 2, KILN_SECTION_WEIGHTS = 3, KILN_SECTION_PLAN = 4 };

#endif /* KILN_PLAN_KILN_FILE_H */

/* export.h — writing kiln's graph IR as an ONNX ModelProto (see export.c). */
#ifndef KILN_ONNX_EXPORT_H
#define KILN_ONNX_EXPORT_H

#include "../ir/graph.h"

/* The external-data location that means "the engine's WEIGHTS section". */
#define KILN_WEIGHTS_LOCATION "@weights"
/* The ONNX domain of kiln-internal ops (fusions) in engine graphs. */
#define KILN_INTERNAL_DOMAIN "kiln"

/* A growable byte buffer (malloc'ed data). */
typedef struct kiln_blob {
    uint8_t *data;
    size_t size, cap;
} kiln_blob;

/* Packs g (with its subgraphs) as a ModelProto into out. Constants above a small size are
 * appended to weights (64-byte aligned) and referenced as external data; with weights NULL
 * they are inlined. */
kiln_status kiln_onnx_export(const kiln_graph *g, int opset, kiln_blob *weights, kiln_blob *out);

#endif /* KILN_ONNX_EXPORT_H */

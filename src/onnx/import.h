/* import.h — the model object (an imported graph plus what its data lives in) and the ONNX
 * importer's entry point. Internal: the public API is kiln_model_* in kiln.h (model.c). */
#ifndef KILN_ONNX_IMPORT_H
#define KILN_ONNX_IMPORT_H

#include "../ir/graph.h"

typedef struct kiln_mapping {
    char *path;
    const void *data; /* read-only mmap of a whole file */
    size_t size;
} kiln_mapping;

struct kiln_model {
    kiln_graph *graph;
    int opset;        /* of the default domain */
    void *proto;      /* the unpacked Onnx__ModelProto: raw initializer data points into it */
    kiln_mapping *maps; /* the model file and external data files, mapped */
    int n_maps;
    char *base_dir;   /* where external data is looked up */
    char *path;
    /* Set before importing an engine's graph: external data at "@weights" points into this
     * memory (not owned), and ops of the internal domain "kiln" are accepted. */
    const void *weights;
    size_t weights_size;
    bool engine_graph;
    void *owned_weights; /* freed with the model (a built engine's weights) */
};
typedef struct kiln_model kiln_model;

/* Imports an ONNX ModelProto from bytes; `file` names it in messages. On failure m holds what
 * was built so far: free it with kiln_model_free_contents. */
kiln_status kiln_model_import(const void *data, size_t size, const char *file, const char *base_dir, kiln_model *m);
void kiln_model_free_contents(kiln_model *m);

#endif /* KILN_ONNX_IMPORT_H */

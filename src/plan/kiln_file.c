/* kiln_file.c — writing and reading .kiln engine files (format in kiln_file.h). Reading checks
 * everything before trusting anything: magic, version, header checksum, sizes, the section
 * table and each section's checksum, then the META backend/device/version, then imports the
 * graph with its weights pointing into the mapped WEIGHTS section. Tested by
 * tests/models/test_engine.py (round trips, determinism, corruption of every region). */
#include "kiln_file.h"

#include "../onnx/export.h"
#include "../runtime/engine.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <zlib.h>

static uint32_t crc(const void *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *b = p;
    while (n > 0) { /* crc32 takes a uInt length */
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, chunk);
        b += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i); return v; }

static bool blob_put(kiln_blob *b, const void *data, size_t n) {
    if (b->size + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->size + n) nc *= 2;
        uint8_t *nd = realloc(b->data, nc);
        if (!nd) return false;
        b->data = nd;
        b->cap = nc;
    }
    if (n) memcpy(b->data + b->size, data, n);
    b->size += n;
    return true;
}

static bool put_u32(kiln_blob *b, uint32_t v) { uint8_t x[4]; put32(x, v); return blob_put(b, x, 4); }
static bool put_u64(kiln_blob *b, uint64_t v) { uint8_t x[8]; put64(x, v); return blob_put(b, x, 8); }

#ifdef KILN_HAVE_CUDA
#define KILN_CUDA_BUILT 1
#else
#define KILN_CUDA_BUILT 0
#endif

static const char *precision_names[] = {"fp32", "fp16", "bf16", "int8", "tf32"}; /* KILN_PRECISION_* bit k */
#define N_PRECISION_NAMES (int)(sizeof precision_names / sizeof precision_names[0])

const char *kiln_precision_bit_name(int k) { return k >= 0 && k < N_PRECISION_NAMES ? precision_names[k] : NULL; }

static char *meta_json(const kiln_engine *e) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kiln_version", KILN_VERSION_STRING);
    cJSON_AddNumberToObject(j, "format_version", KILN_FILE_VERSION);
    cJSON_AddStringToObject(j, "backend", e->backend);
    cJSON_AddStringToObject(j, "device", e->device);
    cJSON *caps = cJSON_AddObjectToObject(j, "device_capabilities");
    if (e->cuda_cc) {
        char arch[16];
        snprintf(arch, sizeof arch, "sm_%d", e->cuda_cc);
        cJSON_AddStringToObject(caps, "arch", arch);
        cJSON_AddNumberToObject(caps, "compute_capability", e->cuda_cc);
    } else {
        cJSON_AddStringToObject(caps, "arch", "portable C (any CPU)");
    }
    if (e->tactics) {
        cJSON *t = cJSON_AddArrayToObject(j, "tactics");
        for (int i = 0; i < e->model.graph->n_nodes; i++) cJSON_AddItemToArray(t, cJSON_CreateNumber(e->tactics[i]));
        if (e->tuning_note[0]) cJSON_AddStringToObject(j, "tuning_note", e->tuning_note);
        if (e->host_fallback) cJSON_AddTrueToObject(j, "host_fallback");
    }
    cJSON *prec = cJSON_AddArrayToObject(j, "precisions");
    for (int k = 0; k < N_PRECISION_NAMES; k++)
        if (e->precisions & (1u << k)) cJSON_AddItemToArray(prec, cJSON_CreateString(precision_names[k]));
    cJSON_AddNumberToObject(j, "opset", e->model.opset);
    cJSON_AddNumberToObject(j, "nodes_before", e->nodes_before);
    cJSON_AddItemToObject(j, "passes", kiln_passes_json(&e->passes));
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static bool plan_section(const kiln_engine *e, kiln_blob *b) {
    const kiln_graph *g = e->model.graph;
    bool ok = put_u32(b, (uint32_t)e->n_profiles) && put_u32(b, (uint32_t)g->n_inputs) &&
              put_u32(b, (uint32_t)e->profiles[0].plan.n_slots);
    for (int p = 0; ok && p < e->n_profiles; p++) {
        const kiln_profile *pr = &e->profiles[p];
        for (int i = 0; ok && i < g->n_inputs; i++) {
            const kiln_profile_dims *d = &pr->inputs[i];
            ok &= put_u32(b, (uint32_t)d->rank);
            for (int k = 0; ok && k < d->rank; k++)
                ok &= put_u64(b, (uint64_t)d->min[k]) && put_u64(b, (uint64_t)d->opt[k]) && put_u64(b, (uint64_t)d->max[k]);
        }
        ok &= put_u64(b, pr->plan.arena_bytes) && put_u64(b, pr->plan.naive_bytes) && put_u32(b, (uint32_t)pr->plan.n_inplace) &&
              put_u32(b, (uint32_t)pr->plan.n_dynamic);
        for (int s = 0; ok && s < pr->plan.n_slots; s++)
            ok &= put_u64(b, (uint64_t)pr->plan.slots[s].offset) && put_u64(b, pr->plan.slots[s].bytes);
    }
    return ok;
}

kiln_status kiln_engine_write(const kiln_engine_t *e, kiln_blob *out) {
    kiln_blob graph = {0}, weights = {0}, plan = {0};
    char *meta = NULL;
    kiln_status s = kiln_onnx_export(e->model.graph, e->model.opset, &weights, &graph);
    if (s == KILN_STATUS_OK && !plan_section(e, &plan)) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (s == KILN_STATUS_OK && !(meta = meta_json(e))) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (s != KILN_STATUS_OK) goto out;
    struct { uint32_t id; const void *data; size_t size; } secs[4] = {
        {KILN_SECTION_META, meta, strlen(meta)},
        {KILN_SECTION_GRAPH, graph.data, graph.size},
        {KILN_SECTION_WEIGHTS, weights.data, weights.size},
        {KILN_SECTION_PLAN, plan.data, plan.size},
    };
    uint8_t header[KILN_FILE_HEADER_SIZE] = {0}, table[4 * KILN_FILE_ENTRY_SIZE] = {0};
    uint64_t off = KILN_FILE_HEADER_SIZE + sizeof table;
    for (int k = 0; k < 4; k++) {
        off = (off + 63) & ~(uint64_t)63;
        uint8_t *t = table + k * KILN_FILE_ENTRY_SIZE;
        put32(t, secs[k].id);
        put32(t + 4, crc(secs[k].data, secs[k].size));
        put64(t + 8, off);
        put64(t + 16, secs[k].size);
        off += secs[k].size;
    }
    memcpy(header, KILN_FILE_MAGIC, 8);
    put32(header + 8, KILN_FILE_VERSION);
    put32(header + 12, KILN_FILE_HEADER_SIZE);
    put64(header + 16, off);
    put64(header + 24, KILN_FILE_HEADER_SIZE);
    put32(header + 32, 4);
    put32(header + 36, 0);
    put32(header + 40, crc(table, sizeof table));
    snprintf((char *)header + 48, 16, "%s", KILN_VERSION_STRING);
    put32(header + 44, crc(header, KILN_FILE_HEADER_SIZE));
    memset(out, 0, sizeof *out);
    bool ok = blob_put(out, header, sizeof header) && blob_put(out, table, sizeof table);
    static const uint8_t zeros[64] = {0};
    for (int k = 0; ok && k < 4; k++) {
        ok &= blob_put(out, zeros, ((out->size + 63) & ~(size_t)63) - out->size);
        ok &= blob_put(out, secs[k].data, secs[k].size);
    }
    if (!ok) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory writing the engine");
out:
    free(graph.data);
    free(weights.data);
    free(plan.data);
    cJSON_free(meta);
    return s;
}

/* ---- reading ---- */

typedef struct reader {
    const uint8_t *p, *end;
    bool bad;
} reader;

static uint32_t rd32(reader *r) {
    if (r->end - r->p < 4) { r->bad = true; return 0; }
    uint32_t v = get32(r->p);
    r->p += 4;
    return v;
}

static uint64_t rd64(reader *r) {
    if (r->end - r->p < 8) { r->bad = true; return 0; }
    uint64_t v = get64(r->p);
    r->p += 8;
    return v;
}

static kiln_status read_plan(const uint8_t *p, size_t n, const char *what, kiln_engine *e) {
    reader r = {p, p + n, false};
    const kiln_graph *g = e->model.graph;
    uint32_t np = rd32(&r), ni = rd32(&r), ns = rd32(&r);
    if (r.bad || np == 0 || np > 1024 || ni != (uint32_t)g->n_inputs || ns != (uint32_t)kiln_plan_num_slots(g))
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: PLAN section does not match the graph (%u profiles, %u inputs, %u slots)", what,
                          np, ni, ns);
    e->profiles = kiln_calloc(np, sizeof *e->profiles);
    if (!e->profiles) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    e->n_profiles = (int)np;
    for (uint32_t k = 0; k < np; k++) {
        kiln_profile *pr = &e->profiles[k];
        pr->inputs = kiln_calloc(ni ? ni : 1, sizeof(kiln_profile_dims));
        pr->plan.slots = kiln_calloc(ns ? ns : 1, sizeof(kiln_slot_plan));
        if (!pr->inputs || !pr->plan.slots) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        pr->plan.n_slots = (int)ns;
        for (uint32_t i = 0; i < ni; i++) {
            kiln_profile_dims *d = &pr->inputs[i];
            d->rank = (int)(int32_t)rd32(&r);
            if (d->rank < -1 || d->rank > KILN_MAX_RANK) r.bad = true;
            for (int j = 0; !r.bad && j < d->rank; j++) {
                d->min[j] = (int64_t)rd64(&r);
                d->opt[j] = (int64_t)rd64(&r);
                d->max[j] = (int64_t)rd64(&r);
            }
        }
        pr->plan.arena_bytes = rd64(&r);
        pr->plan.naive_bytes = rd64(&r);
        pr->plan.n_inplace = (int)rd32(&r);
        pr->plan.n_dynamic = (int)rd32(&r);
        for (uint32_t j = 0; !r.bad && j < ns; j++) {
            kiln_slot_plan *sp = &pr->plan.slots[j];
            sp->offset = (int64_t)rd64(&r);
            sp->bytes = rd64(&r);
            if (sp->offset < KILN_PLAN_DYNAMIC || (sp->offset >= 0 && (uint64_t)sp->offset + sp->bytes > pr->plan.arena_bytes))
                r.bad = true;
        }
        if (r.bad) return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: PLAN section is malformed (profile %u)", what, k);
    }
    if (r.p != r.end) return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: PLAN section has trailing bytes", what);
    return KILN_STATUS_OK;
}

static const char *section_name(uint32_t id) {
    switch (id) {
    case KILN_SECTION_META: return "META";
    case KILN_SECTION_GRAPH: return "GRAPH";
    case KILN_SECTION_WEIGHTS: return "WEIGHTS";
    case KILN_SECTION_PLAN: return "PLAN";
    }
    return "unknown";
}

static kiln_status read_meta(const uint8_t *p, size_t n, const char *what, kiln_engine *e) {
    cJSON *j = cJSON_ParseWithLength((const char *)p, n);
    if (!j) return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: META section is not valid JSON", what);
    kiln_status s = KILN_STATUS_OK;
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "kiln_version");
    const cJSON *backend = cJSON_GetObjectItemCaseSensitive(j, "backend");
    const cJSON *device = cJSON_GetObjectItemCaseSensitive(j, "device");
    const cJSON *passes = cJSON_GetObjectItemCaseSensitive(j, "passes");
    const cJSON *nb = cJSON_GetObjectItemCaseSensitive(j, "nodes_before");
    const cJSON *prec = cJSON_GetObjectItemCaseSensitive(j, "precisions");
    if (!cJSON_IsString(ver) || !cJSON_IsString(backend) || !cJSON_IsString(device)) {
        s = kiln_error(KILN_STATUS_INVALID_MODEL, "%s: META section lacks kiln_version, backend or device", what);
    } else if (strcmp(ver->valuestring, KILN_VERSION_STRING) != 0) {
        s = kiln_error(KILN_STATUS_UNSUPPORTED, "%s: built by kiln %s, this is kiln %s: rebuild the engine from its model", what,
                       ver->valuestring, KILN_VERSION_STRING);
    } else if (strcmp(backend->valuestring, "cuda") == 0 && !KILN_CUDA_BUILT) {
        s = kiln_error(KILN_STATUS_UNSUPPORTED, "%s: built for the GPU ('%s'); this kiln was built without the CUDA backend", what, device->valuestring);
    } else if (strcmp(backend->valuestring, "ref") != 0 && strcmp(backend->valuestring, "cuda") != 0) {
        s = kiln_error(KILN_STATUS_UNSUPPORTED, "%s: built for backend '%s', which this kiln build does not have", what, backend->valuestring);
    } else if (strcmp(backend->valuestring, "ref") == 0 && strcmp(device->valuestring, "cpu") != 0) {
        s = kiln_error(KILN_STATUS_UNSUPPORTED, "%s: built for device '%s'; this machine runs the 'cpu' backend", what, device->valuestring);
    } else {
        const cJSON *caps = cJSON_GetObjectItemCaseSensitive(j, "device_capabilities");
        const cJSON *cc = cJSON_GetObjectItemCaseSensitive(caps, "compute_capability");
        if (strcmp(backend->valuestring, "cuda") == 0) {
            if (!cJSON_IsNumber(cc)) {
                cJSON_Delete(j);
                return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: a cuda engine without its compute capability", what);
            }
            e->cuda_cc = cc->valueint;
        }
        snprintf(e->backend, sizeof e->backend, "%s", backend->valuestring);
        snprintf(e->device, sizeof e->device, "%s", device->valuestring);
        e->nodes_before = cJSON_IsNumber(nb) ? nb->valueint : 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, prec) {
            for (int k = 0; k < N_PRECISION_NAMES; k++)
                if (cJSON_IsString(it) && strcmp(it->valuestring, precision_names[k]) == 0) e->precisions |= 1u << k;
        }
        cJSON_ArrayForEach(it, passes) {
            if (e->passes.n >= (int)(sizeof e->passes.items / sizeof e->passes.items[0])) break;
            int k = e->passes.n++;
            kiln_pass_stats *ps = &e->passes.items[k];
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "pass");
            snprintf(e->pass_names[k], sizeof e->pass_names[k], "%s", cJSON_IsString(name) ? name->valuestring : "?");
            ps->pass = e->pass_names[k];
            const cJSON *x;
            if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(it, "removed"))) ps->removed = x->valueint;
            if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(it, "fused"))) ps->fused = x->valueint;
            if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(it, "folded"))) ps->folded = x->valueint;
        }
    }
    cJSON_Delete(j);
    return s;
}

/* A cuda engine's tactics, one per node of the (now imported) graph. */
static kiln_status read_tactics(const uint8_t *p, size_t n, const char *what, kiln_engine *e) {
    if (!e->cuda_cc) return KILN_STATUS_OK;
    cJSON *j = cJSON_ParseWithLength((const char *)p, n);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "tactics");
    int nn = e->model.graph->n_nodes;
    kiln_status s = KILN_STATUS_OK;
    if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) != nn) {
        s = kiln_error(KILN_STATUS_INVALID_MODEL, "%s: META tactics do not match the graph's %d nodes", what, nn);
    } else if (!(e->tactics = kiln_calloc((size_t)(nn ? nn : 1), sizeof(int)))) {
        s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    } else {
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, t) e->tactics[i++] = cJSON_IsNumber(it) ? it->valueint : -1;
        const cJSON *note = cJSON_GetObjectItemCaseSensitive(j, "tuning_note");
        if (cJSON_IsString(note)) snprintf(e->tuning_note, sizeof e->tuning_note, "%s", note->valuestring);
        e->host_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "host_fallback"));
    }
    cJSON_Delete(j);
    return s;
}

kiln_status kiln_engine_read(const void *data, size_t size, const char *what, kiln_engine_t *e) {
    const uint8_t *p = data;
    if (size < KILN_FILE_HEADER_SIZE)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: %zu bytes is too short for a kiln engine (truncated?)", what, size);
    if (memcmp(p, KILN_FILE_MAGIC, 8) != 0)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: not a kiln engine (bad magic; an ONNX model goes through 'kiln build')", what);
    uint32_t version = get32(p + 8);
    if (version != KILN_FILE_VERSION)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: engine format version %u, this kiln reads version %d: rebuild the engine", what,
                          version, KILN_FILE_VERSION);
    uint8_t hdr[KILN_FILE_HEADER_SIZE];
    memcpy(hdr, p, sizeof hdr);
    put32(hdr + 44, 0);
    if (crc(hdr, sizeof hdr) != get32(p + 44))
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: the header checksum does not match: the file is corrupted", what);
    uint64_t fsize = get64(p + 16), toff = get64(p + 24);
    uint32_t count = get32(p + 32);
    if (fsize != size)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: the header says %llu bytes, the file has %zu (truncated or padded)", what,
                          (unsigned long long)fsize, size);
    if (count == 0 || count > 64 || toff < KILN_FILE_HEADER_SIZE || toff > size || (uint64_t)count * KILN_FILE_ENTRY_SIZE > size - toff)
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: the section table lies outside the file", what);
    if (crc(p + toff, (size_t)count * KILN_FILE_ENTRY_SIZE) != get32(p + 40))
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: the section table checksum does not match: the file is corrupted", what);
    const uint8_t *sec[5] = {0};
    size_t sec_size[5] = {0};
    for (uint32_t k = 0; k < count; k++) {
        const uint8_t *t = p + toff + (size_t)k * KILN_FILE_ENTRY_SIZE;
        uint32_t id = get32(t), c = get32(t + 4);
        uint64_t off = get64(t + 8), n = get64(t + 16);
        if (off > size || n > size - off || off % 64)
            return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: section %s lies outside the file or is misaligned", what, section_name(id));
        if (crc(p + off, (size_t)n) != c)
            return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: section %s checksum does not match: the file is corrupted", what,
                              section_name(id));
        if (id >= 1 && id <= 4) {
            sec[id] = p + off;
            sec_size[id] = (size_t)n;
        }
    }
    for (uint32_t id = 1; id <= 4; id++)
        if (!sec[id]) return kiln_error(KILN_STATUS_INVALID_MODEL, "%s: section %s is missing", what, section_name(id));
    KILN_TRY(read_meta(sec[KILN_SECTION_META], sec_size[KILN_SECTION_META], what, e));
    e->model.weights = sec[KILN_SECTION_WEIGHTS];
    e->model.weights_size = sec_size[KILN_SECTION_WEIGHTS];
    e->model.engine_graph = true;
    KILN_TRY(kiln_model_import(sec[KILN_SECTION_GRAPH], sec_size[KILN_SECTION_GRAPH], what, ".", &e->model));
    KILN_TRY(read_tactics(sec[KILN_SECTION_META], sec_size[KILN_SECTION_META], what, e));
    return read_plan(sec[KILN_SECTION_PLAN], sec_size[KILN_SECTION_PLAN], what, e);
}

/* cmd_build.c — `kiln build`: ONNX model → .kiln engine, trtexec's habits: --shapes for a
 * static profile, --min/--opt/--max-shapes (each repeat makes one more profile), precisions,
 * per-layer precision, workspace, device; a summary (or --json) of what was built. */
#include "cli.h"

#include "core/core.h"
#include "quant/calib_data.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PROFILES 16

static void help(void) {
    printf("usage: kiln build MODEL.onnx -o OUT.kiln [options]\n\n"
           "Optimizes MODEL (constant folding, dead code, BatchNorm folding, activation, LayerNorm, Gelu and\n"
           "attention fusion), plans memory for each optimization profile and writes a .kiln engine.\n\n"
           "options:\n"
           "  -o, --output OUT.kiln         the engine file to write (required)\n"
           "  --shapes NAME:AxB,...         one profile with these fixed input shapes\n"
           "  --min-shapes NAME:AxB,...     minimum shapes of a profile; each --min/--opt/--max-shapes triple\n"
           "  --opt-shapes NAME:AxB,...     adds one profile (repeat them for several profiles)\n"
           "  --max-shapes NAME:AxB,...\n"
           "  --fp16, --bf16                float compute in fp16 (or bf16); inputs and outputs stay fp32. On the GPU\n"
           "                                the kernels accumulate in fp32; on the CPU the reference kernels compute\n"
           "                                in 16 bits (to study a model's fp16 error without a GPU)\n"
           "  --tf32                        GPU: fp32 products and convolutions may use TF32 tensor cores (10-bit\n"
           "                                mantissa inputs, fp32 accumulation; TensorRT's default). Without it fp32\n"
           "                                is exact fp32. CPU engines compute in fp32 either way\n"
           "  --int8                        INT8: Conv, MatMul and Gemm with constant weights become QLinearConv /\n"
           "                                QLinearMatMul / ConvInteger / MatMulInteger (per-channel int8 weights,\n"
           "                                per-tensor int8 activations); the rest stays fp32. Needs opset >= 13.\n"
           "                                Post-training: needs calibration data or an existing --calib-cache.\n"
           "                                A model with QuantizeLinear/DequantizeLinear nodes (quantization-aware\n"
           "                                training) takes its scales from them, without calibration; its Q/DQ\n"
           "                                layers become int8 even without --int8 (explicit quantization)\n"
           "  --calib FILE.npz              calibration data: one array per input name, samples stacked on axis 0\n"
           "  --calib-dir DIR               calibration data: .npy/.npz files, one sample (or batch) each\n"
           "  --calib-images DIR            calibration data: .jpg/.jpeg/.png/.bmp images, searched recursively\n"
           "                                (ImageFolder layout), in sorted order, for a model with one image input\n"
           "  --calib-preprocess SPEC       for --calib-images, e.g. resize=256,crop=224,mean=0.485:0.456:0.406,\n"
           "                                std=0.229:0.224:0.225,layout=nchw (also scale=255, order=rgb|bgr):\n"
           "                                as torchvision's Resize + CenterCrop + ToTensor + Normalize (see\n"
           "                                kiln calibrate --help)\n"
           "  --calib-batch N               calibration samples per batch (default 1)\n"
           "  --calib-max N                 calibrate on at most the first N samples\n"
           "  --calib-method M              entropy (default), minmax, percentile or mse\n"
           "  --calib-cache FILE            calibration cache (TensorRT's text format): read when it exists\n"
           "                                (calibration skipped), else written after calibrating\n"
           "  --layer-precision NODE:fp32   keep a node at a precision (repeatable)\n"
           "  --workspace MIB               scratch memory limit for kernels\n"
           "  --device cpu|cuda             target device (default cpu)\n"
           "  --host-fallback               GPU: nodes without a GPU kernel run on the CPU (their inputs copied\n"
           "                                over, each copy a wait for the GPU; no CUDA graph) instead of the\n"
           "                                build being refused; kiln inspect lists them\n"
           "  --timing-cache FILE           GPU: kernel timing decisions, read when present and written after the\n"
           "                                build, so rebuilds skip the timing and choose the same kernels\n"
           "  -O LEVEL                      0: no passes, 1: folding and cleanup, 2: also fusions (default)\n"
           "  --json                        print the build report as JSON on stdout\n"
           "  -h, --help                    this text\n");
}

static int parse_precision(const char *s, kiln_precision *p) {
    if (strcmp(s, "fp32") == 0) *p = KILN_PRECISION_FP32;
    else if (strcmp(s, "fp16") == 0) *p = KILN_PRECISION_FP16;
    else if (strcmp(s, "bf16") == 0) *p = KILN_PRECISION_BF16;
    else if (strcmp(s, "int8") == 0) *p = KILN_PRECISION_INT8;
    else return -1;
    return 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void calib_progress(int64_t done, int64_t total, void *user) {
    (void)user;
    fprintf(stderr, "\rkiln build: calibrating, batch %lld / %lld", (long long)done, (long long)total);
    if (done == total) fputc('\n', stderr);
}

/* Adds the shapes of one profile; min/opt/max lists must name the same inputs. */
static kiln_status add_profile(kiln_builder_t *b, const char *min, const char *opt, const char *max) {
    cli_shape smin[64], sopt[64], smax[64];
    int nmin, nopt, nmax;
    if (cli_parse_shapes(min, smin, 64, &nmin) || cli_parse_shapes(opt, sopt, 64, &nopt) || cli_parse_shapes(max, smax, 64, &nmax))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "bad shape list (expected NAME:AxBxC,...): '%s' / '%s' / '%s'", min, opt, max);
    int p;
    KILN_TRY(kiln_builder_add_profile(b, &p));
    for (int k = 0; k < nmin; k++) {
        const cli_shape *o = cli_find_shape(sopt, nopt, smin[k].name), *x = cli_find_shape(smax, nmax, smin[k].name);
        if (!o || !x || o->rank != smin[k].rank || x->rank != smin[k].rank)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile %d: input '%s' needs min, opt and max shapes of one rank", p, smin[k].name);
        KILN_TRY(kiln_builder_set_profile_shape(b, p, smin[k].name, smin[k].rank, smin[k].dims, o->dims, x->dims));
    }
    if (nopt != nmin || nmax != nmin)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile %d: --min-shapes, --opt-shapes and --max-shapes must name the same inputs", p);
    return KILN_STATUS_OK;
}

/* --calib-images: the image folder source of kiln calibrate, handed to the builder as a kiln_calibrator
 * (the C API's way to calibrate from an application's own loader). */
typedef struct image_batches {
    kiln_calib_source *src;
    int64_t next;
    kiln_status failed; /* a batch's error, kept: the builder only sees that get_batch failed */
    char error[1024];
} image_batches;

static int image_batch(void *user, int n, const char *const *names, kiln_tensor_t **tensors) {
    (void)names;
    image_batches *ib = user;
    if (ib->next >= kiln_calib_source_num_batches(ib->src)) return 0;
    kiln_tensor *const *in;
    kiln_status s = kiln_calib_source_batch(ib->src, ib->next++, &in);
    if (s) {
        ib->failed = s;
        snprintf(ib->error, sizeof ib->error, "%s", kiln_last_error());
        return -1;
    }
    for (int i = 0; i < n; i++) tensors[i] = in[i];
    return 1;
}

static kiln_status set_image_calibrator(kiln_builder_t *b, const kiln_model_t *m, const char *dir, const char *spec,
                                        int64_t batch, int64_t max, image_batches *ib) {
    kiln_calib_preprocess pp;
    kiln_calib_preprocess_default(&pp);
    if (spec) {
        kiln_status s = kiln_calib_preprocess_parse(spec, &pp);
        if (s) return kiln_error_prefix(s, "--calib-preprocess");
    }
    kiln_calib_source_options so = {.batch = batch, .max_samples = max, .preprocess = &pp};
    KILN_TRY(kiln_calib_source_open(KILN_CALIB_SOURCE_IMAGES, m, dir, &so, &ib->src));
    kiln_calibrator cal = {.batch_size = kiln_calib_source_batch_size(ib->src),
                           .num_batches = kiln_calib_source_num_batches(ib->src), .user = ib, .get_batch = image_batch};
    return kiln_builder_set_calibrator(b, &cal);
}

int cmd_build(int argc, char **argv) {
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},     {"shapes", required_argument, 0, 'S'},
        {"min-shapes", required_argument, 0, 'm'}, {"opt-shapes", required_argument, 0, 'p'},
        {"max-shapes", required_argument, 0, 'M'}, {"fp16", no_argument, 0, 1},
        {"bf16", no_argument, 0, 2},               {"int8", no_argument, 0, 3},
        {"layer-precision", required_argument, 0, 'l'}, {"workspace", required_argument, 0, 'w'},
        {"device", required_argument, 0, 'd'},     {"json", no_argument, 0, 'j'},
        {"calib", required_argument, 0, 4},        {"calib-dir", required_argument, 0, 5},
        {"calib-batch", required_argument, 0, 6},  {"calib-max", required_argument, 0, 7},
        {"calib-method", required_argument, 0, 8}, {"calib-cache", required_argument, 0, 9},
        {"timing-cache", required_argument, 0, 'T'},
        {"calib-images", required_argument, 0, 10}, {"calib-preprocess", required_argument, 0, 11},
        {"tf32", no_argument, 0, 12},              {"host-fallback", no_argument, 0, 13},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    const char *timing_cache = NULL;
    const char *calib = NULL, *calib_dir = NULL, *calib_method = NULL, *calib_cache = NULL, *calib_images = NULL,
               *calib_pre = NULL;
    int64_t calib_batch = 0, calib_max = 0;
    const char *out = NULL, *shapes = NULL, *mins[MAX_PROFILES], *opts_[MAX_PROFILES], *maxs[MAX_PROFILES];
    const char *layer_prec[256];
    int nmin = 0, nopt = 0, nmax = 0, nlp = 0, level = 2;
    unsigned precisions = KILN_PRECISION_FP32;
    double workspace_mib = 0;
    bool json = false, host_fallback = false;
    kiln_device device = KILN_DEVICE_CPU;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:O:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'S': shapes = optarg; break;
        case 'm': if (nmin == MAX_PROFILES) return cli_usage_error("build", "at most %d profiles", MAX_PROFILES); mins[nmin++] = optarg; break;
        case 'p': if (nopt == MAX_PROFILES) return cli_usage_error("build", "at most %d profiles", MAX_PROFILES); opts_[nopt++] = optarg; break;
        case 'M': if (nmax == MAX_PROFILES) return cli_usage_error("build", "at most %d profiles", MAX_PROFILES); maxs[nmax++] = optarg; break;
        case 1: precisions |= KILN_PRECISION_FP16; break;
        case 2: precisions |= KILN_PRECISION_BF16; break;
        case 3: precisions |= KILN_PRECISION_INT8; break;
        case 12: precisions |= KILN_PRECISION_TF32; break;
        case 13: host_fallback = true; break;
        case 'l': if (nlp == 256) return cli_usage_error("build", "too many --layer-precision"); layer_prec[nlp++] = optarg; break;
        case 'w': workspace_mib = atof(optarg); break;
        case 'T': timing_cache = optarg; break;
        case 'd':
            if (strcmp(optarg, "cpu") == 0) device = KILN_DEVICE_CPU;
            else if (strcmp(optarg, "cuda") == 0) device = KILN_DEVICE_CUDA;
            else return cli_usage_error("build", "--device must be cpu or cuda, not '%s'", optarg);
            break;
        case 4: calib = optarg; break;
        case 5: calib_dir = optarg; break;
        case 6:
        case 7: {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (end == optarg || *end || v < 1)
                return cli_usage_error("build", "--calib-%s wants a positive count, not '%s'", c == 6 ? "batch" : "max", optarg);
            *(c == 6 ? &calib_batch : &calib_max) = v;
            break;
        }
        case 8: calib_method = optarg; break;
        case 9: calib_cache = optarg; break;
        case 10: calib_images = optarg; break;
        case 11: calib_pre = optarg; break;
        case 'O': level = atoi(optarg); break;
        case 'j': json = true; break;
        case 'h': help(); return 0;
        default: return cli_usage_error("build", "bad option");
        }
    }
    if (optind != argc - 1) return cli_usage_error("build", "expected exactly one MODEL argument");
    if (!out) return cli_usage_error("build", "-o OUT.kiln is required");
    if (nmin != nopt || nmin != nmax) return cli_usage_error("build", "give --min-shapes, --opt-shapes and --max-shapes the same number of times");
    if (shapes && nmin) return cli_usage_error("build", "--shapes and --min/--opt/--max-shapes exclude each other");
    if (!!calib + !!calib_dir + !!calib_images > 1)
        return cli_usage_error("build", "--calib, --calib-dir and --calib-images exclude each other");
    if (calib_pre && !calib_images) return cli_usage_error("build", "--calib-preprocess applies to --calib-images");
    bool int8 = (precisions & KILN_PRECISION_INT8) != 0;
    if (!int8 && (calib || calib_dir || calib_images || calib_method || calib_cache || calib_batch || calib_max))
        return cli_usage_error("build", "the --calib* options need --int8");
    if (calib_method && strcmp(calib_method, "entropy") && strcmp(calib_method, "minmax") && strcmp(calib_method, "percentile") &&
        strcmp(calib_method, "mse"))
        return cli_usage_error("build", "--calib-method must be entropy, minmax, percentile or mse, not '%s'", calib_method);
    const char *model_path = argv[optind];
    bool progress = cli_interactive() && !json;
    double t0 = now_s();
    kiln_model_t *m = NULL;
    kiln_builder_t *b = NULL;
    kiln_engine_t *e = NULL;
    char *desc = NULL;
    image_batches ib = {0};
    kiln_status s;
    if (progress) fprintf(stderr, "kiln build: importing %s\n", model_path);
    if ((s = kiln_model_load(model_path, &m))) goto fail;
    double t_import = now_s();
    if ((s = kiln_builder_create(&b))) goto fail;
    if ((s = kiln_builder_set_device(b, device))) goto fail;
    if (timing_cache && (s = kiln_builder_set_timing_cache(b, timing_cache))) goto fail;
    if ((s = kiln_builder_set_host_fallback(b, host_fallback))) goto fail;
    if ((s = kiln_builder_set_precisions(b, precisions))) goto fail;
    if ((s = kiln_builder_set_optimization_level(b, level))) goto fail;
    if ((s = kiln_builder_set_workspace(b, (uint64_t)(workspace_mib * 1048576.0)))) goto fail;
    if (int8 && (s = kiln_builder_set_calibration(b, calib ? calib : calib_dir, calib_method, calib_batch, calib_max, calib_cache,
                                                  progress ? calib_progress : NULL, NULL)))
        goto fail;
    if (calib_images && (s = set_image_calibrator(b, m, calib_images, calib_pre, calib_batch, calib_max, &ib))) goto fail;
    for (int k = 0; k < nlp; k++) {
        const char *colon = strrchr(layer_prec[k], ':');
        kiln_precision p;
        if (!colon || parse_precision(colon + 1, &p)) {
            kiln_builder_destroy(b);
            kiln_model_destroy(m);
            return cli_usage_error("build", "--layer-precision wants NODE:fp32|fp16|bf16|int8, got '%s'", layer_prec[k]);
        }
        char node[512];
        snprintf(node, sizeof node, "%.*s", (int)(colon - layer_prec[k]), layer_prec[k]);
        if ((s = kiln_builder_set_layer_precision(b, node, p))) goto fail;
    }
    if (shapes && (s = add_profile(b, shapes, shapes, shapes))) goto fail;
    for (int k = 0; k < nmin; k++)
        if ((s = add_profile(b, mins[k], opts_[k], maxs[k]))) goto fail;
    if (progress) fprintf(stderr, "kiln build: optimizing and planning memory\n");
    if ((s = kiln_builder_build(b, m, &e))) {
        if (ib.failed) s = kiln_error(ib.failed, "%s", ib.error); /* the image's own error, not just "get_batch failed" */
        goto fail;
    }
    double t_build = now_s();
    if (progress) fprintf(stderr, "kiln build: writing %s\n", out);
    if ((s = kiln_engine_save(e, out))) goto fail;
    double t_save = now_s();
    if ((s = kiln_engine_describe(e, &desc))) goto fail;
    if (json) {
        /* the description plus timings */
        printf("{\"engine\": \"%s\", \"import_s\": %.4f, \"build_s\": %.4f, \"save_s\": %.4f, \"description\": %s}\n", out,
               t_import - t0, t_build - t_import, t_save - t_build, desc);
    } else {
        int nin = kiln_engine_num_profiles(e);
        printf("built %s from %s in %.3f s (import %.3f s, passes and planning %.3f s, write %.3f s)\n", out, model_path,
               t_save - t0, t_import - t0, t_build - t_import, t_save - t_build);
        printf("profiles: %d; run 'kiln inspect %s' for layers, fusions and memory\n", nin, out);
    }
    free(desc);
    kiln_engine_destroy(e);
    kiln_builder_destroy(b);
    kiln_calib_source_destroy(ib.src);
    kiln_model_destroy(m);
    return 0;
fail:
    cli_fail(s);
    free(desc);
    kiln_engine_destroy(e);
    kiln_builder_destroy(b);
    kiln_calib_source_destroy(ib.src);
    kiln_model_destroy(m);
    return 1;
}

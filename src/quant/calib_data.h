/* calib_data.h — where INT8 calibration data comes from: batches of input tensors, one per graph
 * input of a model, read from an .npz, a folder of .npy/.npz files, or a folder of images.
 *
 * Samples and batches
 *   A source holds a sequence of samples (units). Each unit gives one tensor per fed graph input.
 *   A batch is --calib-batch N consecutive units joined along axis 0, the model's batch axis:
 *     unit rank == model rank - 1   the units are stacked:      [N, unit dims...]   (one sample each)
 *     unit rank == model rank       they are concatenated:      [sum of dim 0, rest...] (a batch each)
 *   Any other rank is refused. The batch is then checked against the graph input's declared dtype
 *   (exactly: no conversion), rank, fixed dims, and symbolic dims (equal symbols, equal sizes,
 *   across the inputs of one batch). When the unit count is not a multiple of N the last, smaller
 *   batch is kept if every fed input's axis 0 is dynamic, and dropped otherwise. max_samples (> 0)
 *   keeps the first max_samples units.
 *
 * The three sources
 *   npz     one array per graph input name, the samples stacked on a new leading axis (the
 *           calib_data.npz of TensorRT calibration scripts): unit k of input x is npz['x'][k].
 *           Every fed input needs an array and all arrays the same number of samples. Arrays that
 *           name no graph input are ignored (kiln_calib_source_ignored lists them).
 *   dir     a folder of .npy and .npz files, not recursive, sorted by file name (strcmp byte order;
 *           names starting with '.' and other extensions are skipped): each file is one unit.
 *           An .npz holds one array per input name (as above, without the stacking axis); an .npy
 *           feeds the model's only required input.
 *   images  a folder searched recursively (torchvision ImageFolder's layout: root/class/img.png),
 *           each directory's entries sorted by name (strcmp), dot-names skipped, files ending in
 *           .jpg .jpeg .png .bmp (any case) taken: each image is one unit, decoded by stb_image to
 *           8 bits per channel and preprocessed (kiln_calib_preprocess below) into [C,H,W] (nchw)
 *           or [H,W,C] (nhwc) of the input's float dtype. The model must have one required input.
 *           Without stb_image (KILN_HAVE_STB undefined at build time) it is UNSUPPORTED.
 *
 * Inputs that have an initializer (optional graph inputs) are fed only when the data names them
 * (npz, dir .npz files); otherwise their batch tensor is NULL and the initializer is used.
 * Errors are one line naming the file (and the array or input) and what is wrong.
 * Tested by tests/models/test_calibrate_cli.py. */
#ifndef KILN_QUANT_CALIB_DATA_H
#define KILN_QUANT_CALIB_DATA_H

#include "core/core.h"
#include "onnx/import.h"

/* Image preprocessing, like torchvision's Resize(size) + CenterCrop + ToTensor + Normalize:
 *   1. resize: resize_w == 0 and resize_h > 0: the shorter side becomes resize_h and the longer
 *      side trunc(resize_h * long / short) (torchvision's rule); both > 0: exactly resize_h x
 *      resize_w; 0: no resize. Bilinear with antialiasing, PIL's algorithm (a triangle filter
 *      whose support widens by the downscale factor, weights normalised; horizontal then
 *      vertical), computed in double without PIL's rounding to 8 bits in between.
 *   2. center crop to crop_h x crop_w (0: none): top = rint((H - crop_h) / 2), left likewise
 *      (torchvision's rounding); a crop larger than the image is an error naming the file.
 *   3. per channel, in float32: x = (v / scale - mean[c]) / std[c].
 *   4. layout NCHW ([C,H,W] per sample) or NHWC ([H,W,C]); channel order RGB or BGR.
 * C comes from the model's input (its channel dim when fixed at 1, 3 or 4, else 3): 1 decodes
 * to grey, 4 keeps alpha. mean and std hold 1 value (for every channel) or C values. */
typedef struct kiln_calib_preprocess {
    int resize_h, resize_w; /* see 1. */
    int crop_h, crop_w;     /* see 2. */
    float mean[4], std[4];  /* defaults 0 and 1 */
    int n_mean, n_std;      /* values given (0: the defaults) */
    float scale;            /* default 255 */
    bool nhwc;              /* default false: NCHW */
    bool bgr;               /* default false: RGB */
} kiln_calib_preprocess;

/* The defaults above: no resize or crop, mean 0, std 1, scale 255, NCHW, RGB. */
void kiln_calib_preprocess_default(kiln_calib_preprocess *pp);
/* Parses "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,layout=nchw,scale=255,
 * order=rgb" (keys in any order, all optional; resize and crop take N or HxW) over the defaults.
 * INVALID_ARGUMENT naming the key and what is wrong. */
kiln_status kiln_calib_preprocess_parse(const char *spec, kiln_calib_preprocess *pp);

typedef enum kiln_calib_source_kind {
    KILN_CALIB_SOURCE_NPZ = 0,
    KILN_CALIB_SOURCE_DIR = 1,
    KILN_CALIB_SOURCE_IMAGES = 2,
} kiln_calib_source_kind;

/* "npz", "dir", "images". */
const char *kiln_calib_source_kind_name(kiln_calib_source_kind k);

typedef struct kiln_calib_source_options {
    int64_t batch;       /* units per batch, >= 1 (0: 1) */
    int64_t max_samples; /* use at most this many units (0: all) */
    const kiln_calib_preprocess *preprocess; /* images (NULL: the defaults) */
} kiln_calib_source_options;

typedef struct kiln_calib_source kiln_calib_source;

/* Opens a source over path for model m (which must outlive it). Lists (and for npz reads) the
 * data and checks what can be checked before any batch: names, sample counts, ranks, dtypes, that
 * there is at least one batch. Each batch's shapes are checked when it is made. */
kiln_status kiln_calib_source_open(kiln_calib_source_kind kind, const kiln_model *m, const char *path,
                                   const kiln_calib_source_options *opt, kiln_calib_source **out);
void kiln_calib_source_destroy(kiln_calib_source *s);

kiln_calib_source_kind kiln_calib_source_kind_of(const kiln_calib_source *s);
const char *kiln_calib_source_path(const kiln_calib_source *s);
int64_t kiln_calib_source_batch_size(const kiln_calib_source *s);
int64_t kiln_calib_source_num_batches(const kiln_calib_source *s);
/* Units the batches cover (after max_samples and a dropped partial batch). */
int64_t kiln_calib_source_num_samples(const kiln_calib_source *s);
/* Units the data holds (images or files found, or the npz's leading dim). */
int64_t kiln_calib_source_available(const kiln_calib_source *s);
/* Names of npz arrays that feed no graph input (npz source; NULL-terminated, owned by s). */
const char *const *kiln_calib_source_ignored(const kiln_calib_source *s);

/* Makes batch b (0 <= b < num_batches): *inputs points to an array of the graph's n_inputs
 * tensors in graph input order, NULL for an unfed input with an initializer. The tensors are
 * owned by the source and valid until the next call or destroy. */
kiln_status kiln_calib_source_batch(kiln_calib_source *s, int64_t b, kiln_tensor *const **inputs);

/* Checks a batch that came from elsewhere (a kiln_calibrator's get_batch): one tensor per graph
 * input (NULL only for an input with an initializer), each against the input's dtype, rank, fixed
 * dims and symbols, as batches of the sources are checked. `what` starts the messages. */
kiln_status kiln_calib_check_batch(const kiln_graph *g, kiln_tensor *const *inputs, const char *what);

#endif /* KILN_QUANT_CALIB_DATA_H */

/* compare_plot.c — `kiln compare --plot FILE.png`: the maximum absolute error of every float output
 * against the step, on a log scale (decades gridded; exact zeros drawn at the bottom of the scale),
 * with each output's least-squares trend (dashed) and the --atol line when one applies. Drawn with
 * cairo (libcairo2-dev) when kiln is built with it (KILN_HAVE_CAIRO); without it --plot is refused. */
#include "compare.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

#ifndef KILN_HAVE_CAIRO

bool cmp_plot_available(void) { return false; }

kiln_status cmp_plot(const char *path, const cmp_opts *o, const cmp_result *res) {
    (void)o, (void)res;
    return kiln_error(KILN_STATUS_UNSUPPORTED, "--plot %s: this kiln was built without cairo (install libcairo2-dev and rebuild)", path);
}

#else
#include <cairo.h>

enum { W = 1000, H = 600, LEFT = 90, RIGHT = 230, TOP = 50, BOTTOM = 60 };

static const double palette[][3] = {
    {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16}, {0.58, 0.40, 0.74},
    {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}, {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81},
};

bool cmp_plot_available(void) { return true; }

typedef struct axes {
    double x0, x1;     /* steps */
    double l0, l1;     /* log10 of the value range */
} axes;

static double px(const axes *a, double x) { return LEFT + (x - a->x0) / (a->x1 - a->x0) * (W - LEFT - RIGHT); }
static double py(const axes *a, double v) {
    double l = v > 0 ? log10(v) : a->l0;
    if (l < a->l0) l = a->l0;
    return H - BOTTOM - (l - a->l0) / (a->l1 - a->l0) * (H - TOP - BOTTOM);
}

static void text(cairo_t *cr, double x, double y, const char *s, double align) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - e.width * align - e.x_bearing, y);
    cairo_show_text(cr, s);
}

/* The value range over every plotted output (and the atol line), in whole decades. */
static void value_range(const cmp_result *res, axes *a) {
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < res->n_outs; i++) {
        const cmp_output *out = &res->outs[i];
        if (out->worst.exact) continue;
        for (int64_t k = 0; k < out->n_steps; k++) {
            double v = out->steps[k].abs_max;
            if (v > 0 && isfinite(v)) lo = fmin(lo, v), hi = fmax(hi, v);
        }
        if (out->thr.tol && out->thr.atol > 0) lo = fmin(lo, out->thr.atol), hi = fmax(hi, out->thr.atol);
    }
    if (!(hi > 0)) lo = 1e-8, hi = 1e-7;
    a->l0 = floor(log10(lo)) - (lo == hi ? 1 : 0);
    a->l1 = ceil(log10(hi));
    if (a->l1 <= a->l0) a->l1 = a->l0 + 1;
}

static void draw_axes(cairo_t *cr, const axes *a, int64_t steps) {
    cairo_set_line_width(cr, 1);
    cairo_set_font_size(cr, 12);
    char buf[64];
    int every = (int)ceil((a->l1 - a->l0) / 10.0);
    for (double l = a->l0; l <= a->l1 + 1e-9; l += 1) {
        double y = py(a, pow(10, l));
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, LEFT, y);
        cairo_line_to(cr, W - RIGHT, y);
        cairo_stroke(cr);
        if ((long)(l - a->l0) % every) continue;
        cairo_set_source_rgb(cr, 0, 0, 0);
        snprintf(buf, sizeof buf, "1e%+d", (int)l);
        text(cr, LEFT - 8, y + 4, buf, 1.0);
    }
    /* x ticks: 1, 2 or 5 times a power of ten, at most about ten of them */
    static const double mult[] = {1, 2, 5, 10, 20, 50};
    double span = a->x1 - a->x0, base = pow(10, floor(log10(fmax(span, 1) / 10))), tick = base;
    for (size_t k = 0; k < sizeof mult / sizeof *mult && span / (tick = base * mult[k]) > 10; k++) {}
    if (tick < 1) tick = 1;
    for (double x = 0; x <= a->x1 + 1e-9; x += tick) {
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, px(a, x), TOP);
        cairo_line_to(cr, px(a, x), H - BOTTOM);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        snprintf(buf, sizeof buf, "%lld", (long long)x);
        text(cr, px(a, x), H - BOTTOM + 18, buf, 0.5);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, LEFT, TOP, W - LEFT - RIGHT, H - TOP - BOTTOM);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 13);
    snprintf(buf, sizeof buf, "step (of %lld)", (long long)steps);
    text(cr, LEFT + (W - LEFT - RIGHT) / 2.0, H - 15, buf, 0.5);
    cairo_save(cr);
    cairo_translate(cr, 22, TOP + (H - TOP - BOTTOM) / 2.0);
    cairo_rotate(cr, -M_PI / 2);
    text(cr, 0, 0, "max |target - reference|", 0.5);
    cairo_restore(cr);
}

static void draw_output(cairo_t *cr, const axes *a, const cmp_output *out, const double *rgb, int legend_row) {
    int64_t n = out->n_steps;
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_set_line_width(cr, 1.5);
    for (int64_t k = 0; k < n; k++) {
        double x = px(a, (double)k), y = py(a, out->steps[k].abs_max);
        if (k) cairo_line_to(cr, x, y);
        else cairo_move_to(cr, x, y);
    }
    cairo_stroke(cr);
    if (n <= 60)
        for (int64_t k = 0; k < n; k++) {
            cairo_arc(cr, px(a, (double)k), py(a, out->steps[k].abs_max), 2.5, 0, 2 * M_PI);
            cairo_fill(cr);
        }
    /* the least-squares trend of the values (a straight line in value, drawn through the log scale) */
    double mean = 0;
    for (int64_t k = 0; k < n; k++) mean += out->steps[k].abs_max;
    mean /= (double)n;
    double dashes[] = {6, 4};
    cairo_set_dash(cr, dashes, 2, 0);
    cairo_set_line_width(cr, 1);
    for (int s = 0; s <= 100; s++) {
        double x = a->x0 + (a->x1 - a->x0) * s / 100.0;
        double y = py(a, mean + out->slope_max * (x - (double)(n - 1) / 2.0));
        if (s) cairo_line_to(cr, px(a, x), y);
        else cairo_move_to(cr, px(a, x), y);
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    /* legend */
    double ly = TOP + 10 + 36.0 * legend_row, lx = W - RIGHT + 15;
    cairo_rectangle(cr, lx, ly, 14, 10);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 12);
    char buf[300];
    snprintf(buf, sizeof buf, "%.26s", out->name);
    text(cr, lx + 20, ly + 10, buf, 0);
    snprintf(buf, sizeof buf, "slope %+.2g/step", out->slope_max);
    text(cr, lx + 20, ly + 25, buf, 0);
}

static void draw_atol(cairo_t *cr, const axes *a, const cmp_result *res) {
    double atol = -1;
    for (int i = 0; i < res->n_outs; i++)
        if (!res->outs[i].worst.exact && res->outs[i].thr.tol && res->outs[i].thr.atol > 0) atol = res->outs[i].thr.atol;
    if (atol <= 0) return;
    cairo_set_source_rgb(cr, 0.8, 0.1, 0.1);
    cairo_set_line_width(cr, 1);
    double dashes[] = {2, 3};
    cairo_set_dash(cr, dashes, 2, 0);
    cairo_move_to(cr, LEFT, py(a, atol));
    cairo_line_to(cr, W - RIGHT, py(a, atol));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    char buf[64];
    snprintf(buf, sizeof buf, "atol %g", atol);
    cairo_set_font_size(cr, 11);
    text(cr, W - RIGHT - 4, py(a, atol) - 4, buf, 1.0);
}

kiln_status cmp_plot(const char *path, const cmp_opts *o, const cmp_result *res) {
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surf);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "--plot %s: cairo cannot make an image", path);
    }
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    axes a = {0, res->steps > 1 ? (double)(res->steps - 1) : 1, 0, 1};
    value_range(res, &a);
    draw_axes(cr, &a, res->steps);
    cairo_save(cr);
    cairo_rectangle(cr, LEFT, TOP, W - LEFT - RIGHT, H - TOP - BOTTOM);
    cairo_clip(cr);
    draw_atol(cr, &a, res);
    cairo_restore(cr);
    int row = 0;
    for (int i = 0; i < res->n_outs; i++) {
        if (res->outs[i].worst.exact) continue;
        cairo_save(cr);
        const double *rgb = palette[row % (int)(sizeof palette / sizeof *palette)];
        draw_output(cr, &a, &res->outs[i], rgb, row);
        cairo_restore(cr);
        row++;
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 15);
    char title[300];
    snprintf(title, sizeof title, "kiln compare: error per step (%s%s)",
             o->n_state ? (o->closed_loop ? "closed loop" : "functional") : "independent steps", res->pass ? ", PASS" : ", FAIL");
    text(cr, LEFT, TOP - 18, title, 0);
    cairo_destroy(cr);
    cairo_status_t st = cairo_surface_write_to_png(surf, path);
    cairo_surface_destroy(surf);
    /* the font caches, so that leak checkers see a clean exit (nothing of cairo is alive now) */
    cairo_debug_reset_static_data();
    if (st != CAIRO_STATUS_SUCCESS) return kiln_error(KILN_STATUS_IO_ERROR, "--plot %s: cannot write the PNG: %s", path, cairo_status_to_string(st));
    return KILN_STATUS_OK;
}
#endif

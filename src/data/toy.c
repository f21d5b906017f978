/* data/toy.c — FFJORD's 2-D toy distributions. */
#include "data/data.h"

static const char *toy_names[] = {"moons", "circles", "rings", "8gaussians", "checkerboard", "pinwheel", "2spirals", NULL};

/* The NULL-terminated list of built-in toy dataset names (static; not to be freed). */
const char *const *nf_toy_names(void) { return toy_names; }

/* Index of name in nf_toy_names, or −1 if it is not a built-in toy dataset. */
int nf_toy_known(const char *name) {
    for (int i = 0; toy_names[i]; i++)
        if (strcmp(name, toy_names[i]) == 0) return i;
    return -1;
}

/* One point of each toy distribution; parameters are FFJORD's (Grathwohl et al. 2019, toy_data.py),
 * with the deterministic grids of sklearn's make_moons/make_circles replaced by uniform angles. */
static void toy_point(int which, nf_rng *r, double *px, double *py) {
    const double PI = 3.141592653589793;
    double x = 0, y = 0;
    switch (which) {
    case 0: { /* moons: make_moons(noise 0.1), then ·2 + (−1, −0.2) */
        double t = PI * nf_rng_uniform(r);
        if (nf_rng_u64(r) & 1) x = cos(t), y = sin(t);
        else x = 1 - cos(t), y = 1 - sin(t) - 0.5;
        x += 0.1 * nf_rng_normal(r), y += 0.1 * nf_rng_normal(r);
        x = 2 * x - 1, y = 2 * y - 0.2;
        break;
    }
    case 1: { /* circles: make_circles(factor 0.5, noise 0.08), ·3 */
        double t = 2 * PI * nf_rng_uniform(r), f = (nf_rng_u64(r) & 1) ? 1.0 : 0.5;
        x = f * cos(t) + 0.08 * nf_rng_normal(r), y = f * sin(t) + 0.08 * nf_rng_normal(r);
        x *= 3, y *= 3;
        break;
    }
    case 2: { /* rings: radii 1, .75, .5, .25, scaled by 3, noise 0.08 */
        double t = 2 * PI * nf_rng_uniform(r), rad = 0.25 * (double)(1 + nf_rng_u64(r) % 4);
        x = 3 * rad * cos(t) + 0.08 * nf_rng_normal(r), y = 3 * rad * sin(t) + 0.08 * nf_rng_normal(r);
        break;
    }
    case 3: { /* 8gaussians: centres 4·(cos, sin)(kπ/4), std 0.5, then /1.414 */
        int k = (int)(nf_rng_u64(r) % 8);
        x = 4 * cos(k * PI / 4) + 0.5 * nf_rng_normal(r), y = 4 * sin(k * PI / 4) + 0.5 * nf_rng_normal(r);
        x /= 1.414, y /= 1.414;
        break;
    }
    case 4: { /* checkerboard: x1 ~ U(−2, 2), x2 in the alternating unit squares, ·2 */
        double x1 = 4 * nf_rng_uniform(r) - 2;
        double x2 = nf_rng_uniform(r) - 2.0 * (double)(nf_rng_u64(r) & 1);
        x2 += fmod(floor(x1), 2.0) == 0 ? 0 : 1;
        x = 2 * x1, y = 2 * x2;
        break;
    }
    case 5: { /* pinwheel: 5 arms, radial std 0.3, tangential std 0.1, rate 0.25, ·2 */
        int k = (int)(nf_rng_u64(r) % 5);
        double f0 = 0.3 * nf_rng_normal(r) + 1, f1 = 0.1 * nf_rng_normal(r);
        double a = 2 * PI * k / 5 + 0.25 * exp(f0);
        x = 2 * (f0 * cos(a) + f1 * sin(a)), y = 2 * (-f0 * sin(a) + f1 * cos(a));
        break;
    }
    default: { /* 2spirals: n = √u · 540°, arm (−cos n · n, sin n · n) + U(0, .5) jitter, /3, noise 0.1 */
        double n = sqrt(nf_rng_uniform(r)) * 540 * (2 * PI) / 360;
        x = -cos(n) * n + 0.5 * nf_rng_uniform(r), y = sin(n) * n + 0.5 * nf_rng_uniform(r);
        if (nf_rng_u64(r) & 1) x = -x, y = -y;
        x = x / 3 + 0.1 * nf_rng_normal(r), y = y / 3 + 0.1 * nf_rng_normal(r);
        break;
    }
    }
    *px = x, *py = y;
}

/* n points of the toy distribution name drawn with seed, as a new (n, 2) dataset *out (the
 * caller frees it); NF_ERR_INVALID for an unknown name or n < 1. */
nf_status nf_dataset_toy(const char *name, int64_t n, uint64_t seed, nf_dataset **out) {
    *out = NULL;
    int which = nf_toy_known(name);
    if (which < 0) return nf_fail(NF_ERR_INVALID, "unknown dataset '%s' (built-in: moons, circles, rings, 8gaussians, checkerboard, pinwheel, 2spirals)", name);
    if (n < 1) return nf_fail(NF_ERR_INVALID, "dataset size %lld: must be ≥ 1", (long long)n);
    nf_status st = nf_dataset_alloc(n, 2, out);
    if (st) return st;
    nf_rng r;
    nf_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        double x, y;
        toy_point(which, &r, &x, &y);
        (*out)->x[2 * i] = (nf_real)x, (*out)->x[2 * i + 1] = (nf_real)y;
    }
    return NF_OK;
}

/* ------------------------------------------------------------------ CSV */
/* Parse one field [s, e) as a finite number. 1 = number, 0 = not a number, -1 = not finite. */

/* cli_data.c — loading what --data names: toy generators, CSV tables, image files and folders. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist/"

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_cifar_dir(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/data_batch_1.bin", dir);
    return access(p, F_OK) == 0;
}

/* fashion-mnist, an IDX file, CIFAR-10 (a folder or a batch .bin): SRC_IDX; a folder of PNG/JPEG:
 * SRC_DIR; a toy name: SRC_TOY; anything else a CSV */
data_source data_source_of(const char *name) {
    if (nf_toy_known(name) >= 0) return SRC_TOY;
    if (strcmp(name, "fashion-mnist") == 0 || strstr(name, "idx3-ubyte") != NULL || ends_with(name, ".bin")) return SRC_IDX;
    if (is_dir(name)) return is_cifar_dir(name) ? SRC_IDX : SRC_DIR;
    return SRC_CSV;
}

void load_data(const opts *o, nf_dataset **train, nf_dataset **test) {
    if (nf_toy_known(o->data) >= 0) {
        check(nf_dataset_toy(o->data, o->ntrain, o->seed * 2 + 1, train));
        if (test) check(nf_dataset_toy(o->data, o->ntest, o->seed * 2 + 2, test));
        return;
    }
    struct stat sb;
    if (stat(o->data, &sb) != 0) {
        char names[256] = "";
        for (const char *const *n = nf_toy_names(); *n; n++) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", *n, n[1] ? ", " : "");
        die("--data '%s': not a built-in dataset (%s) and no such file", o->data, names);
    }
    nf_dataset *all;
    check(nf_dataset_csv(o->data, &all));
    if (!test) {
        *train = all;
        return;
    }
    if (all->n < 2) die("%s: need at least 2 rows to train and test", o->data);
    check(nf_dataset_split(all, o->test_frac, o->seed, train, test));
    nf_dataset_free(all);
}

/* One image set. test: the test part of a dataset that has one (fashion-mnist, a CIFAR-10 folder);
 * size: side for a folder of images (0: --image-size, default 32). */
static nf_images *open_images(const opts *o, const char *spec, const char *labels, int test, int32_t size) {
    nf_images *im = NULL;
    if (strcmp(spec, "fashion-mnist") == 0) {
        if (test) check(nf_images_load_idx(FMNIST_DIR "t10k-images-idx3-ubyte.gz", FMNIST_DIR "t10k-labels-idx1-ubyte.gz", &im));
        else check(nf_images_load_idx(FMNIST_DIR "train-images-idx3-ubyte.gz", FMNIST_DIR "train-labels-idx1-ubyte.gz", &im));
    } else if (is_dir(spec) && is_cifar_dir(spec)) { /* CIFAR-10: data_batch_1..5.bin, test_batch.bin */
        char names[5][4096];
        const char *paths[5];
        int32_t np = 0;
        for (int b = 1; b <= 5 && !test; b++) {
            snprintf(names[np], sizeof names[np], "%s/data_batch_%d.bin", spec, b);
            if (access(names[np], F_OK) == 0) paths[np] = names[np], np++;
        }
        if (test) snprintf(names[0], sizeof names[0], "%s/test_batch.bin", spec), paths[0] = names[0], np = 1;
        check(nf_images_load_cifar(paths, np, &im));
    } else if (is_dir(spec)) {
        check(nf_images_load_folder(spec, size ? size : o->image_size ? o->image_size : 32, o->channels, &im));
    } else if (ends_with(spec, ".bin")) {
        check(nf_images_load_cifar(&spec, 1, &im));
    } else {
        check(nf_images_load_idx(spec, labels, &im));
    }
    return im;
}

void load_images(const opts *o, nf_images **train, nf_images **test) {
    int has_test = strcmp(o->data, "fashion-mnist") == 0 || (is_dir(o->data) && is_cifar_dir(o->data));
    if (has_test && o->test_data) die("option --test-data: %s brings its own test set", o->data);
    nf_images *all = open_images(o, o->data, NULL, 0, 0);
    if (has_test) *train = all, *test = open_images(o, o->data, NULL, 1, 0);
    else if (o->test_data) *train = all, *test = open_images(o, o->test_data, NULL, 0, all->H);
    else if (is_dir(o->data)) {
        check(nf_images_split(all, o->test_frac, o->seed, train, test));
        nf_images_free(all);
    } else {
        nf_images_free(all);
        die("--data %s: image training needs --test-data TEST-FILE", o->data);
    }
    if ((*test)->C != (*train)->C || (*test)->H != (*train)->H || (*test)->W != (*train)->W)
        die("%s: test images are %d×%d×%d, training images %d×%d×%d", o->test_data ? o->test_data : o->data, (int)(*test)->C,
            (int)(*test)->H, (int)(*test)->W, (int)(*train)->C, (int)(*train)->H, (int)(*train)->W);
}

nf_images *load_eval_images(const opts *o, const nf_flow *f) {
    nf_images *im = open_images(o, o->data, o->labels, 1, nf_flow_config(f)->height);
    const nf_config *c = nf_flow_config(f);
    if ((int64_t)im->C * im->H * im->W != c->dim)
        die("%s: images have %lld values, the model expects %d (%s)", o->data, (long long)im->C * im->H * im->W, (int)c->dim, o->model);
    return im;
}

nf_flow *load_model(const char *path) {
    nf_flow *f;
    check(nf_flow_load(path, &f));
    return f;
}

int image_model(const nf_flow *f) { return nf_flow_config(f)->height > 0; }

void write_sample_grid(nf_flow *f, uint64_t seed, double T, int64_t n, const char *path) {
    const nf_config *c = nf_flow_config(f);
    nf_real *x = malloc(sizeof(nf_real) * (size_t)(n * nf_flow_dim(f)));
    if (!x) die("out of memory");
    nf_rng r;
    nf_rng_seed(&r, seed);
    check(nf_flow_sample(f, &r, T, x, n));
    int32_t cols = 1;
    while ((int64_t)cols * cols < n) cols++;
    check(nf_images_grid_png(x, n, c->channels, c->height, c->width, cols, 2, path));
    free(x);
}

/* models/config.c — model configurations: enum names, the table of nf_config's fields (the one list
 * of them: checkpoints write and read the config by walking it), the defaults of each model, validation. */
#include "models/models.h"

#include <errno.h>
#include <stddef.h>

/* Names of every enum of nf_config, in enum order; used by the CLI and the checkpoint metadata. */
static const struct {
    const char *kind;
    const char *names[8];
} enum_names[] = {
    {"model", {"nice", "realnvp", "glow", "nsf", "maf", "iaf", NULL}},
    {"activation", {"relu", "tanh", "leaky_relu", NULL}},
    {"coupling", {"affine", "additive", NULL, NULL}},
    {"scale", {"tanh", "sigmoid", NULL, NULL}},
    {"partition", {"halves", "oddeven", NULL, NULL}},
    {"prior", {"normal", "logistic", "diag_gaussian", "gmm", "gmm_full", NULL}},
    {"perm", {"none", "reverse", "random", "lu", NULL}},
    {"order", {"natural", "reverse", "random", NULL}},
    {"transform", {"affine", "spline", "mixed", NULL}},
    {"dequant", {"uniform", "variational", NULL}},
};
#define ENUM_MAX_NAMES 8

/* Every field of nf_config, in the order a checkpoint's config JSON lists them (that order is part of
 * the file format: a saved file must stay byte-identical). required = 0: added after the first
 * checkpoints were written; absent in those, where the field was 0. */
#define FIELD(key, member, kind, ekind, req) {key, kind, ekind, offsetof(nf_config, member), req}
static const nf_config_field config_fields[] = {
    FIELD("model", model, NF_FIELD_ENUM, "model", 1),
    FIELD("dim", dim, NF_FIELD_INT, NULL, 1),
    FIELD("depth", depth, NF_FIELD_INT, NULL, 1),
    FIELD("hidden", hidden, NF_FIELD_INT, NULL, 1),
    FIELD("layers", layers, NF_FIELD_INT, NULL, 1),
    FIELD("activation", act, NF_FIELD_ENUM, "activation", 1),
    FIELD("coupling", coupling, NF_FIELD_ENUM, "coupling", 1),
    FIELD("scale", scale, NF_FIELD_ENUM, "scale", 1),
    FIELD("partition", partition, NF_FIELD_ENUM, "partition", 1),
    FIELD("perm", perm, NF_FIELD_ENUM, "perm", 1),
    FIELD("lu", lu, NF_FIELD_INT, NULL, 1),
    FIELD("batchnorm", batchnorm, NF_FIELD_INT, NULL, 1),
    FIELD("actnorm", actnorm, NF_FIELD_INT, NULL, 1),
    FIELD("prior", prior, NF_FIELD_ENUM, "prior", 1),
    FIELD("standardize", standardize, NF_FIELD_INT, NULL, 1),
    FIELD("init_std", init_std, NF_FIELD_DOUBLE, NULL, 1),
    FIELD("channels", channels, NF_FIELD_INT, NULL, 1),
    FIELD("height", height, NF_FIELD_INT, NULL, 1),
    FIELD("width", width, NF_FIELD_INT, NULL, 1),
    FIELD("levels", levels, NF_FIELD_INT, NULL, 1),
    FIELD("blocks", blocks, NF_FIELD_INT, NULL, 0),
    FIELD("logit_alpha", logit_alpha, NF_FIELD_DOUBLE, NULL, 0),
    FIELD("bins", bins, NF_FIELD_INT, NULL, 0),
    FIELD("elementwise", elementwise, NF_FIELD_INT, NULL, 0),
    FIELD("bound", bound, NF_FIELD_DOUBLE, NULL, 0),
    FIELD("seed", seed, NF_FIELD_U64, NULL, 1),
    FIELD("order", order, NF_FIELD_ENUM, "order", 0),
    FIELD("transform", transform, NF_FIELD_ENUM, "transform", 0),
    FIELD("context_dim", context_dim, NF_FIELD_INT, NULL, 0),
    FIELD("context_labels", context_labels, NF_FIELD_INT, NULL, 0),
    FIELD("context_cols", context_cols, NF_FIELD_U64, NULL, 0),
    FIELD("dequant", dequant, NF_FIELD_ENUM, "dequant", 0),
    FIELD("dequant_hidden", dequant_hidden, NF_FIELD_INT, NULL, 0),
    FIELD("prior_components", prior_components, NF_FIELD_U64, NULL, 0),
};
#undef FIELD
/* an enum member is read and written through an int: the enums must have int's size */
_Static_assert(sizeof(nf_model_type) == sizeof(int) && sizeof(nf_activation) == sizeof(int) &&
                   sizeof(nf_coupling_type) == sizeof(int) && sizeof(nf_scale_type) == sizeof(int) &&
                   sizeof(nf_partition) == sizeof(int) && sizeof(nf_perm_type) == sizeof(int) &&
                   sizeof(nf_prior_type) == sizeof(int) && sizeof(nf_order_type) == sizeof(int) &&
                   sizeof(nf_transform_type) == sizeof(int) && sizeof(nf_dequant_type) == sizeof(int),
               "nf_config's enums are accessed as int");

/* See models.h. */
int32_t nf_config_num_fields(void) { return (int32_t)(sizeof config_fields / sizeof config_fields[0]); }

/* See models.h. */
const nf_config_field *nf_config_field_at(int32_t i) {
    return i >= 0 && i < nf_config_num_fields() ? &config_fields[i] : NULL;
}

/* See models.h. */
const nf_config_field *nf_config_field_find(const char *name) {
    for (int32_t i = 0; name && i < nf_config_num_fields(); i++)
        if (strcmp(config_fields[i].name, name) == 0) return &config_fields[i];
    return NULL;
}

/* See models.h. */
double nf_config_get_number(const nf_config *c, const nf_config_field *fd) {
    const char *p = (const char *)c + fd->offset;
    switch (fd->kind) {
    case NF_FIELD_INT: return (double)*(const int32_t *)p;
    case NF_FIELD_ENUM: return (double)*(const int *)p;
    case NF_FIELD_DOUBLE: return *(const double *)p;
    default: return (double)*(const uint64_t *)p;
    }
}

/* See models.h. */
int nf_config_get_enum(const nf_config *c, const nf_config_field *fd) { return *(const int *)((const char *)c + fd->offset); }
/* See models.h. */
uint64_t nf_config_get_u64(const nf_config *c, const nf_config_field *fd) { return *(const uint64_t *)((const char *)c + fd->offset); }

/* See models.h. */
void nf_config_set_int(nf_config *c, const nf_config_field *fd, int64_t v) {
    char *p = (char *)c + fd->offset;
    if (fd->kind == NF_FIELD_INT) *(int32_t *)p = (int32_t)v;
    else if (fd->kind == NF_FIELD_ENUM) *(int *)p = (int)v;
    else if (fd->kind == NF_FIELD_DOUBLE) *(double *)p = (double)v;
    else *(uint64_t *)p = (uint64_t)v;
}
/* See models.h. */
void nf_config_set_double(nf_config *c, const nf_config_field *fd, double v) {
    if (fd->kind == NF_FIELD_DOUBLE) *(double *)((char *)c + fd->offset) = v;
    else nf_config_set_int(c, fd, (int64_t)v);
}
/* See models.h. */
void nf_config_set_u64(nf_config *c, const nf_config_field *fd, uint64_t v) {
    if (fd->kind == NF_FIELD_U64) *(uint64_t *)((char *)c + fd->offset) = v;
    else nf_config_set_int(c, fd, (int64_t)v);
}

/* Which models use each architecture field, on vectors and on images (bit k: nf_model_type k). The
 * CLI's option table (tools/options.c, columns mvec/mimg) holds the same facts for `nflow train`;
 * tests/python/test_flow.py compares the two row by row. Fields not listed apply to every model. */
#define NICE_ (1u << NF_MODEL_NICE)
#define RNVP_ (1u << NF_MODEL_REALNVP)
#define GLOW_ (1u << NF_MODEL_GLOW)
#define NSF_ (1u << NF_MODEL_NSF)
#define AR_ ((1u << NF_MODEL_MAF) | (1u << NF_MODEL_IAF))
#define ALL_ (NICE_ | RNVP_ | GLOW_ | NSF_ | AR_)
static const struct {
    const char *key;
    unsigned vec, img;
} field_use[] = {
    {"depth", ALL_, NICE_ | GLOW_ | NSF_},
    {"hidden", ALL_, NICE_ | RNVP_ | GLOW_ | NSF_},
    {"layers", ALL_, NICE_ | GLOW_ | NSF_},
    {"activation", ALL_, NICE_},
    {"scale", RNVP_ | GLOW_ | AR_, GLOW_},
    {"partition", NICE_ | RNVP_ | GLOW_ | NSF_, NICE_},
    {"perm", NICE_ | RNVP_ | NSF_ | AR_, NICE_},
    {"prior", ALL_, NICE_ | RNVP_ | GLOW_ | NSF_},
    {"coupling", GLOW_, GLOW_},
    {"lu", GLOW_, GLOW_ | NSF_},
    {"batchnorm", RNVP_ | AR_, 0},
    {"actnorm", NICE_ | RNVP_ | NSF_ | AR_, NICE_},
    {"standardize", ALL_, 0},
    {"init_std", ALL_, NICE_ | RNVP_ | GLOW_ | NSF_},
    {"levels", 0, RNVP_ | GLOW_ | NSF_},
    {"blocks", 0, RNVP_},
    {"logit_alpha", 0, NICE_ | RNVP_ | GLOW_ | NSF_},
    {"bins", NSF_ | AR_, NSF_},
    {"bound", NSF_ | AR_, NSF_},
    {"elementwise", NSF_, 0},
    {"order", AR_, 0},
    {"transform", AR_, 0},
    {"context_cols", ALL_, 0},
    {"dequant", 0, NICE_ | RNVP_ | GLOW_ | NSF_},
    {"dequant_hidden", 0, NICE_ | RNVP_ | GLOW_ | NSF_},
    {"prior_components", ALL_, NICE_ | RNVP_ | GLOW_ | NSF_},
};

/* See nflow.h: 1 if the model c describes uses field key, 0 if not, -1 for an unknown key. */
int nf_config_field_applies(const nf_config *c, const char *key) {
    if (!nf_config_field_find(key)) return -1;
    if ((unsigned)c->model > NF_MODEL_IAF) return 0; /* no model uses anything; validate names it */
    int img = c->channels > 0;
    unsigned m = 1u << (unsigned)c->model;
    if (strcmp(key, "scale") == 0 && c->model == NF_MODEL_GLOW && c->coupling == NF_COUPLING_ADDITIVE) return 0;
    if (!img && (m & AR_) && strcmp(key, "scale") == 0) return c->transform != NF_TRANSFORM_SPLINE; /* the transforms in effect */
    if (!img && (m & AR_) && (strcmp(key, "bins") == 0 || strcmp(key, "bound") == 0)) /* mixed: block 2 on is a spline */
        return c->transform == NF_TRANSFORM_SPLINE || (c->transform == NF_TRANSFORM_MIXED && c->depth > 1);
    if (img && strcmp(key, "dequant_hidden") == 0 && c->dequant != NF_DEQUANT_VARIATIONAL) return 0; /* no dequantiser */
    if (strcmp(key, "prior_components") == 0 && c->prior != NF_PRIOR_GMM && c->prior != NF_PRIOR_GMM_FULL) return 0; /* no mixture */
    /* layers that go between blocks only (recipes.c): none in a model of one block */
    if (!img && c->depth == 1 && (((m & (NSF_ | AR_)) && strcmp(key, "perm") == 0) || ((m & (RNVP_ | AR_)) && strcmp(key, "batchnorm") == 0)))
        return 0;
    for (size_t k = 0; k < sizeof field_use / sizeof field_use[0]; k++)
        if (strcmp(key, field_use[k].key) == 0) return ((img ? field_use[k].img : field_use[k].vec) & m) != 0;
    return 1;
}
#undef NICE_
#undef RNVP_
#undef GLOW_
#undef NSF_
#undef AR_
#undef ALL_

/* See nflow.h: the size a binding allocates for an nf_config. */
size_t nf_config_sizeof(void) { return sizeof(nf_config); }
/* See nflow.h: the number of fields of the table. */
int32_t nf_config_field_count(void) { return nf_config_num_fields(); }
/* See nflow.h: the key of field i (static string), NULL when i is out of range. */
const char *nf_config_field_name(int32_t i) {
    const nf_config_field *fd = nf_config_field_at(i);
    return fd ? fd->name : NULL;
}

/* See nflow.h: parse value (borrowed) by key's kind into *c; *c unchanged on failure. */
nf_status nf_config_set_field(nf_config *c, const char *key, const char *value) {
    const nf_config_field *fd = nf_config_field_find(key);
    if (!fd) return nf_fail(NF_ERR_INVALID, "unknown configuration field '%s'", key ? key : "(null)");
    if (!value || !*value) return nf_fail(NF_ERR_INVALID, "field %s: empty value", fd->name);
    char *end = NULL;
    errno = 0;
    if (fd->kind == NF_FIELD_DOUBLE) {
        double v = strtod(value, &end);
        if (errno || *end || end == value || !isfinite(v)) return nf_fail(NF_ERR_INVALID, "field %s: '%s' is not a finite number", fd->name, value);
        nf_config_set_double(c, fd, v);
        return NF_OK;
    }
    if (fd->kind == NF_FIELD_U64) {
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || *end || end == value || value[0] == '-' || value[0] == '+' || value[0] == ' ')
            return nf_fail(NF_ERR_INVALID, "field %s: '%s' is not an unsigned 64-bit integer", fd->name, value);
        nf_config_set_u64(c, fd, (uint64_t)v);
        return NF_OK;
    }
    if (fd->kind == NF_FIELD_ENUM) {
        int v = nf_enum_from_name(fd->enum_kind, value);
        if (v < 0) { /* the enum's number is accepted too, if it names a value */
            long long k = strtoll(value, &end, 10);
            if (!errno && !*end && end != value && k >= 0 && k < 4 && strcmp(nf_enum_name(fd->enum_kind, (int)k), "?") != 0) v = (int)k;
        }
        if (v < 0) {
            char list[128] = "";
            for (int i = 0; i < 4 && strcmp(nf_enum_name(fd->enum_kind, i), "?") != 0; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), " %s", nf_enum_name(fd->enum_kind, i));
            return nf_fail(NF_ERR_INVALID, "field %s: unknown %s '%s' (one of:%s)", fd->name, fd->enum_kind, value, list);
        }
        nf_config_set_int(c, fd, v);
        return NF_OK;
    }
    long long v = strtoll(value, &end, 10);
    if (errno || *end || end == value || v < INT32_MIN || v > INT32_MAX)
        return nf_fail(NF_ERR_INVALID, "field %s: '%s' is not a 32-bit integer", fd->name, value);
    nf_config_set_int(c, fd, v);
    return NF_OK;
}

/* See nflow.h: field key of *c as text into the caller's buf of n bytes. */
nf_status nf_config_get_field(const nf_config *c, const char *key, char *buf, size_t n) {
    const nf_config_field *fd = nf_config_field_find(key);
    if (buf && n) buf[0] = 0;
    if (!fd) return nf_fail(NF_ERR_INVALID, "unknown configuration field '%s'", key ? key : "(null)");
    if (!buf || n == 0) return nf_fail(NF_ERR_INVALID, "field %s: no buffer", fd->name);
    int len;
    switch (fd->kind) {
    case NF_FIELD_ENUM: len = snprintf(buf, n, "%s", nf_enum_name(fd->enum_kind, nf_config_get_enum(c, fd))); break;
    case NF_FIELD_DOUBLE: len = snprintf(buf, n, "%.17g", nf_config_get_number(c, fd)); break;
    case NF_FIELD_U64: len = snprintf(buf, n, "%llu", (unsigned long long)nf_config_get_u64(c, fd)); break;
    default: len = snprintf(buf, n, "%d", (int)nf_config_get_number(c, fd)); break;
    }
    if (len < 0 || (size_t)len >= n) {
        buf[0] = 0;
        return nf_fail(NF_ERR_INVALID, "field %s: buffer of %zu bytes too small", fd->name, n);
    }
    return NF_OK;
}

/* Look up kind's names (the enum_names row) and return the enum value of name, −1 if unknown. */
int nf_enum_from_name(const char *kind, const char *name) {
    for (size_t k = 0; k < sizeof enum_names / sizeof enum_names[0]; k++)
        if (strcmp(kind, enum_names[k].kind) == 0)
            for (int i = 0; i < ENUM_MAX_NAMES && enum_names[k].names[i]; i++)
                if (name && strcmp(name, enum_names[k].names[i]) == 0) return i;
    return -1;
}

/* The name of value in enum kind (static string), or "?" for an unknown kind or value. */
const char *nf_enum_name(const char *kind, int value) {
    for (size_t k = 0; k < sizeof enum_names / sizeof enum_names[0]; k++)
        if (strcmp(kind, enum_names[k].kind) == 0 && value >= 0 && value < ENUM_MAX_NAMES && enum_names[k].names[value])
            return enum_names[k].names[value];
    return "?";
}

/* The model type named name ("nice", "realnvp", "glow", "nsf"), or −1. */
int nf_model_from_name(const char *name) { return nf_enum_from_name("model", name); }
/* The name of model type m (static string), or "?". */
const char *nf_model_name(nf_model_type m) { return nf_enum_name("model", (int)m); }

/* Fill *c (the caller's; every field set) with the defaults of model for vectors of dimension dim. */
void nf_config_default(nf_config *c, nf_model_type model, int32_t dim) {
    memset(c, 0, sizeof *c);
    c->model = model;
    c->dim = dim;
    c->layers = 2;
    c->act = NF_ACT_RELU;
    c->scale = NF_SCALE_TANH;
    c->partition = NF_PART_HALVES;
    c->lu = 1;
    c->seed = 1;
    c->prior_components = 8; /* used by the gmm prior only */
    switch (model) {
    case NF_MODEL_NICE: /* NICE: additive couplings, odd/even partition, diagonal scaling, logistic prior */
        c->depth = 4;
        c->hidden = 128;
        c->layers = 4;
        c->coupling = NF_COUPLING_ADDITIVE;
        c->partition = NF_PART_ODDEVEN;
        c->prior = NF_PRIOR_LOGISTIC;
        break;
    case NF_MODEL_REALNVP: /* RealNVP: affine couplings with exp(tanh) scales, alternating halves */
        c->depth = 8;
        c->hidden = 64;
        c->prior = NF_PRIOR_NORMAL;
        break;
    case NF_MODEL_NSF: /* NSF: spline couplings (K bins on [−B, B]) alternating with permutations */
        c->depth = 4;
        c->hidden = 64;
        c->bins = 8;
        c->bound = 4;
        c->perm = dim > 2 ? NF_PERM_RANDOM : NF_PERM_REVERSE;
        c->elementwise = dim == 1;
        c->prior = NF_PRIOR_NORMAL;
        break;
    case NF_MODEL_MAF: /* MAF / IAF: 5 autoregressive affine blocks on MADEs (2 × 64), reversed between blocks */
    case NF_MODEL_IAF:
        c->depth = 5;
        c->hidden = 64;
        c->perm = NF_PERM_REVERSE;
        c->order = NF_ORDER_NATURAL;
        /* 2-D data (the toys): spline blocks (8 gaussians: 2.839 nats against the entropy 2.838 with the
         * default command, affine 3.065); tables: affine and spline blocks alternating (the two 8-column
         * cases of bench/tabular_cases.py, 16 200 training rows, KL over two seeds: mix8 0.121 / 0.115
         * mixed, 0.201 / 0.177 affine, 0.133 / 0.146 spline; pairs8 0.102 / 0.095 mixed, 0.088 / 0.097 affine,
         * 0.245 spline — README, "Autoregressive flows") */
        c->transform = dim <= 2 ? NF_TRANSFORM_SPLINE : NF_TRANSFORM_MIXED;
        c->bins = 8, c->bound = 4; /* used by the spline blocks only */
        c->prior = NF_PRIOR_NORMAL;
        break;
    default: /* Glow: K × (ActNorm → invertible linear (LU) → affine coupling with sigmoid(h + 2)) */
        c->model = NF_MODEL_GLOW;
        c->depth = 8;
        c->hidden = 64;
        c->scale = NF_SCALE_SIGMOID;
        c->prior = NF_PRIOR_NORMAL;
        break;
    }
}

/* Fill *c with the defaults of model for C × H × W images (dim = C·H·W; see nflow.h). */
void nf_config_default_image(nf_config *c, nf_model_type model, int32_t C, int32_t H, int32_t W) {
    nf_config_default(c, model, C * H * W);
    c->channels = C, c->height = H, c->width = W;
    if (model == NF_MODEL_GLOW) {
        c->levels = 2;
        c->depth = 8, c->hidden = 128, c->layers = 2;
    } else if (model == NF_MODEL_REALNVP) {
        c->levels = 2, c->hidden = 64, c->blocks = 4, c->logit_alpha = 0.05;
    } else if (model == NF_MODEL_NSF) { /* Glow's multi-scale layout, spline couplings */
        c->levels = 2;
        c->depth = 4, c->hidden = 64, c->layers = 2, c->bound = 3, c->perm = NF_PERM_NONE, c->elementwise = 0;
    } else if (model == NF_MODEL_NICE) {
        c->depth = 4, c->hidden = 1000, c->layers = 5;
    }
}

/* NF_OK if c describes a buildable model, otherwise NF_ERR_INVALID naming the first bad field. */
nf_status nf_config_validate(const nf_config *c) {
    if ((unsigned)c->model > NF_MODEL_IAF) return nf_fail(NF_ERR_INVALID, "unknown model type %d", (int)c->model);
    int autoregressive = c->model == NF_MODEL_MAF || c->model == NF_MODEL_IAF;
    if (autoregressive && (c->channels || c->height || c->width))
        return nf_fail(NF_ERR_INVALID, "%s: vector data only (no image model; use glow, realnvp, nsf or nice for images)", nf_model_name(c->model));
    if ((unsigned)c->order > NF_ORDER_RANDOM) return nf_fail(NF_ERR_INVALID, "unknown ordering %d", (int)c->order);
    if ((unsigned)c->transform > NF_TRANSFORM_MIXED) return nf_fail(NF_ERR_INVALID, "unknown transform %d", (int)c->transform);
    if ((unsigned)c->dequant > NF_DEQUANT_VARIATIONAL) return nf_fail(NF_ERR_INVALID, "unknown dequantisation %d", (int)c->dequant);
    if (c->dequant != NF_DEQUANT_UNIFORM && !c->channels)
        return nf_fail(NF_ERR_INVALID, "variational dequantisation: image models only (it spreads pixels over their bins)");
    if (c->dequant_hidden < 0 || c->dequant_hidden > 4096) return nf_fail(NF_ERR_INVALID, "dequant_hidden %d: must be 0..4096 (0: 32)", (int)c->dequant_hidden);
    if (autoregressive) {
        if (c->dim < 1 || c->dim > 1 << 20)
            return nf_fail(NF_ERR_INVALID, "data dimension %d: an autoregressive flow needs 1 to 1048576 dimensions", (int)c->dim);
    } else if (c->model == NF_MODEL_NSF && c->dim == 1 && !c->channels) {
        if (!c->elementwise) return nf_fail(NF_ERR_INVALID, "data dimension 1: nsf needs its element-wise spline (elementwise 1) on 1-D data");
    } else if (c->dim < 2 || c->dim > 1 << 20)
        return nf_fail(NF_ERR_INVALID, "data dimension %d: a coupling flow needs 2 to 1048576 dimensions%s", (int)c->dim,
                       c->dim == 1 ? " (for 1-D data use --model nsf: an element-wise spline, or maf)" : "");
    if (c->model == NF_MODEL_NSF || (autoregressive && c->transform != NF_TRANSFORM_AFFINE)) {
        if (c->bins < 2 || c->bins > 64) return nf_fail(NF_ERR_INVALID, "spline bins %d: must be 2..64", (int)c->bins);
        if (!(c->bound > 0 && c->bound < 1e6)) return nf_fail(NF_ERR_INVALID, "spline bound %g: must be in (0, 1e6)", c->bound);
        if (c->elementwise != 0 && c->elementwise != 1) return nf_fail(NF_ERR_INVALID, "elementwise %d: must be 0 or 1", (int)c->elementwise);
    }
    if (c->context_dim < 0 || c->context_dim > 65536) return nf_fail(NF_ERR_INVALID, "context_dim %d: must be 0..65536", (int)c->context_dim);
    if (c->context_labels != 0 && c->context_labels != 1) return nf_fail(NF_ERR_INVALID, "context_labels %d: must be 0 or 1", (int)c->context_labels);
    if (c->context_labels && (c->context_dim < 2 || c->context_cols))
        return nf_fail(NF_ERR_INVALID, "context_labels: a class-label context needs context_dim ≥ 2 classes and no context columns");
    int32_t ncols = 0;
    for (int b = 0; b < 64; b++) ncols += (int32_t)((c->context_cols >> b) & 1u);
    if (c->context_cols && ncols != c->context_dim)
        return nf_fail(NF_ERR_INVALID, "context_cols marks %d columns, context_dim is %d", (int)ncols, (int)c->context_dim);
    if (c->context_dim > 0 && c->model == NF_MODEL_NSF && !c->channels && c->dim == 1)
        return nf_fail(NF_ERR_INVALID, "nsf on 1-D data (the element-wise spline alone) has no conditioner to take a context");
    if (c->depth < 1 || c->depth > 1024) return nf_fail(NF_ERR_INVALID, "depth %d: must be 1..1024", (int)c->depth);
    if (c->hidden < 1 || c->hidden > 1 << 16) return nf_fail(NF_ERR_INVALID, "hidden width %d: must be 1..65536", (int)c->hidden);
    if (c->layers < 1 || c->layers > 32) return nf_fail(NF_ERR_INVALID, "MLP hidden layers %d: must be 1..32", (int)c->layers);
    if ((unsigned)c->act > NF_ACT_LEAKY_RELU) return nf_fail(NF_ERR_INVALID, "unknown activation %d", (int)c->act);
    if ((unsigned)c->coupling > NF_COUPLING_ADDITIVE) return nf_fail(NF_ERR_INVALID, "unknown coupling %d", (int)c->coupling);
    if ((unsigned)c->scale > NF_SCALE_SIGMOID) return nf_fail(NF_ERR_INVALID, "unknown scale %d", (int)c->scale);
    if ((unsigned)c->partition > NF_PART_ODDEVEN) return nf_fail(NF_ERR_INVALID, "unknown partition %d", (int)c->partition);
    if ((unsigned)c->perm > NF_PERM_LU) return nf_fail(NF_ERR_INVALID, "unknown permutation %d", (int)c->perm);
    if (!(c->init_std >= 0 && c->init_std <= 1)) return nf_fail(NF_ERR_INVALID, "init_std %g: must be in [0, 1]", c->init_std);
    if ((unsigned)c->prior > NF_PRIOR_GMM_FULL) return nf_fail(NF_ERR_INVALID, "unknown prior %d", (int)c->prior);
    int gmm = c->prior == NF_PRIOR_GMM || c->prior == NF_PRIOR_GMM_FULL;
    if (gmm && (c->prior_components < 1 || c->prior_components > NF_GMM_MAX_COMPONENTS))
        return nf_fail(NF_ERR_INVALID, "prior_components %llu: the gmm priors need 1..%d components", (unsigned long long)c->prior_components,
                       NF_GMM_MAX_COMPONENTS);
    if (gmm && c->context_dim > 0)
        return nf_fail(NF_ERR_INVALID, "the gmm priors take no context (a conditional flow: normal, logistic or diag_gaussian)");
    if (c->prior == NF_PRIOR_GMM_FULL && c->dim > NF_GMM_FULL_MAX_DIM)
        return nf_fail(NF_ERR_INVALID, "the gmm_full prior holds a D × D covariance factor a component: at most %d dimensions (this model has %d; gmm is diagonal)",
                       NF_GMM_FULL_MAX_DIM, (int)c->dim);
    if (c->channels || c->height || c->width) {
        if (c->channels < 1 || c->height < 1 || c->width < 1 || (int64_t)c->channels * c->height * c->width != c->dim)
            return nf_fail(NF_ERR_INVALID, "image shape %d × %d × %d does not match dimension %d", (int)c->channels, (int)c->height, (int)c->width, (int)c->dim);
        if (!(c->logit_alpha >= 0 && c->logit_alpha < 0.5)) return nf_fail(NF_ERR_INVALID, "logit alpha %g: must be in [0, 0.5)", c->logit_alpha);
        if (c->model != NF_MODEL_NICE) {
            if (c->levels < 1 || c->levels > 8) return nf_fail(NF_ERR_INVALID, "levels %d: must be 1..8", (int)c->levels);
            /* glow and nsf squeeze at every level; realnvp at every scale but the last */
            int32_t sq = c->model == NF_MODEL_GLOW || c->model == NF_MODEL_NSF ? c->levels : c->levels - 1, m = 1 << sq;
            if (c->height % m || c->width % m)
                return nf_fail(NF_ERR_INVALID, "image %d × %d: height and width must be divisible by 2^%d = %d for %d levels", (int)c->height, (int)c->width, (int)sq, (int)m, (int)c->levels);
        }
        if (c->model == NF_MODEL_REALNVP && (c->blocks < 0 || c->blocks > 64)) return nf_fail(NF_ERR_INVALID, "ResNet blocks %d: must be 0..64", (int)c->blocks);
        return NF_OK;
    }
    if (c->model == NF_MODEL_GLOW && c->dim > 4096) return nf_fail(NF_ERR_INVALID, "glow on vectors: dimension %d too large for a dense invertible linear layer (max 4096)", (int)c->dim);
    return NF_OK;
}


/* models/config.c — model configurations: enum names, the defaults of each model, validation. */
#include "models/models.h"

/* Names of every enum of nf_config, in enum order; used by the CLI and the checkpoint metadata. */
static const struct {
    const char *kind;
    const char *names[4];
} enum_names[] = {
    {"model", {"nice", "realnvp", "glow", NULL}},
    {"activation", {"relu", "tanh", "leaky_relu", NULL}},
    {"coupling", {"affine", "additive", NULL, NULL}},
    {"scale", {"tanh", "sigmoid", NULL, NULL}},
    {"partition", {"halves", "oddeven", NULL, NULL}},
    {"prior", {"normal", "logistic", "diag_gaussian", NULL}},
    {"perm", {"none", "reverse", "random", NULL}},
};

int nf_enum_from_name(const char *kind, const char *name) {
    for (size_t k = 0; k < sizeof enum_names / sizeof enum_names[0]; k++)
        if (strcmp(kind, enum_names[k].kind) == 0)
            for (int i = 0; i < 4 && enum_names[k].names[i]; i++)
                if (name && strcmp(name, enum_names[k].names[i]) == 0) return i;
    return -1;
}

const char *nf_enum_name(const char *kind, int value) {
    for (size_t k = 0; k < sizeof enum_names / sizeof enum_names[0]; k++)
        if (strcmp(kind, enum_names[k].kind) == 0 && value >= 0 && value < 4 && enum_names[k].names[value])
            return enum_names[k].names[value];
    return "?";
}

int nf_model_from_name(const char *name) { return nf_enum_from_name("model", name); }
const char *nf_model_name(nf_model_type m) { return nf_enum_name("model", (int)m); }

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
    default: /* Glow: K × (ActNorm → invertible linear (LU) → affine coupling with sigmoid(h + 2)) */
        c->model = NF_MODEL_GLOW;
        c->depth = 8;
        c->hidden = 64;
        c->scale = NF_SCALE_SIGMOID;
        c->prior = NF_PRIOR_NORMAL;
        break;
    }
}

void nf_config_default_image(nf_config *c, nf_model_type model, int32_t C, int32_t H, int32_t W) {
    nf_config_default(c, model, C * H * W);
    c->channels = C, c->height = H, c->width = W;
    if (model == NF_MODEL_GLOW) {
        c->levels = 2;
        c->depth = 8, c->hidden = 128, c->layers = 2;
    } else if (model == NF_MODEL_REALNVP) {
        c->levels = 2, c->hidden = 64, c->blocks = 4, c->logit_alpha = 0.05;
    } else if (model == NF_MODEL_NICE) {
        c->depth = 4, c->hidden = 1000, c->layers = 5;
    }
}

nf_status nf_config_validate(const nf_config *c) {
    if ((unsigned)c->model > NF_MODEL_GLOW) return nf_fail(NF_ERR_INVALID, "unknown model type %d", (int)c->model);
    if (c->dim < 2 || c->dim > 1 << 20)
        return nf_fail(NF_ERR_INVALID, "data dimension %d: a coupling flow needs 2 to 1048576 dimensions", (int)c->dim);
    if (c->depth < 1 || c->depth > 1024) return nf_fail(NF_ERR_INVALID, "depth %d: must be 1..1024", (int)c->depth);
    if (c->hidden < 1 || c->hidden > 1 << 16) return nf_fail(NF_ERR_INVALID, "hidden width %d: must be 1..65536", (int)c->hidden);
    if (c->layers < 1 || c->layers > 32) return nf_fail(NF_ERR_INVALID, "MLP hidden layers %d: must be 1..32", (int)c->layers);
    if ((unsigned)c->act > NF_ACT_LEAKY_RELU) return nf_fail(NF_ERR_INVALID, "unknown activation %d", (int)c->act);
    if ((unsigned)c->coupling > NF_COUPLING_ADDITIVE) return nf_fail(NF_ERR_INVALID, "unknown coupling %d", (int)c->coupling);
    if ((unsigned)c->scale > NF_SCALE_SIGMOID) return nf_fail(NF_ERR_INVALID, "unknown scale %d", (int)c->scale);
    if ((unsigned)c->partition > NF_PART_ODDEVEN) return nf_fail(NF_ERR_INVALID, "unknown partition %d", (int)c->partition);
    if ((unsigned)c->perm > NF_PERM_RANDOM) return nf_fail(NF_ERR_INVALID, "unknown permutation %d", (int)c->perm);
    if (!(c->init_std >= 0 && c->init_std <= 1)) return nf_fail(NF_ERR_INVALID, "init_std %g: must be in [0, 1]", c->init_std);
    if ((unsigned)c->prior > NF_PRIOR_DIAG_GAUSSIAN) return nf_fail(NF_ERR_INVALID, "unknown prior %d", (int)c->prior);
    if (c->channels || c->height || c->width) {
        if (c->channels < 1 || c->height < 1 || c->width < 1 || (int64_t)c->channels * c->height * c->width != c->dim)
            return nf_fail(NF_ERR_INVALID, "image shape %d × %d × %d does not match dimension %d", (int)c->channels, (int)c->height, (int)c->width, (int)c->dim);
        if (!(c->logit_alpha >= 0 && c->logit_alpha < 0.5)) return nf_fail(NF_ERR_INVALID, "logit alpha %g: must be in [0, 0.5)", c->logit_alpha);
        if (c->model != NF_MODEL_NICE) {
            if (c->levels < 1 || c->levels > 8) return nf_fail(NF_ERR_INVALID, "levels %d: must be 1..8", (int)c->levels);
            /* glow squeezes at every level; realnvp at every scale but the last */
            int32_t sq = c->model == NF_MODEL_GLOW ? c->levels : c->levels - 1, m = 1 << sq;
            if (c->height % m || c->width % m)
                return nf_fail(NF_ERR_INVALID, "image %d × %d: height and width must be divisible by 2^%d = %d for %d levels", (int)c->height, (int)c->width, (int)sq, (int)m, (int)c->levels);
        }
        if (c->model == NF_MODEL_REALNVP && (c->blocks < 0 || c->blocks > 64)) return nf_fail(NF_ERR_INVALID, "ResNet blocks %d: must be 0..64", (int)c->blocks);
        return NF_OK;
    }
    if (c->model == NF_MODEL_GLOW && c->dim > 4096) return nf_fail(NF_ERR_INVALID, "glow on vectors: dimension %d too large for a dense invertible linear layer (max 4096)", (int)c->dim);
    return NF_OK;
}


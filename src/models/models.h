/* models/models.h — what the library's upper modules (train, io) and the tests may ask of a flow
 * beyond the public header: its tensor table, its training flag, the prior's parameters, a combined
 * forward pass. struct nf_flow itself stays private to src/models (flow_impl.h). */
#ifndef NF_MODELS_H
#define NF_MODELS_H

#include "core/registry.h"
#include "layers/layer.h"

/* The tensor table: every parameter and state tensor by name, shape and offset, in registration order
 * (the checkpoint's order). The table is owned by the flow. */
int32_t nf_flow_num_tensors(const nf_flow *f);
const nf_tensor_info *nf_flow_tensor(const nf_flow *f, int32_t i);
/* The values of tensor i (params or buffers, by its kind): count floats owned by the flow. */
nf_real *nf_flow_tensor_data(nf_flow *f, int32_t i);
const nf_real *nf_flow_tensor_cdata(const nf_flow *f, int32_t i);
/* 1 while the flow is in training mode (nf_flow_set_training). */
int nf_flow_is_training(const nf_flow *f);
/* The prior's location mu[j] and log scale ls[j] per coordinate given one context row c (NULL: none):
 * the diag Gaussian's μ(c), log σ(c); 0 and 0 for the fixed priors (layers/prior.c). */
void nf_flow_prior_moments(const nf_flow *f, const nf_real *c, double *mu, double *ls);
/* Forward pass of n rows with contexts c (n, K; NULL for an unconditional flow) in bounded chunks: any of
 * z (n, D), logdet (n), logp (n) may be NULL; logp = log π(z | c) + logdet, the log-likelihood in nats. */
nf_status nf_flow_forward_ex(nf_flow *f, const nf_real *x, const nf_real *c, nf_real *z, nf_real *logdet, nf_real *logp,
                             int64_t n);
/* Data-parallel training (the trainer): this process's n rows x (n, D) (with their contexts c (n, K);
 * NULL for an unconditional flow) of a global batch of total ≥ n rows. *nll_sum = the NLL summed over the n rows; grads += the gradient of nll_sum / total (each row
 * weighted 1/total, so that the gradients summed over the processes are the gradient of the global
 * mean). r (may be NULL) is lent to the layers for the pass (whole-batch statistics summed across
 * processes); with r, a non-finite NLL or a layer's numeric failure does not end the pass early — every
 * process makes the same sums — the failure is returned at the end (NF_ERR_NUMERIC, gradients then
 * meaningless). Small flows run on one thread (as nf_flow_nll_grad). */
nf_status nf_flow_nll_grad_part(nf_flow *f, const nf_real *x, const nf_real *c, int64_t n, int64_t total,
                                const nf_reducer *r, double *nll_sum);
/* The same for images (nf_flow_nll_grad_dequant): this process's n images of a global batch of total,
 * their bin centres xc, noise eps and contexts c; *nll_sum = Σ [−log p(x) + log q(u | xc)] over them. */
nf_status nf_flow_nll_grad_dequant_part(nf_flow *f, const nf_real *xc, const nf_real *eps, int32_t bits, const nf_real *c, int64_t n,
                                        int64_t total, const nf_reducer *r, double *nll_sum);
/* nf_flow_create for a model read from a file that holds at most max_values parameter and state
 * values: the layers are sized first and, when they need more than that, NF_ERR_FORMAT is returned
 * before the tensors are allocated (a lying config cannot make nflow allocate what the file does not
 * back). max_values < 0: no bound (nf_flow_create). */
nf_status nf_flow_create_within(const nf_config *cfg, int64_t max_values, nf_flow **out);
/* Make sure the workspace holds n rows, and the parts a training batch of n rows splits into (flow.c)
 * theirs (allocates only when n grows). */
nf_status nf_flow_reserve(nf_flow *f, int64_t n);
/* Layer k (0 ≤ k < nf_flow_num_layers), owned by the flow: for the tests. */
nf_layer *nf_flow_layer(nf_flow *f, int32_t k);
/* Build a flow from an explicit list of layers whose tensors are reserved in *reg (tests). Takes
 * ownership of the layers and of reg's contents (reg is left empty), also on failure. */
nf_status nf_flow_from_layers(nf_registry *reg, nf_layer **layers, int32_t n, nf_prior_type prior,
                              int32_t dim, nf_flow **out);

/* ---------------------------------------------------------------- nf_config's fields, one table
 * (models/config.c; added by the checkpoint work — a separate block, nothing above depends on it).
 * The single list of nf_config's fields: name (the checkpoint's JSON key), kind, offset, and whether
 * a checkpoint must carry it. io/checkpoint.c writes and reads the config by walking it, in table
 * order (the file's key order). The table is static; nothing is allocated. */
typedef enum {
    NF_FIELD_INT = 0, /* int32_t */
    NF_FIELD_ENUM,    /* an nf_config enum, stored as int; enum_kind names it for nf_enum_name */
    NF_FIELD_DOUBLE,  /* double */
    NF_FIELD_U64      /* uint64_t (written as a decimal string: JSON numbers lose bits above 2^53) */
} nf_config_field_kind;

typedef struct {
    const char *name;          /* JSON key, e.g. "activation" */
    nf_config_field_kind kind;
    const char *enum_kind;     /* NF_FIELD_ENUM: "model", "activation", …; NULL otherwise */
    size_t offset;             /* offsetof(nf_config, member) */
    int required;              /* 1: every checkpoint carries it; 0: older ones may not (then 0) */
} nf_config_field;

/* How many fields the table has, and field i (NULL when i is out of range). */
int32_t nf_config_num_fields(void);
const nf_config_field *nf_config_field_at(int32_t i);
/* The field named name, or NULL. */
const nf_config_field *nf_config_field_find(const char *name);
/* Field fd of c as a double (any kind; a u64 above 2^53 loses bits — use nf_config_get_u64). */
double nf_config_get_number(const nf_config *c, const nf_config_field *fd);
/* Field fd of c as an enum value (NF_FIELD_ENUM) or as uint64_t (NF_FIELD_U64). */
int nf_config_get_enum(const nf_config *c, const nf_config_field *fd);
uint64_t nf_config_get_u64(const nf_config *c, const nf_config_field *fd);
/* Store v into field fd of c, converted to the field's kind. */
void nf_config_set_int(nf_config *c, const nf_config_field *fd, int64_t v);
void nf_config_set_double(nf_config *c, const nf_config_field *fd, double v);
void nf_config_set_u64(nf_config *c, const nf_config_field *fd, uint64_t v);

#endif

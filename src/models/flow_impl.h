/* models/flow_impl.h — struct nf_flow. PRIVATE to src/models: no other folder may include it
 * (scripts/check_includes.sh); everything else uses the functions of nflow.h and models.h. */
#ifndef NF_FLOW_IMPL_H
#define NF_FLOW_IMPL_H

#include "layers/dequant.h"
#include "models/models.h"

#define NF_FLOW_PARTS 2 /* row ranges of a small flow's training batch (flow.c) */

struct nf_flow {
    nf_config cfg;
    nf_registry reg;
    nf_layer **layers;
    int32_t nlayers;
    nf_prior prior;
    int training;
    int recompute; /* backward rebuilds layer inputs by inversion instead of storing them */
    /* Workspace sized for nmax rows: per layer its input and cache (store mode) or two alternating
     * activations and one cache (recompute mode), plus scratch. */
    int64_t nmax;
    nf_real *ws;
    int64_t *act_off, *cache_off; /* per layer, into ws */
    int64_t scratch_off, ws_size;
    /* grad_final[k] (k = 0..nlayers): once layers k..nlayers−1 and the prior have run their backward,
     * the gradients grads[grad_final[k] .. nparams) are final (grad_final[0] = 0); for a reducer that
     * sums the gradient while the backward pass runs (nf_reducer.grad_ready) */
    int64_t *grad_final;
    /* A small flow's training batch in NF_FLOW_PARTS fixed row ranges, one per thread (flow.c): copies of
     * this flow built from the same config, made when a batch that splits is reserved. splittable: built
     * from a config and not itself a part (a flow of given layers has no config to copy). */
    int splittable;
    struct nf_flow *part[NF_FLOW_PARTS];
    char *columns; /* the modelled table's column names (nf_flow_columns), or NULL */
    /* Variational dequantisation (cfg.dequant): the dequantiser, its tensors in the flow's registry
     * ("dequant.*"), and its own workspace for dq_nmax images: x | logq | ∂L/∂x | cache | scratch. */
    nf_dequant dq;
    nf_real *dq_ws;
    int64_t dq_nmax;
};

/* Append the layers of f->cfg's model to f (recipes.c). */
nf_status nf_model_build(nf_flow *f);

#endif

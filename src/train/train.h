/* train/train.h — the optimiser's internals shared by the trainer (Adam itself is public: nflow.h). */
#ifndef NF_TRAIN_H
#define NF_TRAIN_H

#include "core/core.h"

/* Adam's moments (nparams each) and step counter, for checkpoints. */
void nf_adam_state(nf_adam *a, nf_real **m, nf_real **v, int64_t **t);
/* nf_adam_step in two halves, so a caller can look at the norm first (the trainer refuses non-finite
 * gradients): ‖g‖ (parallel, fixed-order sum), then the update with that norm. */
double nf_adam_grad_norm(nf_adam *a, const nf_real *g);
void nf_adam_apply(nf_adam *a, nf_real *p, const nf_real *g, double norm);
/* Multiply the base learning rate (the one warm-up and the schedule scale) by f > 0. */
void nf_adam_scale_lr(nf_adam *a, double f);
#endif

/* train/train.h — the optimiser's internals shared by the trainer (Adam itself is public: nflow.h). */
#ifndef NF_TRAIN_H
#define NF_TRAIN_H

#include "core/core.h"

/* Adam's moments (nparams each), step counter t and moment start t0 (the bias correction counts t − t0
 * updates), for checkpoints. */
void nf_adam_state(nf_adam *a, nf_real **m, nf_real **v, int64_t **t, int64_t **t0);
/* Zero the moments and count the bias correction afresh from the next update (t0 = t); the learning-rate
 * schedule keeps running on t. The divergence guard's roll-back. */
void nf_adam_restart_moments(nf_adam *a);
/* nf_adam_step in two halves, so a caller can look at the norm first (the trainer refuses non-finite
 * gradients): ‖g‖ (parallel, fixed-order sum), then the update with that norm. */
double nf_adam_grad_norm(nf_adam *a, const nf_real *g);
void nf_adam_apply(nf_adam *a, nf_real *p, const nf_real *g, double norm);
/* Multiply the base learning rate (the one warm-up and the schedule scale) by f > 0. */
void nf_adam_scale_lr(nf_adam *a, double f);
#endif

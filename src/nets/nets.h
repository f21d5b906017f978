/* nets/nets.h — the conditioner networks of the couplings: an MLP (vectors), Glow's conv net and
 * RealNVP's ResNet (images). Each net describes its own parameters (nf_*_reserve registers them as named
 * tensors), reads them from the flat buffer at its offset, and ADDS its parameter gradients (+=).
 * Shapes: batch first, (n, features) or (n, C, H, W). */
#ifndef NF_NETS_H
#define NF_NETS_H

#include "core/registry.h"
#include "kernels/kernels.h"

/* ---------------------------------------------------------------- MLP (mlp.c) */
typedef struct {
    int32_t in, out, hidden, layers; /* layers = number of hidden layers */
    nf_activation act;
    double init_std; /* std of the last layer's initial weights (0: the net starts as exactly 0) */
    int64_t off; /* offset of the first weight in the flat parameter buffer */
    int32_t ctx; /* conditional nets: K context values c per row join the first linear map as extra
                  * inputs, y_0 = W_0 x + W_c c + b_0 (the MLP of the concatenation [x, c]); 0: none */
} nf_mlp;

/* Parameters: for each linear l (layers + 1 of them): W_l (out_l, in_l) then b_l (out_l); then, with
 * ctx > 0, W_c (out_0, ctx) ("net.ctx.weight"). */
int64_t nf_mlp_num_params(const nf_mlp *m);
/* Register the parameters as named tensors "<owner>.net.<l>.weight/bias"; sets m->off. */
nf_status nf_mlp_reserve(nf_registry *r, const char *owner, nf_mlp *m);
int64_t nf_mlp_flops(const nf_mlp *m); /* per sample, forward */
/* Floats of cache for n rows: the post-activation of every hidden layer. */
int64_t nf_mlp_cache_size(const nf_mlp *m, int64_t n);
/* Weights He-/LeCun-uniform (by activation), biases 0; the LAST layer is zero (identity coupling) or,
 * if m->init_std > 0, N(0, init_std²) weights with zero bias. W_c (drawn last, so an unconditional net's
 * values do not change) like W_0: He-/LeCun-uniform, or like the last layer when there is no hidden layer. */
void nf_mlp_init(const nf_mlp *m, nf_real *P, nf_rng *rng);
/* y (n,out) = mlp(x (n,in), c (n,ctx)); cache filled for backward. c: NULL when ctx = 0 (ignored then). */
void nf_mlp_forward(const nf_mlp *m, const nf_real *P, const nf_real *x, const nf_real *c, nf_real *y, int64_t n,
                    nf_real *cache);
/* Given dy (n,out): dx (n,in) = ∂L/∂x (overwritten; may be NULL); dP += ∂L/∂P; dc (n,ctx) += ∂L/∂c
 * (may be NULL). dy is not modified; work must hold 2·n·hidden floats. x, c and cache as forward saw them. */
void nf_mlp_backward(const nf_mlp *m, const nf_real *P, nf_real *dP, const nf_real *x, const nf_real *c,
                     const nf_real *cache, const nf_real *dy, nf_real *dx, nf_real *dc, int64_t n, nf_real *work);
/* the derivative from the activation's output y alone: v > 0 ⟺ y > 0 for ReLU and leaky ReLU (also for
 * v = NaN, where both tests are false), 1 − y² for tanh */
static inline nf_real nf_act_df(nf_activation a, nf_real y) {
    switch (a) {
    case NF_ACT_TANH: return 1 - y * y;
    case NF_ACT_LEAKY_RELU: return y > 0 ? 1 : R(0.01);
    default: return y > 0 ? 1 : 0;
    }
}
/* y (n, out) ← a(y + b) in place, row by row; last = 1: y + b only (an output layer). */
void nf_mlp_bias_act(nf_activation a, int last, const nf_real *b, nf_real *y, int64_t n, int64_t out);

/* ---------------------------------------------------------------- Glow's conv net (convnet.c) */
typedef struct {
    int32_t cin, cout, hidden, layers; /* layers: hidden convs (3×3 then 1×1s); 0: the zero-conv only */
    int32_t H, W;
    double init_std;                   /* std of the zero-conv's initial weights (0: exactly zero) */
    int64_t off;                       /* first parameter in the flat buffer */
    int32_t ctx;                       /* conditional nets (layers ≥ 1): K context values per sample give the
                                        * first conv a per-sample, per-channel bias W_c·c (W_c (hidden, K),
                                        * "net.ctx.weight", the last parameter); 0: none */
} nf_convnet;
/* The learned per-sample channel bias W_c·c of a conditional conv net's first convolution, then its ReLU,
 * on y (n, C, P) in place (W_c (C, K), c (n, K)); and its backward: dW_c += Σ_i s_i c_iᵀ, dc += W_cᵀ s_i
 * (dc may be NULL), s_i[k] = Σ_p dpre[i, k, p] (convnet.c; resnet.c uses them too). */
void nf_ctx_bias_relu(const nf_real *Wc, const nf_real *c, nf_real *y, int64_t n, int32_t C, int64_t P, int32_t K);
void nf_ctx_bias_backward(const nf_real *Wc, nf_real *dWc, const nf_real *c, const nf_real *dpre, nf_real *dc, int64_t n,
                          int32_t C, int64_t P, int32_t K);
int64_t nf_convnet_num_params(const nf_convnet *m);
/* Register the parameters as named tensors "<owner>.net.<l>.*", "<owner>.net.out.*"; sets m->off. */
nf_status nf_convnet_reserve(nf_registry *r, const char *owner, nf_convnet *m);
int64_t nf_convnet_flops(const nf_convnet *m);
int64_t nf_convnet_cache_size(const nf_convnet *m, int64_t n);
int64_t nf_convnet_work_size(const nf_convnet *m, int64_t n);
void nf_convnet_init(const nf_convnet *m, nf_real *P, nf_rng *rng);
/* y (n, cout, H, W) from x (n, cin, H, W) and c (n, ctx; NULL when ctx = 0); cache filled for backward;
 * work: nf_convnet_work_size. */
void nf_convnet_forward(const nf_convnet *m, const nf_real *P, const nf_real *x, const nf_real *c, nf_real *y, int64_t n,
                        nf_real *cache, nf_real *work);
/* dP += ∂L/∂P; dx = ∂L/∂x (overwritten) from dy; dc += ∂L/∂c (may be NULL). */
void nf_convnet_backward(const nf_convnet *m, const nf_real *P, nf_real *dP, const nf_real *x, const nf_real *c,
                         const nf_real *cache, const nf_real *dy, nf_real *dx, nf_real *dc, int64_t n, nf_real *work);

/* ---------------------------------------------------------------- RealNVP's ResNet (convnet.c) */
typedef struct {
    int32_t cin, cout, width, blocks; /* conv3×3(cin → width) → ReLU → blocks × residual block → conv3×3(→ cout) */
    int32_t H, W;
    double init_std;                  /* std of the output conv's initial weights (0: exactly zero) */
    int64_t off;                      /* first parameter in the flat buffer */
    int32_t ctx;                      /* conditional nets: K context values per sample give the input conv a
                                       * per-sample, per-channel bias W_c·c (W_c (width, K), "net.ctx.weight",
                                       * the last parameter); 0: none */
} nf_resnet;
int64_t nf_resnet_num_params(const nf_resnet *m);
/* Register the parameters as named tensors "<owner>.net.in.*", "<owner>.net.<b>.conv<k>.*", "<owner>.net.out.*". */
nf_status nf_resnet_reserve(nf_registry *r, const char *owner, nf_resnet *m);
int64_t nf_resnet_flops(const nf_resnet *m);
int64_t nf_resnet_cache_size(const nf_resnet *m, int64_t n);
int64_t nf_resnet_work_size(const nf_resnet *m, int64_t n);
void nf_resnet_init(const nf_resnet *m, nf_real *P, nf_rng *rng);
/* y from x and c (n, ctx; NULL when ctx = 0). */
void nf_resnet_forward(const nf_resnet *m, const nf_real *P, const nf_real *x, const nf_real *c, nf_real *y, int64_t n,
                       nf_real *cache, nf_real *work);
/* dP += ∂L/∂P; dx = ∂L/∂x (overwritten) from dy; dc += ∂L/∂c (may be NULL). */
void nf_resnet_backward(const nf_resnet *m, const nf_real *P, nf_real *dP, const nf_real *x, const nf_real *c,
                        const nf_real *cache, const nf_real *dy, nf_real *dx, nf_real *dc, int64_t n, nf_real *work);

/* ---------------------------------------------------------------- MADE (made.c)
 * A masked MLP (Germain et al. 2015): D inputs, P·D outputs, output column p·D + d is parameter p of
 * coordinate d. Input i has the degree deg[i] ∈ 1..D (its rank in the ordering), hidden unit k of every
 * hidden layer the degree m_k = (k mod (D − 1)) + 1 (0 when D = 1); a hidden unit sees the units below
 * it of degree ≤ its own, an output of coordinate d sees those of degree < deg[d]. So output d depends
 * only on the inputs before d in the ordering. The weights and biases are an nf_mlp's (same names and
 * layout); the net runs as that MLP on the masked weights W ⊙ M (nf_made_mask), and the weight
 * gradients are masked too, so the masked entries keep their initial 0. The degrees live in a state
 * buffer (saved with the model). */
typedef struct {
    nf_mlp mlp;            /* in = D, out = P·D, hidden, layers, act, init_std: the weight layout */
    int32_t D, P;
    nf_order_type order;   /* how nf_made_init draws the degrees */
    int64_t off_deg;       /* buffer offset of deg (D floats, exact integers) */
} nf_made;
/* Register "<owner>.net.<l>.weight/bias" (the MLP's) and the buffer "<owner>.net.degree" (D); sets
 * m->mlp.off and m->off_deg. m->mlp.in/out must be D and P·D. NF_ERR_NOMEM (reason set) on failure. */
nf_status nf_made_reserve(nf_registry *r, const char *owner, nf_made *m);
int64_t nf_made_num_params(const nf_made *m);
/* Floats of cache for n rows (the MLP's) and of scratch for nf_made_backward (2·n·hidden + parameters). */
int64_t nf_made_cache_size(const nf_made *m, int64_t n);
int64_t nf_made_work_size(const nf_made *m, int64_t n);
/* The MLP's initialisation (last layer 0 unless init_std > 0), then the degrees of m->order (RANDOM:
 * a permutation drawn from rng), then the masked entries of P set to 0. */
void nf_made_init(const nf_made *m, nf_real *P, nf_real *deg, nf_rng *rng);
/* Pm (nf_made_num_params floats) = P with every masked weight set to 0 (biases copied). */
void nf_made_mask(const nf_made *m, const nf_real *P, const nf_real *deg, nf_real *Pm);
/* order[r] = the input of rank r (degree r + 1) for r = 0..D−1, from deg. */
void nf_made_order(const nf_made *m, const nf_real *deg, int32_t *order);
/* y (n, P·D) = MADE(x (n, D), c (n, mlp.ctx)) with Pm = nf_made_mask's output; cache filled for backward.
 * The context (mlp.ctx > 0) reaches every unit of the first hidden layer, unmasked: every output may
 * depend on c, output d still only on the inputs before d. */
void nf_made_forward(const nf_made *m, const nf_real *Pm, const nf_real *x, const nf_real *c, nf_real *y, int64_t n,
                     nf_real *cache);
/* Given dy (n, P·D): dx (n, D) = ∂L/∂x (overwritten; may be NULL); dP += M ⊙ ∂L/∂W and ∂L/∂b (and ∂L/∂W_c,
 * unmasked) (dP may be NULL: input gradient only); dc += ∂L/∂c (may be NULL). Pm, x, c and cache as forward
 * used them; work: nf_made_work_size floats. */
void nf_made_backward(const nf_made *m, const nf_real *Pm, nf_real *dP, const nf_real *deg, const nf_real *x,
                      const nf_real *c, const nf_real *cache, const nf_real *dy, nf_real *dx, nf_real *dc, int64_t n,
                      nf_real *work);
int64_t nf_made_flops(const nf_made *m); /* per sample, one forward */
/* One coordinate's outputs, for the passes of a D-pass inverse (made.c explains the sorted net):
 * nf_made_prefix: the hidden units of each layer with degree ≤ k (all of them when k ≥ D − 1 or D = 1).
 * nf_made_sort: Ps (nf_made_sorted_size floats) = Pm (nf_made_mask's output) with every hidden layer's
 * units in degree order, and the permutation after the parameters.
 * nf_made_forward_coord: th (n, P) = the P outputs of coordinate j (output columns q·D + j) at x (n, D),
 * c (n, mlp.ctx), equal to nf_made_forward's to rounding; it multiplies only the weights between the
 * units of degree < deg[j] (and at most 7 more units a layer, to fill whole vectors); work: 2·n·hidden
 * floats; no cache. */
int64_t nf_made_prefix(const nf_made *m, int32_t k);
int64_t nf_made_coord_flops(const nf_made *m, int32_t k); /* per sample, one nf_made_forward_coord, deg[j] = k + 1 */
int64_t nf_made_sorted_size(const nf_made *m);
void nf_made_sort(const nf_made *m, const nf_real *Pm, nf_real *Ps);
void nf_made_forward_coord(const nf_made *m, const nf_real *Ps, const nf_real *deg, int32_t j, const nf_real *x,
                           const nf_real *c, nf_real *th, int64_t n, nf_real *work);
/* nf_made_sort_derivs: dact (layers, n, hidden) = the hidden activations' derivatives at the outputs
 * nf_made_forward left in cache, the units in Ps's order (Ps sorted from the Pm of that forward).
 * nf_made_backward_coord: dx (n, D) += ∂(Σ dth ⊙ th)/∂x, the input gradient of coordinate j's P outputs
 * with cotangent dth (n, P), through the units of degree < deg[j] only, at those derivatives; work:
 * 2·n·hidden floats. At most 32 hidden layers (the MLP's limit). */
void nf_made_sort_derivs(const nf_made *m, const nf_real *Ps, const nf_real *cache, int64_t n, nf_real *dact);
void nf_made_backward_coord(const nf_made *m, const nf_real *Ps, const nf_real *deg, int32_t j, const nf_real *dact,
                            const nf_real *dth, nf_real *dx, int64_t n, nf_real *work);

#endif

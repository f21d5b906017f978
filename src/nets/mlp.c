/* mlp.c — the coupling networks: a multilayer perceptron in -> hidden (×layers) -> out.
 * Parameters, in order, for each linear map l = 0..layers: W_l (out_l, in_l) row-major, then b_l (out_l);
 * then, for a conditional net (ctx = K > 0), W_c (out_0, K): the first map is y_0 = W_0 x + W_c c + b_0.
 * Cache, for each hidden layer l: its post-activation (n, hidden) only — every activation here has its
 * derivative from the output (ReLU and leaky ReLU: [y > 0] ⟺ [v > 0]; tanh: 1 − y²). */
#include "nets/nets.h"

/* Inputs of linear l. */
static int64_t lin_in(const nf_mlp *m, int32_t l) { return l == 0 ? m->in : m->hidden; }
/* Outputs of linear l. */
static int64_t lin_out(const nf_mlp *m, int32_t l) { return l == m->layers ? m->out : m->hidden; }

/* See nets.h: FLOPs per sample (2 × multiply-adds of every linear). */
int64_t nf_mlp_flops(const nf_mlp *m) {
    int64_t f = 0;
    for (int32_t l = 0; l <= m->layers; l++) {
        int64_t in = l == 0 ? m->in : m->hidden, out = l == m->layers ? m->out : m->hidden;
        f += 2 * in * out;
    }
    return f + 2 * lin_out(m, 0) * m->ctx;
}

/* Floats of the linear maps' parameters (without W_c). */
static int64_t lin_params(const nf_mlp *m) {
    int64_t s = 0;
    for (int32_t l = 0; l <= m->layers; l++) s += lin_out(m, l) * (lin_in(m, l) + 1);
    return s;
}

/* See nets.h: Σ_l out_l·(in_l + 1), plus out_0·ctx for W_c. */
int64_t nf_mlp_num_params(const nf_mlp *m) { return lin_params(m) + lin_out(m, 0) * m->ctx; }

/* See nets.h: the post-activation of every hidden layer, n rows. */
int64_t nf_mlp_cache_size(const nf_mlp *m, int64_t n) { return (int64_t)m->layers * n * m->hidden; }

/* See nets.h: He/LeCun-uniform hidden weights (from rng), zero biases; last layer 0 or N(0, init_std²). */
void nf_mlp_init(const nf_mlp *m, nf_real *P, nf_rng *rng) {
    for (int32_t l = 0; l <= m->layers; l++) {
        int64_t in = lin_in(m, l), out = lin_out(m, l);
        /* He-uniform for (leaky) ReLU, LeCun-uniform for tanh: keeps activations at unit scale through
         * deep nets (PyTorch's U(±1/√in) shrinks them ~√6× per ReLU layer and stalls deep NICE nets) */
        double gain = m->act == NF_ACT_TANH ? 3.0 : 6.0;
        double bound = sqrt(gain / (double)(in > 0 ? in : 1));
        if (l == m->layers) { /* last layer: zero (identity coupling) unless init_std asks for noise */
            for (int64_t i = 0; i < out * in; i++) *P++ = (nf_real)(m->init_std * nf_rng_normal(rng));
        } else {
            for (int64_t i = 0; i < out * in; i++) *P++ = (nf_real)(bound * (2.0 * nf_rng_uniform(rng) - 1.0));
        }
        for (int64_t i = 0; i < out; i++) *P++ = 0;
    }
    if (m->ctx > 0) { /* W_c: as W_0 (a hidden layer's fan-in of in + ctx), or as the last layer */
        int64_t out = lin_out(m, 0), in = m->in + m->ctx;
        double bound = sqrt((m->act == NF_ACT_TANH ? 3.0 : 6.0) / (double)(in > 0 ? in : 1));
        for (int64_t i = 0; i < out * m->ctx; i++)
            *P++ = (nf_real)(m->layers == 0 ? m->init_std * nf_rng_normal(rng) : bound * (2.0 * nf_rng_uniform(rng) - 1.0));
    }
}

/* Rows [lo, hi) of nf_mlp_bias_act. */
static void bias_act_rows(nf_activation a, int last, const nf_real *b, nf_real *y, int64_t lo, int64_t hi, int64_t out) {
    for (int64_t i = lo; i < hi; i++) {
        nf_real *p = y + i * out;
        if (last) {
#pragma omp simd
            for (int64_t j = 0; j < out; j++) p[j] += b[j];
        } else if (a == NF_ACT_RELU) { /* the common case as a vector select, not a per-element branch */
#pragma omp simd
            for (int64_t j = 0; j < out; j++) {
                nf_real v = p[j] + b[j];
                p[j] = v > 0 ? v : 0;
            }
        } else if (a == NF_ACT_TANH) { /* over the row at once (kernels/vmath.c): as scalar tanhf calls
                                        * they were a third of a table's default maf training (perf) */
            nf_tanh_bias(p, b, out);
        } else { /* leaky ReLU, a select as well */
#pragma omp simd
            for (int64_t j = 0; j < out; j++) {
                nf_real v = p[j] + b[j];
                p[j] = v > 0 ? v : R(0.01) * v;
            }
        }
    }
}

/* See nets.h: y (n, out) ← act(y + b) row by row, in place (act: the identity for the last layer): one
 * sweep over the layer's output after its product (written with beta = 0, so the bias is not stored
 * first and read back). The same single rounding per element as a product accumulated onto the bias. */
void nf_mlp_bias_act(nf_activation a, int last, const nf_real *b, nf_real *y, int64_t n, int64_t out) {
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, out), n, bias_act_rows(a, last, b, y, lo, hi, out));
}

/* See nets.h: y = mlp(x, c), the hidden layers' outputs into cache. */
void nf_mlp_forward(const nf_mlp *m, const nf_real *P, const nf_real *x, const nf_real *c, nf_real *y, int64_t n,
                    nf_real *cache) {
    const nf_real *h = x, *Wc = P + lin_params(m);
    for (int32_t l = 0; l <= m->layers; l++) {
        int64_t in = lin_in(m, l), out = lin_out(m, l);
        const nf_real *W = P, *b = P + out * in;
        P += out * (in + 1);
        nf_real *o = l == m->layers ? y : cache + (int64_t)l * n * m->hidden;
        nf_gemm(0, 1, n, out, in, 1, h, in, W, in, 0, o, out); /* o = h·Wᵀ */
        if (l == 0 && m->ctx > 0 && c) nf_gemm(0, 1, n, out, m->ctx, 1, c, m->ctx, Wc, m->ctx, 1, o, out); /* + c·W_cᵀ */
        nf_mlp_bias_act(m->act, l == m->layers, b, o, n, out); /* + b, and the activation of a hidden layer */
        if (l == m->layers) break;
        h = o;
    }
}

/* d[lo, hi) ← d · act'(·) at the hidden layer's output h (ReLU, leaky ReLU, tanh: each a function of h). */
static void act_backward(nf_activation act, const nf_real *h, nf_real *d, int64_t lo, int64_t hi) {
    if (act == NF_ACT_TANH) {
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) d[i] *= 1 - h[i] * h[i];
    } else if (act == NF_ACT_LEAKY_RELU) {
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) {
            nf_real v = d[i];
            d[i] = h[i] > 0 ? v : R(0.01) * v;
        }
    } else {
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) {
            nf_real v = d[i];
            d[i] = h[i] > 0 ? v : 0;
        }
    }
}

/* See nets.h: dP += ∂L/∂P, dx = ∂L/∂x (overwritten, may be NULL), dc += ∂L/∂c (may be NULL); work:
 * 2·n·hidden floats. */
void nf_mlp_backward(const nf_mlp *m, const nf_real *P, nf_real *dP, const nf_real *x, const nf_real *c,
                     const nf_real *cache, const nf_real *dy, nf_real *dx, nf_real *dc, int64_t n, nf_real *work) {
    /* offsets of every linear map */
    int64_t off[64];
    int64_t o = 0;
    for (int32_t l = 0; l <= m->layers; l++) off[l] = o, o += lin_out(m, l) * (lin_in(m, l) + 1);
    nf_real *bufA = work, *bufB = work + n * m->hidden;
    const nf_real *dZ = dy;
    for (int32_t l = m->layers; l >= 0; l--) {
        int64_t in = lin_in(m, l), out = lin_out(m, l);
        const nf_real *W = P + off[l];
        nf_real *dW = dP + off[l], *db = dW + out * in;
        const nf_real *h = l == 0 ? x : cache + (int64_t)(l - 1) * n * m->hidden;
        nf_gemm(1, 0, out, in, n, 1, dZ, out, h, in, 1, dW, in);
        /* the bias gradient: the rows in order (the same sums as before), each a vector add; as a
         * scalar loop it cost realnvp-moons' training about 12 % */
        for (int64_t i = 0; i < n; i++) {
            const nf_real *dz = dZ + i * out;
#pragma omp simd
            for (int64_t j = 0; j < out; j++) db[j] += dz[j];
        }
        if (l == 0) {
            if (dx) nf_gemm(0, 0, n, in, out, 1, dZ, out, W, in, 0, dx, in);
            if (m->ctx > 0 && c) { /* ∂L/∂W_c += dZᵀ c, ∂L/∂c += dZ W_c */
                int64_t oc = lin_params(m);
                nf_gemm(1, 0, out, m->ctx, n, 1, dZ, out, c, m->ctx, 1, dP + oc, m->ctx);
                if (dc) nf_gemm(0, 0, n, m->ctx, out, 1, dZ, out, P + oc, m->ctx, 1, dc, m->ctx);
            }
            break;
        }
        nf_real *dh = (dZ == bufA) ? bufB : bufA;
        nf_gemm(0, 0, n, in, out, 1, dZ, out, W, in, 0, dh, in);
        /* through the activation of hidden layer l − 1, which is h (this layer's input) */
        /* shares of the elements over the threads, each one vector loop per activation (as one `parallel
         * for simd` GCC 12 left ReLU's hot path scalar with a branch per element, 16 % of realnvp-moons'
         * training; with the activation switched per element, tanh's was scalar too, 5 % of a table's
         * default maf training) */
        NF_PARALLEL_RANGE(NF_PAR_WORTH(n, in), n * in, act_backward(m->act, h, dh, lo, hi));
        dZ = dh;
    }
}

/* Register the MLP's tensors under owner: "net.<l>.weight" (out_l, in_l) and "net.<l>.bias" (out_l) for
 * l = 0..layers, then "net.ctx.weight" (out_0, ctx) when ctx > 0; sets m->off to the first. NF_ERR_NOMEM
 * (reason set) on failure. */
nf_status nf_mlp_reserve(nf_registry *r, const char *owner, nf_mlp *m) {
    m->off = -1;
    for (int32_t l = 0; l <= m->layers; l++) {
        char tw[32], tb[32];
        snprintf(tw, sizeof tw, "net.%d.weight", (int)l);
        snprintf(tb, sizeof tb, "net.%d.bias", (int)l);
        int64_t sw[2] = {lin_out(m, l), lin_in(m, l)};
        int64_t ow = nf_registry_reserve(r, owner, tw, NF_TENSOR_PARAM, 2, sw);
        if (ow < 0 || nf_registry_reserve_vec(r, owner, tb, NF_TENSOR_PARAM, lin_out(m, l)) < 0) return NF_ERR_NOMEM;
        if (l == 0) m->off = ow;
    }
    int64_t sc[2] = {lin_out(m, 0), m->ctx};
    if (m->ctx > 0 && nf_registry_reserve(r, owner, "net.ctx.weight", NF_TENSOR_PARAM, 2, sc) < 0) return NF_ERR_NOMEM;
    return NF_OK;
}

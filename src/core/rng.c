/* rng.c — xoshiro256** seeded by splitmix64; uniform, normal and logistic draws. The whole state is
 * the four words of nf_rng, so saving it saves the stream. */
#include "core/core.h"

/* Advance the splitmix64 state *x and return its next 64-bit output (seeding only). */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Fill r's four words from seed through splitmix64 (never the all-zero state); r is the caller's. */
void nf_rng_seed(nf_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

/* x rotated left by k bits (0 < k < 64). */
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* The next 64 random bits of xoshiro256**; advances r. */
uint64_t nf_rng_u64(nf_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* A uniform double in the open interval (0, 1) (53 bits); advances r. */
double nf_rng_uniform(nf_rng *r) {
    /* 53 random bits, shifted by half an ulp so the result is in the open interval (0, 1). */
    return ((double)(nf_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* A standard normal draw (Box–Muller, cosine branch; two uniforms); advances r. */
double nf_rng_normal(nf_rng *r) {
    double u1 = nf_rng_uniform(r), u2 = nf_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A standard logistic draw log(u) − log(1 − u); advances r. */
double nf_rng_logistic(nf_rng *r) {
    double u = nf_rng_uniform(r);
    return log(u) - log1p(-u);
}

/* See core.h: k steps of the generator. */
void nf_rng_skip(nf_rng *r, uint64_t k) {
    for (uint64_t i = 0; i < k; i++) (void)nf_rng_u64(r);
}

/* See core.h: identity, then Fisher–Yates from the top. */
void nf_shuffle(int64_t *idx, int64_t n, nf_rng *r) {
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t k = (int64_t)(nf_rng_u64(r) % (uint64_t)(i + 1)), t = idx[i];
        idx[i] = idx[k], idx[k] = t;
    }
}

/* See core.h. */
void nf_shuffled_indices(int64_t *idx, int64_t n, uint64_t seed) {
    nf_rng r;
    nf_rng_seed(&r, seed);
    nf_shuffle(idx, n, &r);
}

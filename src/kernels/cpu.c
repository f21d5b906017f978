/* kernels/cpu.c — which code paths run on this CPU, decided once from its feature bits (never from its
 * model number), and a BLAS that knows the CPU.
 *
 * ISA paths: generic (portable C), avx2 (AVX2 + FMA), avx512 (AVX-512 F/BW/DQ/VL). __builtin_cpu_supports
 * reads CPUID and also checks that the OS saves the wide registers (XGETBV), so a path is only offered
 * where it can run. NFLOW_ISA=generic|avx2|avx512 caps the path (it can only lower it).
 *
 * OpenBLAS: Debian 12's OpenBLAS 0.3.21 (DYNAMIC_ARCH) chooses its kernels from the CPU model and falls
 * back to "Prescott" (SSE3) on Intel models newer than it knows, running sgemm 3–5× below the machine.
 * At load time nflow compares the core OpenBLAS chose with the widest ISA the CPU's feature bits allow
 * and, when OpenBLAS's is lower, re-initialises it with OPENBLAS_CORETYPE set to the matching core
 * (SkylakeX for AVX-512, Haswell for AVX2) — the library's own exported gotoblas_dynamic_init. NFLOW_ISA
 * caps OpenBLAS's core the same way (Haswell under avx2, Prescott under generic) and oneDNN's ISA
 * (gemm.c), so that NFLOW_ISA=avx2 runs every kernel as an AVX2-only CPU would. A user's
 * OPENBLAS_CORETYPE is respected; NFLOW_BLAS_CORE=keep turns the correction off. BLAS libraries without
 * those symbols (a non-DYNAMIC_ARCH build, BLIS) are left alone. */
#define _POSIX_C_SOURCE 200809L /* setenv, unsetenv */
#include "kernels/kernels.h"

#include <stdlib.h>

/* OpenBLAS's exports; weak, so nflow links and runs against any CBLAS. */
extern char *openblas_get_corename(void) __attribute__((weak));
extern char *openblas_get_config(void) __attribute__((weak));
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

static const char *const isa_names[] = {"generic", "avx2", "avx512"};
static int g_active = -1;       /* the path in use; −1 until decided */
static char g_blas_from[32];    /* the core OpenBLAS had chosen before a correction ("" if none) */
static int g_blas_capped;       /* 1: the correction lowered the core to NFLOW_ISA's path */

/* The name of a path ("generic", "avx2", "avx512"). */
const char *nf_isa_name(nf_isa isa) { return (unsigned)isa <= NF_ISA_AVX512 ? isa_names[isa] : "?"; }

/* The path named s, or −1. */
static int isa_from_name(const char *s) {
    for (int i = 0; i <= NF_ISA_AVX512; i++)
        if (s && strcmp(s, isa_names[i]) == 0) return i;
    return -1;
}

/* The widest ISA the CPU and OS support, from the feature bits (x86-64; generic elsewhere). */
static int hw_level(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return NF_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NF_ISA_AVX2;
#endif
    return NF_ISA_GENERIC;
}

/* The widest path of nflow's kernels here: the hardware's, generic in double builds (whose kernels are
 * the portable ones). */
nf_isa nf_isa_cpu(void) {
#ifdef NFLOW_DOUBLE
    return NF_ISA_GENERIC;
#else
    return (nf_isa)hw_level();
#endif
}

/* The path in use: the CPU's, capped by NFLOW_ISA (an unknown value is ignored here and reported by
 * nf_runtime_check). Decided on first use; every caller computes the same value (benign race). */
nf_isa nf_isa_active(void) {
    if (g_active < 0) {
        int cpu = (int)nf_isa_cpu(), want = isa_from_name(getenv("NFLOW_ISA"));
        g_active = want >= 0 && want < cpu ? want : cpu;
    }
    return (nf_isa)g_active;
}

/* Tests and benchmarks: run path isa from now on (capped at the CPU's); returns the previous one. */
nf_isa nf_isa_set(nf_isa isa) {
    nf_isa was = nf_isa_active(), cpu = nf_isa_cpu();
    g_active = (int)(isa < cpu ? isa : cpu);
    return was;
}

/* ISA level an OpenBLAS core name stands for (unknown names count as generic). */
static int core_level(const char *core) {
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *const avx2[] = {"Haswell", "Zen", "Excavator"};
    for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++)
        if (core && strcmp(core, avx512[i]) == 0) return NF_ISA_AVX512;
    for (size_t i = 0; i < sizeof avx2 / sizeof *avx2; i++)
        if (core && strcmp(core, avx2[i]) == 0) return NF_ISA_AVX2;
    return NF_ISA_GENERIC;
}

/* Load-time correction of OpenBLAS's core (see the top of this file). Runs before main, after OpenBLAS's
 * own initialisation (a library's dependencies are initialised first). */
__attribute__((constructor)) static void blas_fix_core(void) {
    if (!openblas_get_corename || !gotoblas_dynamic_init || !gotoblas_dynamic_quit) return;
    const char *keep = getenv("NFLOW_BLAS_CORE");
    if (getenv("OPENBLAS_CORETYPE") || (keep && strcmp(keep, "keep") == 0)) return;
    const char *core = openblas_get_corename();
    int cpu = hw_level(), cap = isa_from_name(getenv("NFLOW_ISA")); /* the hardware's, also for double builds (dgemm) */
    int level = cap >= 0 && cap < cpu ? cap : cpu, have = core_level(core);
    if (have == level || (have > level && level == cpu)) return; /* a core above the CPU's own: OpenBLAS knows it better */
    const char *want = level == NF_ISA_AVX512 ? "SkylakeX" : level == NF_ISA_AVX2 ? "Haswell" : "Prescott";
    snprintf(g_blas_from, sizeof g_blas_from, "%s", core ? core : "?");
    g_blas_capped = have > level;
    gotoblas_dynamic_quit();
    setenv("OPENBLAS_CORETYPE", want, 1);
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE"); /* child programs decide for themselves */
}

/* The BLAS core in use ("SkylakeX", …; "unknown" for a BLAS that does not say). */
const char *nf_blas_core(void) {
    const char *c = openblas_get_corename ? openblas_get_corename() : NULL;
    return c ? c : "unknown";
}

/* The ISA level of the BLAS core in use (generic for a BLAS that does not name its core). */
nf_isa nf_blas_isa(void) { return (nf_isa)core_level(openblas_get_corename ? openblas_get_corename() : NULL); }

/* See nflow.h: "isa avx512 (cpu avx512), blas OpenBLAS 0.3.21 … core SkylakeX (corrected from Prescott)"; a core
 * the user forced below the CPU's ISA through OPENBLAS_CORETYPE is named as such. */
const char *nf_runtime_info(void) {
    static _Thread_local char buf[384];
    const char *cfg = openblas_get_config ? openblas_get_config() : "a CBLAS";
    char from[96] = "";
    if (g_blas_from[0]) snprintf(from, sizeof from, g_blas_capped ? " (lowered by NFLOW_ISA from %s)" : " (corrected from %s)", g_blas_from);
    else if (getenv("OPENBLAS_CORETYPE") && openblas_get_corename && core_level(openblas_get_corename()) < hw_level())
        snprintf(from, sizeof from, " (set by OPENBLAS_CORETYPE, below this CPU's %s: not corrected)", nf_isa_name((nf_isa)hw_level()));
    const char *g = nf_gemm_info();
    snprintf(buf, sizeof buf, "isa %s (cpu supports %s), blas %s, core %s%s%s%s", nf_isa_name(nf_isa_active()),
             nf_isa_name(nf_isa_cpu()), cfg, nf_blas_core(), from, g[0] ? "; " : "", g);
    return buf;
}

/* See nflow.h: NF_ERR_INVALID with a reason if NFLOW_ISA names no path or one the CPU lacks, NFLOW_CONV
 * names no convolution path, or NFLOW_GEMM no product library of this build. */
nf_status nf_runtime_check(void) {
    const char *c = getenv("NFLOW_CONV");
    if (c && strcmp(c, "im2col") && strcmp(c, "direct") && strcmp(c, "winograd") && strcmp(c, "auto"))
        return nf_fail(NF_ERR_INVALID, "NFLOW_CONV=%s: not one of auto, winograd, direct, im2col", c);
    const char *gm = getenv("NFLOW_GEMM");
    if (gm && strcmp(gm, "auto") && strcmp(gm, "openblas") && strcmp(gm, "onednn"))
        return nf_fail(NF_ERR_INVALID, "NFLOW_GEMM=%s: not one of auto, openblas, onednn", gm);
    if (gm && strcmp(gm, "onednn") == 0 && !nf_gemm_onednn_available())
        return nf_fail(NF_ERR_INVALID, "NFLOW_GEMM=onednn: this build has no oneDNN (libdnnl-dev)");
    const char *s = getenv("NFLOW_ISA");
    if (!s) return NF_OK;
    int want = isa_from_name(s);
    if (want < 0) return nf_fail(NF_ERR_INVALID, "NFLOW_ISA=%s: not one of generic, avx2, avx512", s);
    if (want > (int)nf_isa_cpu())
        return nf_fail(NF_ERR_INVALID, "NFLOW_ISA=%s: this CPU supports at most %s", s, nf_isa_name(nf_isa_cpu()));
    return NF_OK;
}

/* fuzz_options.c — libFuzzer target: the CLI's option parser (tools/options.c: parse_options and
 * check_applicable) on arbitrary argument vectors. Input: byte 0 picks the command (train, eval,
 * sample, encode, decode, plot, demo, interpolate, manipulate), byte 1 the data source and model for
 * check_applicable, then NUL-separated arguments (at most 62). die() and exit() — the CLI's one-line
 * refusals and --help — return here through longjmp; a refusal is the expected outcome, a crash or a
 * sanitizer report is a finding. */
#include "cli.h"

#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *g_cmd = "nflow fuzz";
int g_quiet;
static jmp_buf g_jmp;
static int g_armed;

/* The CLI's die: format the message (so its arguments are read, as the real one does) and return to
 * the harness. */
void die(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!g_armed) abort();
    longjmp(g_jmp, 1);
}
void check(nf_status st) {
    if (st != NF_OK) die("%s", nf_last_error());
}

/* --help ends in exit(0): linked with -Wl,--wrap=exit, it comes back here too. */
void __real_exit(int status);
void __wrap_exit(int status);
void __wrap_exit(int status) {
    if (g_armed) longjmp(g_jmp, 2);
    __real_exit(status);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const unsigned cmds[9] = {C_TRAIN, C_EVAL, C_SAMPLE, C_ENCODE, C_DECODE, C_PLOT, C_DEMO, C_INTERP, C_MANIP};
    static const unsigned srcs[4] = {SRC_TOY, SRC_CSV, SRC_IDX, SRC_DIR};
    if (size < 2 || size > 4096) return 0;
    /* static: every variable read after setjmp returns must not live in a register longjmp clobbers */
    static unsigned cmd, src;
    static int model, argc;
    static char *buf, *argv[64];
    cmd = cmds[data[0] % 9], src = srcs[data[1] & 3];
    model = (data[1] >> 2) % 3;
    /* a private NUL-terminated copy, cut into arguments at every NUL */
    buf = malloc(size - 2 + 1);
    if (!buf) abort();
    memcpy(buf, data + 2, size - 2);
    buf[size - 2] = 0;
    argc = 0;
    argv[argc++] = "nflow-fuzz";
    for (char *p = buf; p < buf + (size - 2) + 1 && argc < 63;) {
        argv[argc++] = p;
        p += strlen(p) + 1;
    }
    argv[argc] = NULL;
    /* glibc's getopt keeps a pointer into the previous argv between calls; optind = 0 makes the next
     * call start afresh (the CLI parses once per process, so only the harness needs this) */
    static char *dummy[] = {"x", NULL};
    optind = 0;
    getopt(1, dummy, "");
    static opts o; /* static: not clobbered by longjmp */
    g_armed = 1;
    if (setjmp(g_jmp) == 0) {
        parse_options(argc, argv, cmd, "usage: nflow-fuzz\n", &o);
        check_applicable(&o, cmd, src, model);
    }
    g_armed = 0;
    free(buf);
    return 0;
}

/* replay.c — a main() for the fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput once on
 * every file named on the command line (folders: every file in them). The ordinary build links each
 * target with it (fuzz_replay_TARGET) and ctest replays the committed corpus, crash regressions
 * included, under the normal and the ASan/UBSan builds — no clang needed. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Run the target on the file at path; 0 when it could be read. */
static int replay_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return fprintf(stderr, "replay: cannot open %s\n", path), 1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    for (size_t k; b && (k = fread(b + n, 1, cap - n, fp)) > 0;)
        if ((n += k) == cap) {
            uint8_t *t = realloc(b, cap *= 2);
            if (!t) free(b);
            b = t;
        }
    fclose(fp);
    if (!b) return fprintf(stderr, "replay: out of memory for %s\n", path), 1;
    LLVMFuzzerTestOneInput(b, n);
    free(b);
    return 0;
}

int main(int argc, char **argv) {
    int bad = 0, runs = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            DIR *d = opendir(argv[i]);
            for (struct dirent *e; d && (e = readdir(d));) {
                if (e->d_name[0] == '.') continue;
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
                bad |= replay_file(p), runs++;
            }
            if (d) closedir(d);
        } else bad |= replay_file(argv[i]), runs++;
    }
    printf("replayed %d inputs\n", runs);
    return bad || runs == 0;
}

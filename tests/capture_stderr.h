/* capture_stderr.h — for tests that assert the library prints nothing: send stderr to a file and read
 * back how much was written. Include after <cmocka.h> (uses assert_*). */
#ifndef NF_TEST_CAPTURE_STDERR_H
#define NF_TEST_CAPTURE_STDERR_H

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* Send file descriptor 2 to a fresh file at path until stderr_end; returns the saved descriptor. */
static int stderr_begin(const char *path) {
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    assert_true(dup2(fd, 2) == 2);
    close(fd);
    return saved;
}
/* Restore stderr from saved; returns how many bytes were written to it meanwhile. */
static long stderr_end(int saved, const char *path) {
    fflush(stderr);
    assert_true(dup2(saved, 2) == 2);
    close(saved);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return (long)sb.st_size;
}

#endif

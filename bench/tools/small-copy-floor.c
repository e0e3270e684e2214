/*
 * The floor of Ferry's small-file copy on this machine: the same system calls per file as
 * `ferry sync` makes (PERFORMANCE.md, "What moved in session 9"), with no user-space work
 * around them. For a tree of directories holding regular files (bench.py's data-small):
 *
 *   listing:  getdents64, then fstatat of every name
 *   per file: openat(source), flistxattr, openat(O_TMPFILE) in the destination directory,
 *             pread, pwrite, fstat(source), fstat(destination), futimens,
 *             linkat(AT_EMPTY_PATH) to the final name, pread back (verification),
 *             fstat(destination), close, close
 *
 * Build and run (tmpfs):
 *   gcc -O2 -o /tmp/small-copy-floor bench/tools/small-copy-floor.c -lpthread
 *   perf stat -r 8 --pre "rm -rf /dev/shm/floor-out" /tmp/small-copy-floor \
 *       /dev/shm/ferry-bench/data-small /dev/shm/floor-out 2 1 1 0
 * Arguments: SRC DST THREADS [VERIFY=1] [TMPFILE=1] [SHARED=0]
 *   VERIFY=0   no read-back and no last fstat
 *   TMPFILE=0  a named temporary file renamed into place instead of O_TMPFILE + linkat
 *   SHARED=1   both threads work in the same directory at once (alternate runs of 8 files,
 *              as Ferry's batches of 8 did), instead of one directory per thread
 * No error handling beyond stopping at the first failure: a measuring tool, not a copier.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static const char *src, *dst;
static char **dirs;
static int ndirs, verify = 1, tmpfile_mode = 1, shared = 0;
static atomic_int next_dir;

static void die(const char *what, const char *name) {
    perror(what);
    fprintf(stderr, "at %s\n", name);
    exit(1);
}

static void copy_directory(const char *dir, int me, char *buf, char *back) {
    char sp[4096], dp[4096];
    snprintf(sp, sizeof sp, "%s/%s", src, dir);
    snprintf(dp, sizeof dp, "%s/%s", dst, dir);
    mkdir(dp, 0755);
    int sd = open(sp, O_RDONLY | O_DIRECTORY), dd = open(dp, O_RDONLY | O_DIRECTORY);
    if (sd < 0 || dd < 0) die("open directory", dir);
    DIR *d = fdopendir(dup(sd));
    struct dirent *e;
    int n = 0, cap = 256;
    char (*names)[256] = malloc(sizeof(*names) * cap);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) names = realloc(names, sizeof(*names) * (cap *= 2));
        strcpy(names[n++], e->d_name);
    }
    closedir(d);
    struct stat *st = malloc(sizeof(struct stat) * (n ? n : 1));
    for (int k = 0; k < n; k++)
        if (fstatat(sd, names[k], &st[k], AT_SYMLINK_NOFOLLOW) != 0) die("fstatat", names[k]);
    for (int k = 0; k < n; k++) {
        if (shared && (k / 8) % 2 != me) continue;
        if (!S_ISREG(st[k].st_mode) || st[k].st_size > (1 << 20)) continue;
        int in = openat(sd, names[k], O_RDONLY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC);
        if (in < 0) die("openat source", names[k]);
        flistxattr(in, NULL, 0);
        char tmp[300];
        int out;
        if (tmpfile_mode) {
            out = openat(dd, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, st[k].st_mode & 0777);
        } else {
            snprintf(tmp, sizeof tmp, ".tmp.%s", names[k]);
            out = openat(dd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, st[k].st_mode & 0777);
        }
        if (out < 0) die("create", names[k]);
        ssize_t r = pread(in, buf, st[k].st_size, 0);
        if (r < 0 || pwrite(out, buf, r, 0) != r) die("copy", names[k]);
        struct stat a;
        fstat(in, &a);
        fstat(out, &a);
        struct timespec ts[2] = {st[k].st_atim, st[k].st_mtim};
        futimens(out, ts);
        if (tmpfile_mode ? linkat(out, "", dd, names[k], AT_EMPTY_PATH) : renameat(dd, tmp, dd, names[k]))
            die("link into place", names[k]);
        if (verify) {
            if (pread(out, back, r, 0) != r || memcmp(buf, back, r) != 0) die("verify", names[k]);
            fstat(out, &a);
        }
        close(in);
        close(out);
    }
    free(st);
    free(names);
    close(sd);
    close(dd);
}

static void *worker(void *arg) {
    int me = (int)(long)arg;
    char *buf = aligned_alloc(4096, 1 << 20), *back = aligned_alloc(4096, 1 << 20);
    if (shared) {
        for (int i = 0; i < ndirs; i++) copy_directory(dirs[i], me, buf, back);
    } else {
        for (int i; (i = atomic_fetch_add(&next_dir, 1)) < ndirs;) copy_directory(dirs[i], me, buf, back);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s SRC DST THREADS [VERIFY=1] [TMPFILE=1] [SHARED=0]\n", argv[0]);
        return 2;
    }
    src = argv[1];
    dst = argv[2];
    int threads = atoi(argv[3]);
    if (argc > 4) verify = atoi(argv[4]);
    if (argc > 5) tmpfile_mode = atoi(argv[5]);
    if (argc > 6) shared = atoi(argv[6]);
    if (threads < 1 || threads > 64 || (shared && threads != 2)) {
        fprintf(stderr, "THREADS: 1 to 64 (2 with SHARED=1)\n");
        return 2;
    }
    mkdir(dst, 0755);
    DIR *d = opendir(src);
    if (!d) die("opendir", src);
    struct dirent *e;
    int cap = 1024;
    dirs = malloc(sizeof(char *) * cap);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || e->d_type != DT_DIR) continue;
        if (ndirs == cap) dirs = realloc(dirs, sizeof(char *) * (cap *= 2));
        dirs[ndirs++] = strdup(e->d_name);
    }
    closedir(d);
    pthread_t t[64];
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)(long)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    return 0;
}

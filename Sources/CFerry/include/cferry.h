#ifndef CFERRY_H
#define CFERRY_H
// Thin wrappers over Linux syscalls and constants that Glibc's Swift overlay does not expose.
// _GNU_SOURCE is defined only in cferry.c (defining it here breaks Glibc's fd_set import).
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (plus `extra_resolve`); -1/errno on failure.
int cferry_openat_beneath(int dirfd, const char *path, int flags, unsigned int mode, uint64_t extra_resolve);
/// copy_file_range(2).
ssize_t cferry_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len);
/// fallocate(2).
int cferry_fallocate(int fd, int mode, int64_t offset, int64_t len);
/// renameat2(2) with flags (RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2).
int cferry_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);

extern const int cferry_SEEK_DATA;
extern const int cferry_SEEK_HOLE;
extern const int cferry_O_NOATIME;
extern const int cferry_O_PATH;
extern const int cferry_AT_EMPTY_PATH;
extern const int cferry_O_TMPFILE;
extern const long cferry_UTIME_OMIT;
extern const unsigned int cferry_FICLONE;

uint64_t cferry_makedev(unsigned int major, unsigned int minor);
unsigned int cferry_major(uint64_t dev);
unsigned int cferry_minor(uint64_t dev);

// Extended attributes on a file descriptor (regular files and directories).
ssize_t cferry_flistxattr(int fd, char *list, size_t size);
ssize_t cferry_fgetxattr(int fd, const char *name, void *value, size_t size);
int cferry_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags);
int cferry_fremovexattr(int fd, const char *name);
// Extended attributes by path without following a final symlink (symlinks, devices, FIFOs).
ssize_t cferry_llistxattr(const char *path, char *list, size_t size);
ssize_t cferry_lgetxattr(const char *path, const char *name, void *value, size_t size);
int cferry_lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags);
int cferry_lremovexattr(const char *path, const char *name);
/// getxattr(2), following symlinks (for `/proc/self/fd/N` of an `O_PATH` descriptor).
ssize_t cferry_getxattr(const char *path, const char *name, void *value, size_t size);

// XXH3-128 streaming checksum (libxxhash, inlined).
typedef struct cferry_xxh3 cferry_xxh3;
cferry_xxh3 *cferry_xxh3_create(void);
void cferry_xxh3_reset(cferry_xxh3 *state);
void cferry_xxh3_update(cferry_xxh3 *state, const void *data, size_t len);
void cferry_xxh3_digest(cferry_xxh3 *state, uint64_t *high, uint64_t *low);
void cferry_xxh3_free(cferry_xxh3 *state);
/// XXH3-64 of one buffer (a block's hash in a delta signature).
uint64_t cferry_xxh3_64(const void *data, size_t len);
/// CRC32 (zlib's crc32_z), continuing from `crc` (0 to start).
uint32_t cferry_crc32(uint32_t crc, const void *data, size_t len);
/// Feeds `len` zero bytes (a hole of a sparse file) into the state.
void cferry_xxh3_update_zeros(cferry_xxh3 *state, uint64_t len);

// zstd, one frame per message (FerryRemote's compressed data), with a context per thread.
/// The most bytes compressing `len` bytes can take.
size_t cferry_zstd_bound(size_t len);
/// Compresses `src` into `dst` at `level`: the compressed size, or 0 when it failed or did not fit.
size_t cferry_zstd_compress(void *dst, size_t capacity, const void *src, size_t len, int level);
/// Decompresses one frame into `dst`: the size, or -1 when the frame is bad or larger than `capacity`.
int64_t cferry_zstd_decompress(void *dst, size_t capacity, const void *src, size_t len);

// Block devices and image files (FerryBlock).
/// ioctl(BLKGETSIZE64): the size of a block device in bytes; -1/errno on failure.
int64_t cferry_block_device_size(int fd);
/// ioctl(BLKZEROOUT): zeroes [offset, offset+len) of a block device; -1/errno on failure.
int cferry_block_zeroout(int fd, uint64_t offset, uint64_t len);
/// ioctl(FICLONE): makes `dest` share the extents of `src` (reflink); -1/errno on failure.
int cferry_ficlone(int dest, int src);
/// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): turns a range into a hole.
int cferry_punch_hole(int fd, int64_t offset, int64_t len);

// Counters written from many threads (FerryEngine's ExecutionCounters).
/// The CPU the calling thread runs on (glibc reads it from rseq), 0 if unknown.
int cferry_current_cpu(void);
/// Adds `n` to `*cell` atomically (relaxed: a counter, not a synchronisation).
static inline void cferry_counter_add(int64_t *cell, int64_t n) { __atomic_fetch_add(cell, n, __ATOMIC_RELAXED); }
/// Reads `*cell` atomically (relaxed).
static inline int64_t cferry_counter_load(const int64_t *cell) { return __atomic_load_n(cell, __ATOMIC_RELAXED); }

/// 1 if stdout/stderr descriptor is a terminal.
int cferry_isatty(int fd);
/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
long cferry_raise_nofile(void);

#endif

#define _GNU_SOURCE
#include "cferry.h"
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <linux/openat2.h>
#include <linux/fs.h>
#include <stdio.h>
#include <zlib.h>
#include <zstd.h>
#define XXH_INLINE_ALL
#if defined(__x86_64__)
/* XXH3's AVX-512 and AVX2 accumulators are compiled (for their targets, by function
   attribute) next to the baseline SSE2 one and chosen at run time: the rest of the binary
   stays x86-64 baseline. */
#include <immintrin.h>
#define XXH_DISPATCH_AVX2 1
#define XXH_TARGET_AVX2 __attribute__((__target__("avx2")))
#define XXH_DISPATCH_AVX512 1
#define XXH_TARGET_AVX512 __attribute__((__target__("avx512f")))
#define XXH_ACC_ALIGN 64 /* as xxhash's own x86 dispatcher sets it: AVX-512's loads need it */
#endif
#include "vendor/xxhash.h"

#if defined(__x86_64__)
__attribute__((__target__("avx2"), noinline))
static void xxh3_update_avx2(XXH3_state_t *s, const void *d, size_t n) {
    XXH3_update(s, (const xxh_u8 *)d, n, XXH3_accumulate_512_avx2, XXH3_scrambleAcc_avx2);
}
__attribute__((__target__("avx512f"), noinline))
static void xxh3_update_avx512(XXH3_state_t *s, const void *d, size_t n) {
    XXH3_update(s, (const xxh_u8 *)d, n, XXH3_accumulate_512_avx512, XXH3_scrambleAcc_avx512);
}
static int has_avx2, has_avx512;
/* Once, before main: CPUID and the OS's AVX state (libgcc's cpu model checks XGETBV). */
__attribute__((constructor)) static void detect_vector_units(void) {
    __builtin_cpu_init();
    has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    has_avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0;
}
#endif

/* XXH3-128 update through the fastest accumulator this CPU has (in cache here: SSE2
   8.7 GB/s, AVX2 24-33 GB/s, AVX-512 29-40 GB/s). */
static void xxh3_update(XXH3_state_t *s, const void *d, size_t n) {
#if defined(__x86_64__)
    if (has_avx512) { xxh3_update_avx512(s, d, n); return; }
    if (has_avx2) { xxh3_update_avx2(s, d, n); return; }
#endif
    XXH3_128bits_update(s, d, n);
}

int cferry_openat_beneath(int dirfd, const char *path, int flags, unsigned int mode, uint64_t extra_resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned int)flags | O_CLOEXEC;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | extra_resolve;
    long r;
    do { r = syscall(SYS_openat2, dirfd, path, &how, sizeof how); } while (r < 0 && errno == EINTR);
    return (int)r;
}

ssize_t cferry_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len) {
    return copy_file_range(fd_in, (off64_t *)off_in, fd_out, (off64_t *)off_out, len, 0);
}
int cferry_fallocate(int fd, int mode, int64_t offset, int64_t len) { return fallocate(fd, mode, offset, len); }
int cferry_renameat2(int a, const char *ap, int b, const char *bp, unsigned int flags) {
    return (int)syscall(SYS_renameat2, a, ap, b, bp, flags);
}

const int cferry_SEEK_DATA = SEEK_DATA;
const int cferry_SEEK_HOLE = SEEK_HOLE;
const int cferry_O_NOATIME = O_NOATIME;
const int cferry_O_PATH = O_PATH;
const int cferry_AT_EMPTY_PATH = AT_EMPTY_PATH;
const int cferry_O_TMPFILE = O_TMPFILE;
const long cferry_UTIME_OMIT = UTIME_OMIT;
const unsigned int cferry_FICLONE = FICLONE;

int64_t cferry_block_device_size(int fd) {
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) return -1;
    return (int64_t)size;
}
int cferry_block_zeroout(int fd, uint64_t offset, uint64_t len) {
    uint64_t range[2] = { offset, len };
    return ioctl(fd, BLKZEROOUT, range);
}
int cferry_ficlone(int dest, int src) { return ioctl(dest, FICLONE, src); }
int cferry_punch_hole(int fd, int64_t offset, int64_t len) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
}

uint64_t cferry_makedev(unsigned int ma, unsigned int mi) { return makedev(ma, mi); }
unsigned int cferry_major(uint64_t dev) { return major(dev); }
unsigned int cferry_minor(uint64_t dev) { return minor(dev); }

ssize_t cferry_flistxattr(int fd, char *list, size_t size) { return flistxattr(fd, list, size); }
ssize_t cferry_fgetxattr(int fd, const char *n, void *v, size_t s) { return fgetxattr(fd, n, v, s); }
int cferry_fsetxattr(int fd, const char *n, const void *v, size_t s, int f) { return fsetxattr(fd, n, v, s, f); }
int cferry_fremovexattr(int fd, const char *n) { return fremovexattr(fd, n); }
ssize_t cferry_llistxattr(const char *p, char *list, size_t size) { return llistxattr(p, list, size); }
ssize_t cferry_lgetxattr(const char *p, const char *n, void *v, size_t s) { return lgetxattr(p, n, v, s); }
uint32_t cferry_crc32(uint32_t crc, const void *data, size_t len) { return (uint32_t)crc32_z(crc, data, len); }

static __thread ZSTD_CCtx *cferry_cctx;
static __thread ZSTD_DCtx *cferry_dctx;
size_t cferry_zstd_bound(size_t len) { return ZSTD_compressBound(len); }
size_t cferry_zstd_compress(void *dst, size_t capacity, const void *src, size_t len, int level) {
    if (!cferry_cctx && !(cferry_cctx = ZSTD_createCCtx())) return 0;
    size_t n = ZSTD_compressCCtx(cferry_cctx, dst, capacity, src, len, level);
    return ZSTD_isError(n) ? 0 : n;
}
int64_t cferry_zstd_decompress(void *dst, size_t capacity, const void *src, size_t len) {
    if (!cferry_dctx && !(cferry_dctx = ZSTD_createDCtx())) return -1;
    size_t n = ZSTD_decompressDCtx(cferry_dctx, dst, capacity, src, len);
    return ZSTD_isError(n) ? -1 : (int64_t)n;
}
ssize_t cferry_getxattr(const char *p, const char *n, void *v, size_t s) { return getxattr(p, n, v, s); }
int cferry_lsetxattr(const char *p, const char *n, const void *v, size_t s, int f) { return lsetxattr(p, n, v, s, f); }
int cferry_lremovexattr(const char *p, const char *n) { return lremovexattr(p, n); }

struct cferry_xxh3 { XXH3_state_t state; };
cferry_xxh3 *cferry_xxh3_create(void) {
    cferry_xxh3 *s = NULL;
    if (posix_memalign((void **)&s, 64, sizeof *s) != 0) return NULL;
    XXH3_128bits_reset(&s->state);
    return s;
}
void cferry_xxh3_reset(cferry_xxh3 *s) { XXH3_128bits_reset(&s->state); }
void cferry_xxh3_update(cferry_xxh3 *s, const void *d, size_t n) { xxh3_update(&s->state, d, n); }
void cferry_xxh3_digest(cferry_xxh3 *s, uint64_t *hi, uint64_t *lo) {
    XXH128_hash_t h = XXH3_128bits_digest(&s->state);
    *hi = h.high64; *lo = h.low64;
}
void cferry_xxh3_free(cferry_xxh3 *s) { free(s); }
uint64_t cferry_xxh3_64(const void *d, size_t n) { return XXH3_64bits(d, n); }
static const unsigned char cferry_zero_block[65536];
static void xxh3_update_zero_bytes(XXH3_state_t *st, uint64_t len) {
    while (len > 0) {
        size_t n = len > sizeof cferry_zero_block ? sizeof cferry_zero_block : (size_t)len;
        xxh3_update(st, cferry_zero_block, n);
        len -= n;
    }
}

/* One zero stripe at secret offset `key`: XXH3's accumulate round with input 0 adds nothing
   to the swapped lane and lo32(k) * hi32(k) of its key k to its own lane. */
static void xxh3_add_zero_stripe(xxh_u64 *acc, const xxh_u8 *key) {
    for (size_t lane = 0; lane < XXH_ACC_NB; lane++) {
        xxh_u64 const k = XXH_readLE64(key + 8 * lane);
        acc[lane] += XXH_mult32to64((xxh_u32)k, k >> 32);
    }
}

/* `blocks` whole blocks of zero stripes: each adds the block's constant `block`, then XXH3's
   scramble. Scalar: the scramble is one dependency chain per lane, which vectors only
   lengthen (5.0 ns a block here, 12.9 ns with the AVX2 scramble). */
static void xxh3_zero_blocks(xxh_u64 *acc, const xxh_u64 *block, const xxh_u8 *scrambleKey, uint64_t blocks) {
    for (; blocks > 0; blocks--) {
        for (size_t lane = 0; lane < XXH_ACC_NB; lane++) acc[lane] += block[lane];
        XXH3_scrambleAcc_scalar(acc, scrambleKey);
    }
}

/* Consumes `stripes` zero stripes exactly as XXH3_consumeStripes would, without reading
   any input: within a block the accumulators only gain a per-stripe constant, so a whole
   block is 8 additions and the scramble XXH3 does at every block end (eagerly, as here). */
static void xxh3_consume_zero_stripes(XXH3_state_t *st, uint64_t stripes) {
    const xxh_u8 *secret = st->extSecret == NULL ? st->customSecret : st->extSecret;
    size_t const perBlock = st->nbStripesPerBlock;
    xxh_u64 *acc = st->acc;
    xxh_u64 block[XXH_ACC_NB] = {0};
    for (size_t n = 0; n < perBlock; n++) xxh3_add_zero_stripe(block, secret + n * XXH_SECRET_CONSUME_RATE);
    while (stripes > 0) {
        if (st->nbStripesSoFar == 0 && stripes >= perBlock) {
            uint64_t const blocks = stripes / perBlock;
            xxh3_zero_blocks(acc, block, secret + st->secretLimit, blocks);
            stripes -= blocks * perBlock;
            continue;
        }
        xxh3_add_zero_stripe(acc, secret + st->nbStripesSoFar * XXH_SECRET_CONSUME_RATE);
        stripes--;
        if (++st->nbStripesSoFar == perBlock) {
            st->nbStripesSoFar = 0;
            XXH3_scrambleAcc_scalar(acc, secret + st->secretLimit);
        }
    }
}

/* Feeds `len` zero bytes (a hole) with the same result as hashing them, at a fraction of
   the cost for long runs. 512 zeros go through the normal update first: then everything
   buffered (the buffer and the copy of the stripe before it) is zeros, so whole zero
   stripes can be consumed ahead of the buffered zeros without changing the byte stream;
   at least 512 more zeros go through the normal update after them. */
void cferry_xxh3_update_zeros(cferry_xxh3 *s, uint64_t len) {
    XXH3_state_t *st = &s->state;
    if (len >= 4096) {
        xxh3_update_zero_bytes(st, 512);
        len -= 512;
        uint64_t const stripes = (len - 512) / XXH_STRIPE_LEN;
        xxh3_consume_zero_stripes(st, stripes);
        st->totalLen += stripes * XXH_STRIPE_LEN;
        len -= stripes * XXH_STRIPE_LEN;
    }
    xxh3_update_zero_bytes(st, len);
}

int cferry_isatty(int fd) { return isatty(fd); }
long cferry_raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

int cferry_current_cpu(void) {
    int cpu = sched_getcpu();
    return cpu < 0 ? 0 : cpu;
}

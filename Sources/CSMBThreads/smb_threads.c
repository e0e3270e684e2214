// Samba's thread hooks (lib/util/smb_threads.h, GPL-3.0-or-later, Jeremy Allison 2009):
// the struct layout below matches it; the functions are a plain pthread implementation.
#define _GNU_SOURCE
#include "csmb_threads.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

struct smb_thread_functions {
    int (*create_mutex)(const char *lockname, void **pplock, const char *location);
    void (*destroy_mutex)(void *plock, const char *location);
    int (*lock_mutex)(void *plock, int lock_type, const char *location);
    int (*create_tls)(const char *keyname, void **ppkey, const char *location);
    void (*destroy_tls)(void **pkey, const char *location);
    int (*set_tls)(void *pkey, const void *pval, const char *location);
    void *(*get_tls)(void *pkey, const char *location);
};

static int create_mutex(const char *name, void **lock, const char *location) {
    pthread_mutex_t *m = malloc(sizeof *m);
    if (!m) return -1;
    pthread_mutex_init(m, NULL);
    *lock = m;
    return 0;
}
static void destroy_mutex(void *lock, const char *location) {
    pthread_mutex_destroy(lock);
    free(lock);
}
static int lock_mutex(void *lock, int type, const char *location) {
    return type == 1 ? pthread_mutex_lock(lock) : pthread_mutex_unlock(lock);
}
static int create_tls(const char *name, void **key, const char *location) {
    pthread_key_t *k = malloc(sizeof *k);
    if (!k || pthread_key_create(k, NULL) != 0) { free(k); return -1; }
    *key = k;
    return 0;
}
static void destroy_tls(void **key, const char *location) {
    pthread_key_delete(*(pthread_key_t *)*key);
    free(*key);
    *key = NULL;
}
// Samba asks for a key's value before it creates the key (talloc_stack.c creates it on
// the first miss): a key not made yet holds nothing.
static int set_tls(void *key, const void *value, const char *location) {
    return key ? pthread_setspecific(*(pthread_key_t *)key, value) : -1;
}
static void *get_tls(void *key, const char *location) {
    return key ? pthread_getspecific(*(pthread_key_t *)key) : NULL;
}

static const struct smb_thread_functions functions = {
    create_mutex, destroy_mutex, lock_mutex, create_tls, destroy_tls, set_tls, get_tls,
};

int csmb_threads_posix(void) {
    void *util = dlopen("libsamba-util.so.0", RTLD_NOW | RTLD_NOLOAD);
    if (!util) util = dlopen("libsamba-util.so.0", RTLD_NOW);
    if (!util) return -1;
    int (*set)(const struct smb_thread_functions *) = (int (*)(const struct smb_thread_functions *))dlsym(util, "smb_thread_set_functions");
    if (!set) return -1;
    return set(&functions);
}

// libnfs (Debian's libnfs-dev 4.0): the high-level asynchronous API and the NFSv3
// constants of its READDIRPLUS entries.
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

// What nfs_get_fh returns: libnfs 4.0's own `struct nfs_fh` (libnfs-private.h), which its
// public headers only name.
struct nfs_fh {
    int len;
    char *val;
};

// One SETATTR3 on an open file's handle (no LOOKUP of its path, as libnfs's path-based
// chmod/chown/utimes make for each component): size, owner, mode and times with
// nanoseconds, each set only when asked. Answered through an nfs_cb like libnfs's own
// calls: status 0, or a negative errno with a message.
struct ferry_setattr_call {
    struct nfs_context *nfs;
    nfs_cb cb;
    void *private_data;
};

static void ferry_setattr_done(struct rpc_context *rpc, int status, void *data, void *private_data) {
    struct ferry_setattr_call *call = (struct ferry_setattr_call *)private_data;
    (void)rpc;
    if (status == RPC_STATUS_SUCCESS) {
        SETATTR3res *res = (SETATTR3res *)data;
        if (res->status == NFS3_OK) {
            call->cb(0, call->nfs, NULL, call->private_data);
        } else {
            int e = nfsstat3_to_errno(res->status);
            if (e > 0) e = -e;
            if (e == 0) e = -EIO;
            call->cb(e, call->nfs, nfsstat3_to_str(res->status), call->private_data);
        }
    } else if (status == RPC_STATUS_CANCEL) {
        call->cb(-EINTR, call->nfs, (void *)"Command was cancelled", call->private_data);
    } else {
        call->cb(-EIO, call->nfs, data ? data : (void *)"SETATTR failed", call->private_data);
    }
    free(call);
}

static inline int ferry_nfs3_fsetattr_async(
    struct nfs_context *nfs, struct nfsfh *fh, nfs_cb cb, void *private_data,
    int set_size, uint64_t size, int set_uid, uint32_t uid, int set_gid, uint32_t gid, int set_mode, uint32_t mode,
    int set_atime, uint32_t atime_s, uint32_t atime_ns, int set_mtime, uint32_t mtime_s, uint32_t mtime_ns) {
    struct ferry_setattr_call *call = (struct ferry_setattr_call *)malloc(sizeof *call);
    if (!call) return -1;
    call->nfs = nfs;
    call->cb = cb;
    call->private_data = private_data;
    struct nfs_fh *f = nfs_get_fh(fh);
    SETATTR3args args;
    memset(&args, 0, sizeof args);
    args.object.data.data_len = f->len;
    args.object.data.data_val = f->val;
    args.new_attributes.size.set_it = set_size;
    args.new_attributes.size.set_size3_u.size = size;
    args.new_attributes.uid.set_it = set_uid;
    args.new_attributes.uid.set_uid3_u.uid = uid;
    args.new_attributes.gid.set_it = set_gid;
    args.new_attributes.gid.set_gid3_u.gid = gid;
    args.new_attributes.mode.set_it = set_mode;
    args.new_attributes.mode.set_mode3_u.mode = mode;
    args.new_attributes.atime.set_it = set_atime ? SET_TO_CLIENT_TIME : DONT_CHANGE;
    args.new_attributes.atime.set_atime_u.atime.seconds = atime_s;
    args.new_attributes.atime.set_atime_u.atime.nseconds = atime_ns;
    args.new_attributes.mtime.set_it = set_mtime ? SET_TO_CLIENT_TIME : DONT_CHANGE;
    args.new_attributes.mtime.set_mtime_u.mtime.seconds = mtime_s;
    args.new_attributes.mtime.set_mtime_u.mtime.nseconds = mtime_ns;
    if (rpc_nfs3_setattr_async(nfs_get_rpc_context(nfs), ferry_setattr_done, &args, call) != 0) {
        free(call);
        return -1;
    }
    return 0;
}

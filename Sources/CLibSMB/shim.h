// libsmbclient (Debian's libsmbclient-dev): Samba's SMB 2/3 client library.
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <fcntl.h>
#include <utime.h>
#include <stdint.h>
#include <samba-4.0/libsmbclient.h>

// Samba's cli_setpathinfo_ext (liblibsmb-samba4, loaded with libsmbclient; found with
// dlsym): one SMB2 SET_INFO of a path's basic information — creation, access and write
// times to 100 ns and the DOS attributes together. libsmbclient's own calls set either
// attributes (writing the times back in whole seconds) or times (resetting the attributes).
typedef uint32_t (*ferry_smb_setpathinfo_fn)(void *cli, const char *fname, struct timespec create_time,
                                             struct timespec access_time, struct timespec write_time,
                                             struct timespec change_time, uint32_t attributes);

// The connection (struct cli_state *) of a server libsmbclient holds: SMBCSRV's first member.
static inline void *ferry_smb_server_connection(SMBCSRV *server) { return server ? *(void **)server : 0; }

// libnfs (Debian's libnfs-dev 4.0): the high-level asynchronous API and the NFSv3
// constants of its READDIRPLUS entries.
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>

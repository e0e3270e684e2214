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

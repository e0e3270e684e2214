#pragma once
/// Makes libsmbclient thread-safe: hands Samba's utility library pthread mutexes and
/// thread-local storage (what smbc_thread_posix does; Debian's libsmbclient does not export
/// that function). Returns 0 on success, -1 when the library or its hook is missing.
int csmb_threads_posix(void);

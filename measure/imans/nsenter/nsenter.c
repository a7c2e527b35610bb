// The constructor below runs before the Go runtime starts its threads: the
// only point in a Go program where setns(CLONE_NEWUSER) can succeed, since
// the kernel refuses it to a multithreaded process.
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

// Results read by the Go side: imans_nsenter_state is 0 when nothing was
// asked, 1 when the user and mount namespaces were entered, and the
// negative number of the failed step otherwise (see nsenter_cgo.go).
int imans_nsenter_state;
int imans_nsenter_errno;
int imans_nsenter_uid_errno;

__attribute__((constructor)) static void imans_nsenter(void)
{
	const char *value = getenv("_IMANS_NSENTER_USERNS_FD");
	char *end = NULL;
	long fd;

	if (value == NULL)
		return;

	fd = strtol(value, &end, 10);
	if (*value == '\0' || *end != '\0' || fd < 3 || fd > 1023) {
		imans_nsenter_state = -1;
		imans_nsenter_errno = EBADF;
		return;
	}

	if (setns((int)fd, CLONE_NEWUSER) != 0) {
		imans_nsenter_state = -2;
		imans_nsenter_errno = errno;
		return;
	}
	close((int)fd);

	if (unshare(CLONE_NEWNS) != 0) {
		imans_nsenter_state = -3;
		imans_nsenter_errno = errno;
		return;
	}

	// Become the namespace's root where it is mapped, as the container's
	// own root is; capabilities in the namespace are kept either way.
	setgroups(0, NULL);
	if (setresgid(0, 0, 0) != 0 || setresuid(0, 0, 0) != 0)
		imans_nsenter_uid_errno = errno;

	imans_nsenter_state = 1;
}

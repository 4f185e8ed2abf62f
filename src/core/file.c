/* file.c — read-only memory mapping of whole files (models, external data, engines). */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

kiln_status kiln_file_map(const char *path, const char *what, const void **data, size_t *size) {
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot open '%s': %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kiln_error(KILN_STATUS_IO_ERROR, "%s: '%s' is not a regular file", what, path);
    }
    size_t n = (size_t)st.st_size;
    void *p = NULL;
    if (n > 0) {
        p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            close(fd);
            return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot map '%s': %s", what, path, strerror(err));
        }
    }
    close(fd);
    *data = p;
    *size = n;
    return KILN_STATUS_OK;
}

void kiln_file_unmap(const void *data, size_t size) {
    if (data && size) munmap((void *)data, size);
}

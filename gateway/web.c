/* See web.h. The files are small and read on each request: edits show without a restart. */
#include "web.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "response.h"

#define WEB_FILE_MAX (4u << 20)

static const char *ctype_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    static const char *const map[][2] = {{".html", "text/html; charset=utf-8"},
                                         {".css", "text/css; charset=utf-8"},
                                         {".js", "text/javascript; charset=utf-8"},
                                         {".svg", "image/svg+xml"},
                                         {".png", "image/png"},
                                         {".ico", "image/x-icon"}};
    for (size_t i = 0; dot != NULL && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(dot, map[i][0]) == 0)
            return map[i][1];
    return "application/octet-stream";
}

static void web_dir(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(out, cap, "web");
        return;
    }
    exe[n] = '\0';
    snprintf(out, cap, "%s/../share/framegate/web", dirname(exe));
}

void gw_web_on_file(void *unused, gw_req_t *r)
{
    (void)unused;
    char name[128];
    if (strcmp(r->path, "/") == 0) {
        snprintf(name, sizeof name, "index.html");
    } else {
        size_t len = r->param != NULL ? r->param_len : 0;
        if (len == 0 || len >= sizeof name) {
            gw_respond_error(r, 404, "not_found", "no such file");
            return;
        }
        memcpy(name, r->param, len);
        name[len] = '\0';
        for (size_t i = 0; i < len; i++) {
            char c = name[i];
            int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || (c == '.' && i > 0);
            if (!ok) {
                gw_respond_error(r, 404, "not_found", "no such file");
                return;
            }
        }
    }
    char dir[PATH_MAX], path[PATH_MAX + 160];
    web_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > WEB_FILE_MAX) {
        if (fd >= 0)
            close(fd);
        gw_respond_error(r, 404, "not_found", "no such file (web directory: %s)", dir);
        return;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    while (buf != NULL && got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (buf == NULL || got != n) {
        free(buf);
        gw_respond_error(r, 500, "internal", "cannot read %s", name);
        return;
    }
    gw_respond(r, 200, ctype_of(name), buf, n, "Cache-Control: no-cache\r\n");
}

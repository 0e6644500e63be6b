/* endpoint.c - endpoint syntax checks (tcp, ipc, inproc, file, path), see tb/base/endpoint.h. */
#include "tb/base/endpoint.h"

#include "tb/base/error.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#define EP_USE "use tcp://HOST:PORT, ipc://PATH, inproc://NAME, file://PATH or a file path"

/* Is [s, s+n) an IPv4 address "a.b.c.d" with each part 0..255? */
static int ep_ipv4(const char *s, size_t n)
{
    int parts = 0;
    size_t i = 0;
    while (i < n) {
        unsigned v = 0;
        size_t digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (unsigned)(s[i] - '0');
            if (++digits > 3 || v > 255) return 0;
            i++;
        }
        if (!digits) return 0;
        parts++;
        if (i < n) {
            if (s[i] != '.' || i + 1 == n) return 0;
            i++;
        }
    }
    return parts == 4;
}

static int ep_host_ok(const char *h, size_t n)
{
    if (n == 1 && h[0] == '*') return 1;
    if (n >= 3 && h[0] == '[' && h[n - 1] == ']') {
        for (size_t i = 1; i + 1 < n; i++)
            if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f') || (h[i] >= 'A' && h[i] <= 'F') ||
                  h[i] == ':' || h[i] == '.'))
                return 0;
        return 1;
    }
    int only_digits_dots = 1;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '_'))
            return 0;
        if (!((c >= '0' && c <= '9') || c == '.')) only_digits_dots = 0;
    }
    return n > 0 && (!only_digits_dots || ep_ipv4(h, n));
}

static int ep_check_tcp(const char *ep, const char *rest)
{
    const char *colon = strrchr(rest, ':');
    if (rest[0] == '[') {
        const char *rb = strchr(rest, ']');
        colon = rb && rb[1] == ':' ? rb + 1 : NULL;
    }
    if (!colon)
        return TB_ERR(TB_EINVAL, "'%s' is not an endpoint: no port (write tcp://HOST:PORT, PORT 1..65535 or '*')", ep);
    if (!ep_host_ok(rest, (size_t)(colon - rest)))
        return TB_ERR(TB_EINVAL, "'%s' is not an endpoint: '%.*s' is not a host ('*', a name, an IPv4 address or [IPv6])", ep,
                      (int)(colon - rest), rest);
    const char *port = colon + 1;
    if (strcmp(port, "*") == 0) return TB_OK;
    long v = 0;
    const char *c = port;
    for (; *c >= '0' && *c <= '9' && v <= 65535; c++) v = v * 10 + (*c - '0');
    if (!*port || *c || v < 1 || v > 65535)
        return TB_ERR(TB_EINVAL, "'%s' is not an endpoint: port '%s' is not 1..65535 or '*'", ep, port);
    return TB_OK;
}

static int ep_check_ipc(const char *ep, const char *path)
{
    const size_t cap = sizeof(((struct sockaddr_un *)0)->sun_path);
    if (!*path) return TB_ERR(TB_EINVAL, "'%s' is not an endpoint: no socket path (write ipc:///tmp/NAME)", ep);
    if (strlen(path) >= cap)
        return TB_ERR(TB_EINVAL, "'%s' is not an endpoint: the socket path has %zu bytes, a Unix socket path at most "
                      "%zu; use a shorter path", ep, strlen(path), cap - 1);
    return TB_OK;
}

static int ep_check_path(const char *ep, const char *path)
{
    if (!*path) return TB_ERR(TB_EINVAL, "'%s' is not an endpoint: no file path", ep);
    if (strlen(path) >= PATH_MAX)
        return TB_ERR(TB_EINVAL, "'%.64s...' is not an endpoint: the path has %zu bytes, at most %d are allowed", ep,
                      strlen(path), PATH_MAX - 1);
    return TB_OK;
}

int tb_endpoint_check(const char *ep)
{
    if (!ep || !*ep) return TB_ERR(TB_EINVAL, "'' is not an endpoint: it is empty (" EP_USE ")");
    const char *sep = strstr(ep, "://");
    if (!sep) return ep_check_path(ep, strncmp(ep, "file:", 5) == 0 ? ep + 5 : ep);
    size_t slen = (size_t)(sep - ep);
    const char *rest = sep + 3;
    if (slen == 3 && strncmp(ep, "tcp", 3) == 0) return ep_check_tcp(ep, rest);
    if (slen == 3 && strncmp(ep, "ipc", 3) == 0) return ep_check_ipc(ep, rest);
    if (slen == 4 && strncmp(ep, "file", 4) == 0) return ep_check_path(ep, rest);
    if (slen == 6 && strncmp(ep, "inproc", 6) == 0) {
        if (!*rest) return TB_ERR(TB_EINVAL, "'%s' is not an endpoint: no name (write inproc://NAME)", ep);
        return TB_OK;
    }
    return TB_ERR(TB_EINVAL, "'%s' is not an endpoint: unknown transport '%.*s' (" EP_USE ")", ep, (int)slen, ep);
}

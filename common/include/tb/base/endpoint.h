/* tb/base/endpoint.h - checks an endpoint string before anything binds, connects or opens it.
 *
 *   tcp://HOST:PORT     HOST: '*', a name (letters, digits, '.', '-', '_'), an IPv4 address
 *                       (four numbers 0..255) or [IPv6]; PORT: 1..65535 or '*' (any free port)
 *   ipc://PATH          PATH non-empty and shorter than a Unix socket path (sun_path: 107 bytes)
 *   inproc://NAME       NAME non-empty
 *   file://PATH, file:PATH or a plain PATH: a message file; PATH non-empty, shorter than PATH_MAX
 *   -                   standard input / output where a stage allows it
 * Anything else is refused with a message that quotes the endpoint and says what is wrong.
 */
#ifndef TB_ENDPOINT_H
#define TB_ENDPOINT_H

/* TB_OK, or TB_EINVAL with a message naming `endpoint` and the problem. */
int tb_endpoint_check(const char *endpoint);

#endif

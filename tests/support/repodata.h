/* repodata.h - the data files that the tests read, all shipped in the repository's data/ folder
 * (provenance in data/README.md).
 *
 * Tests name a data file only through tb_test_data("task/file"): the name is relative to data/,
 * never absolute and without "", "." or ".." parts, and the resolved path (symbolic links
 * followed) must lie inside data/ of TB_SOURCE_DIR. Anything else fails the calling test with a
 * message naming the file, so no suite can come to depend on files beside the clone.
 */
#ifndef TB_TEST_REPODATA_H
#define TB_TEST_REPODATA_H

#include <stddef.h>

/* Resolves root/name into out (n bytes, at least PATH_MAX) when name is a plain relative name
 * and the file exists, is readable and resolves inside root. Returns 0, or -1 with the reason
 * in why (wn bytes). */
int tb_test_path_resolve(const char *root, const char *name, char *out, size_t n, char *why, size_t wn);

/* The absolute path of data/<name>, checked as above; a failed check fails the calling test.
 * The string lives in one of 8 static slots, reused in turn: copy it to keep it longer. */
const char *tb_test_data(const char *name);

#endif

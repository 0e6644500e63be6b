/* stages/augment/shipped.h - data files shipped with tinybert-c (the stop-word list, the GloVe
 * subset), found next to the executable rather than at a path fixed when it was compiled.
 *
 * A shipped file REL (e.g. "augment/stopwords-en.txt", its path under data/ in the source tree)
 * is looked for at EXEDIR/../share/tinybert-c/REL, where EXEDIR is the folder of the running
 * executable (/proc/self/exe): in the build tree that is build/share/tinybert-c/ (CMake copies
 * the files there, cmake/shipped-data.cmake), after `cmake --install` PREFIX/share/tinybert-c/. */
#ifndef TB_AUG_SHIPPED_H
#define TB_AUG_SHIPPED_H

#include <stddef.h>

#define TB_SHIPPED_STOPWORDS "augment/stopwords-en.txt"
#define TB_SHIPPED_GLOVE "glove/glove.6B.100d.first2604.txt"

/* The folder shipped files are looked for in (EXEDIR/../share/tinybert-c), into out[cap]. */
int tb_shipped_dir(char *out, size_t cap);

/* The path of shipped file `rel` into out[cap]. TB_ENOTFOUND when it is not there, with a message
 * naming the place looked at, `option` (the option that gives the file instead) and what to do. */
int tb_shipped_find(const char *rel, const char *option, char *out, size_t cap);

#endif

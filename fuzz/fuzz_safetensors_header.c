/* libFuzzer target for tb_st_open (the safetensors header: length, JSON, dtypes, shapes, offsets,
 * layout checks), built and run by scripts/fuzz safetensors SECONDS.
 *
 * The input is a whole .safetensors file. When it opens, every entry must lie inside the data
 * buffer with a byte size that matches dtype x shape, tb_st_find must find each name, and every
 * tensor must read back bit for bit. A failure must leave a message. Anything else aborts. */
#include "fuzz_common.h"

#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/tensor.h"
#include "tb/store/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tb_log_set_level(TB_LOG_QUIET);
    const char *path = fuzz_as_file(data, size);
    tb_st_file f;
    memset(&f, 0, sizeof f);
    tb_err_clear();
    int rc = tb_st_open(&f, path);
    if (rc != TB_OK) {
        fuzz_require(tb_err_msg()[0] != '\0');
        fuzz_require(f.entries == NULL && f.map == NULL);
        return 0;
    }
    for (int i = 0; i < f.count; i++) {
        const tb_st_entry *e = &f.entries[i];
        fuzz_require(e->begin <= e->end && e->end <= f.data_size);
        fuzz_require(tb_st_find(&f, e->name) == e);
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            fuzz_require(e->shape[d] >= 0);
            numel *= e->shape[d];
        }
        fuzz_require((uint64_t)numel * tb_dtype_size(e->dtype) == e->end - e->begin);
        tb_tensor t;
        memset(&t, 0, sizeof t);
        fuzz_require(tb_st_read_tensor(&f, e, &t) == TB_OK);
        fuzz_require(tb_tensor_nbytes(&t) == e->end - e->begin);
        fuzz_require(tb_tensor_nbytes(&t) == 0 || memcmp(t.data, f.data + e->begin, tb_tensor_nbytes(&t)) == 0);
        tb_tensor_free(&t);
    }
    tb_st_close(&f);
    return 0;
}

/* stream_internal.h - private parts of the stream module (wire peek, control messages, the
 * producer and consumer I/O threads). Not a public header: only common/stream*.c include it. */
#ifndef TB_STREAM_INTERNAL_H
#define TB_STREAM_INTERNAL_H

#include "tb/base/outfile.h"
#include "tb/wire/codec.h"
#include "tb/wire/msg.h"
#include "tb/wire/stream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define TB_STREAM_ID_MAX 64   /* stream ids and consumer ids, bytes including the NUL */
#define TB_WIRE_CTL_MAX 1024  /* an encoded control message */

/* The "msg" kinds of the protocol (docs/protocol.md). */
typedef enum tb_wire_kind {
    TB_WIRE_NONE = 0,
    TB_WIRE_HELLO,
    TB_WIRE_CREDIT,
    TB_WIRE_ACK,
    TB_WIRE_BATCH,
    TB_WIRE_END,
    TB_WIRE_HEARTBEAT,
    TB_WIRE_ERROR,
} tb_wire_kind;

const char *tb_wire_kind_name(tb_wire_kind k);

/* The protocol fields of one message, read without decoding its tensors. Strings point into
 * the peeked buffer. */
typedef struct tb_wire_hdr {
    tb_wire_kind kind;
    const char *stream;   size_t stream_len;
    const char *consumer; size_t consumer_len;
    const char *error;    size_t error_len;
    int has_seq;    uint64_t seq;
    int has_count;  uint64_t count;
    int has_credit; int64_t credit;
    int has_resume; uint64_t resume;
    int has_protocol; uint64_t protocol; /* hello, producer heartbeat: TB_PROTOCOL_VERSION */
    int has_total;  uint64_t total;      /* producer heartbeat: the batches the stream will hold */
    int fatal;            /* error: the sender gives up on this stream */
} tb_wire_hdr;

/* Reads the top-level fields of the msgpack map data[0..len). TB_EFORMAT (with the byte
 * offset) on anything that is not a well-formed map with a known "msg". Never reads past len. */
int tb_wire_peek(const void *data, size_t len, tb_wire_hdr *h);

/* Encodes a control message into out[0..TB_WIRE_CTL_MAX); returns its length.
 * Fields with has_* == 0 (or NULL strings) are left out. */
size_t tb_wire_ctl(uint8_t *out, const tb_wire_hdr *h);

/* ---- app thread <-> I/O thread pipe (inproc PAIR) ------------------------------------------ */
enum {
    CMD_BATCH = 1, /* producer app->io: a message (2nd frame); consumer io->app: same */
    CMD_REGEN,     /* producer app->io: a regenerated message (2nd frame) */
    CMD_END,       /* producer app->io: no more messages; consumer io->app: END reached */
    CMD_READY,     /* producer io->app: the expected consumers said hello */
    CMD_ACCEPTED,  /* producer io->app: the last batch is in the retain buffer */
    CMD_NEED,      /* producer io->app: please regenerate message `a` */
    CMD_DONE,      /* producer io->app: every consumer acknowledged everything */
    CMD_FAIL,      /* io->app: the stream failed (status, text) */
    CMD_TOOK,      /* consumer app->io: the application took message `a` */
    CMD_ACK,       /* consumer app->io: acknowledge up to `a` */
    CMD_BAD,       /* consumer app->io: message `a` did not decode (text) */
    CMD_REFUSE,    /* producer app->io: refuse consumer `a` (fatal error with text, dropped) */
    CMD_HELLO,     /* producer io->app: consumer `a` said hello; admit or refuse it (opts.admit) */
    CMD_ADMIT,     /* producer app->io: consumer `a` may be sent messages */
};

typedef struct tb_pipe_cmd {
    int cmd;
    int status;
    uint64_t a;
    char text[768];
} tb_pipe_cmd;

struct tb_stream {
    tb_stream_mode mode;
    int is_file;
    tb_stream_opts o;
    char stream_id[TB_STREAM_ID_MAX];
    char consumer_id[TB_STREAM_ID_MAX];
    char endpoint[512];
    uint64_t next_seq;       /* app side: next sequence number to send / expected */
    int ended;               /* app side: END sent (producer) or reached (consumer) */
    int finished;            /* producer: tb_stream_finish succeeded */
    int failed;              /* app side: sticky failure status (0 = none) */
    char fail_text[768];
    tb_buf buf;              /* encoding buffer (file producer) */

    /* file transport */
    FILE *f;                 /* reader: the file; writer: out.f */
    tb_outfile out;          /* writer: PATH.tmp-<pid>, renamed to PATH by finish */
    uint64_t file_size, file_off;

    /* ZeroMQ transport */
    void *ctx;
    void *app;               /* app end of the pipe */
    void *io_sock;           /* I/O end of the pipe (the I/O thread closes it) */
    pthread_t thread;
    int thread_started;
    atomic_int quit;         /* app asks the I/O thread to stop */
    atomic_int quit_status;  /* why: 0 after a clean finish / END, else a tb_status */
    char quit_reason[512];   /* producer: the application's error, told to consumers ("" = none);
                              * written before quit is set, read by the I/O thread after */
    int ready;               /* producer: CMD_READY seen */
    int inflight;            /* producer: a batch waits for CMD_ACCEPTED */
    int done;                /* producer: CMD_DONE seen */
    tb_msg hello;            /* consumer: application hello fields (owned copy) */
    atomic_ullong announced; /* consumer: the producer's announced total + 1 (0: none yet); set by
                              * the I/O thread before it forwards any batch */

    pthread_mutex_t mu;      /* guards stats and peers_hello */
    tb_stream_stats stats;
    int npeers;
    char (*peer_ids)[TB_STREAM_ID_MAX];
    tb_buf *peer_hellos;     /* encoded hellos, for tb_stream_consumer_hello */
    char *peer_active;       /* 1 from its hello until it is refused or dropped */
};

/* The inproc pipe between the application and I/O threads (stream.c). */
int tb_stream_pipe_send(void *sock, const tb_pipe_cmd *c, void *zmsg /* zmq_msg_t* or NULL */);
/* Receives a command (and its message frame into zmsg when it has one; zmsg is then
 * initialised). Returns 1 when a message frame came, 0 when not, -1 on error. */
int tb_stream_pipe_recv(void *sock, tb_pipe_cmd *c, void *zmsg);
int64_t tb_stream_now_ms(void);

/* I/O threads (stream_producer.c, stream_consumer.c). */
void *tb_stream_producer_main(void *arg);
void *tb_stream_consumer_main(void *arg);

/* File transport (stream_file.c). */
int tb_stream_file_open(tb_stream *s, const char *path);
int tb_stream_file_send(tb_stream *s, tb_msg *m, uint64_t *seq);
int tb_stream_file_finish(tb_stream *s);
int tb_stream_file_recv(tb_stream *s, tb_msg *out);
/* The count of a message file's END record, read from the file's last 32 bytes (checksums
 * checked; the records themselves are checked as they are read). */
int tb_stream_file_count(tb_stream *s, uint64_t *out);
void tb_stream_file_close(tb_stream *s);

#endif

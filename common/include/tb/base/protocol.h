/* tb/base/protocol.h - the version of the stream protocol (docs/protocol.md).
 *
 * It travels in every hello (field "protocol"), in the producer's first heartbeat to each
 * consumer, and in every stage's --describe ("protocol"); peers of another version refuse each
 * other with a message naming both versions. Raise it with every incompatible change of
 * docs/protocol.md, together with python/tinybert_stage (PROTOCOL_VERSION).
 */
#ifndef TB_PROTOCOL_H
#define TB_PROTOCOL_H

#define TB_PROTOCOL_VERSION 1

#endif

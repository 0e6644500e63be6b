"""tinybert_stage: write a tinybert-c stage in Python (docs/protocol.md, python/README.md).

Plain pyzmq + msgpack + msgpack-numpy + numpy; nothing else.
"""
from .protocol import PROTOCOL_VERSION, config_hash, fnv1a64, text_message
from .stream import Consumer, EndOfStream, Options, Producer, StreamError, decode, encode
from .msgfile import Reader, Writer, crc32c
from .stage import BATCH_PORT, FEATURE_PORT, TEXT_PORT, Opt, Port, Stage

__all__ = ["PROTOCOL_VERSION", "config_hash", "fnv1a64", "text_message", "Consumer", "EndOfStream", "Options", "Producer",
           "StreamError", "decode", "encode", "Reader", "Writer", "crc32c", "BATCH_PORT", "FEATURE_PORT", "TEXT_PORT", "Opt",
           "Port", "Stage"]

"""Peers for tests/integration/test_python_kit.c: the kit in both roles against C peers, and a
rogue peer that breaks the protocol on purpose.

    kit_peer.py produce EP N [consumers] [policy] [retain]
        a kit Producer sending N pattern messages (x = full((2, 3), seq) as <f4, tag = "m<seq>")
    kit_peer.py consume EP ID N [resume] [die_after] [sleep_ms]
        a kit Consumer (manual acks): checks that messages resume..N-1 arrive once, in order, with
        the pattern content, and that END says N. die_after > 0: acknowledge up to seq
        die_after - 1, then SIGKILL itself on receiving message die_after (a crash).
    kit_peer.py rogue EP
        a raw DEALER against a producer: a message without hello, a hello without / with another
        protocol version, a hello whose consumer differs from the routing id, bytes that are not
        msgpack; each must get an error saying so. Exit 0 when every answer is as documented.
    kit_peer.py rogue-producer EP
        a raw ROUTER against a consumer: after the hello it sends bytes that are not msgpack (the
        consumer must answer with a non-fatal error), batch 0 then batch 2 (a gap: the consumer must
        say "expected message 1, got message 2" and say hello again with resume 1), then batches 1
        and 2 and END 3, which the consumer must confirm with a heartbeat carrying count 3.
Exit status 0 when everything matched; the reason on stderr otherwise.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import msgpack  # noqa: E402
import numpy as np  # noqa: E402
import zmq  # noqa: E402

from tinybert_stage import Consumer, Producer, StreamError, decode  # noqa: E402


def pattern(seq):
    return {"x": np.full((2, 3), seq, dtype="<f4"), "tag": "m%d" % seq}


def produce(ep, n, consumers=1, policy="fail", retain=64):
    p = Producer(ep, consumers=int(consumers), policy=policy, retain_max=int(retain), peer_timeout_ms=2000,
                 heartbeat_ms=200, dead_wait_ms=30000, hello_timeout_ms=30000, announce_count=int(n))
    try:
        for i in range(int(n)):
            p.send(pattern(i))
        p.finish()
    except StreamError as e:
        p.close(str(e))
        sys.exit("producer: %s" % e)
    peak = p.io.stats
    p.close()
    sys.stderr.write("producer: sent %d, stats %r\n" % (int(n), peak))
    return 0


def consume(ep, cid, n, resume=0, die_after=0, sleep_ms=0):
    n, resume, die_after, sleep_ms = int(n), int(resume), int(die_after), int(sleep_ms)
    c = Consumer(ep, consumer_id=cid, resume_from=resume, manual_ack=True, peer_timeout_ms=5000, heartbeat_ms=200,
                 credit=4)
    want = resume
    try:
        for m in c:
            if m["seq"] != want:
                sys.exit("%s: got message %d, expected %d" % (cid, m["seq"], want))
            if want == resume and c.announced_count() != n:
                sys.exit("%s: the producer announced %r messages, expected %d" % (cid, c.announced_count(), n))
            if m["tag"] != "m%d" % want or not np.array_equal(m["x"], pattern(want)["x"]):
                sys.exit("%s: message %d has the wrong content" % (cid, want))
            if die_after and want == die_after:
                os.kill(os.getpid(), signal.SIGKILL)
            if not die_after or want < die_after:
                c.ack(want)
            want += 1
            if sleep_ms:
                time.sleep(sleep_ms / 1000)
    except StreamError as e:
        sys.exit("%s: %s" % (cid, e))
    c.close()
    if want != n or c.count != n:
        sys.exit("%s: stream ended after %d messages (END says %r), expected %d" % (cid, want, c.count, n))
    sys.stderr.write("%s: received %d..%d and END %d\n" % (cid, resume, n - 1, n))
    return 0


def rogue(ep):
    ctx = zmq.Context()
    failures = []

    def ask(rid, data, want, fatal=True):
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.ROUTING_ID, rid)
        d.setsockopt(zmq.LINGER, 0)
        d.connect(ep)
        d.send(data)
        deadline = time.time() + 10
        while time.time() < deadline:
            if not d.poll(500):
                continue
            m = decode(d.recv())
            if m.get("msg") != "error":
                continue
            if want not in m.get("error", "") or bool(m.get("fatal")) != fatal:
                failures.append("%r: got error %r (fatal %r), want %r (fatal %r)"
                                % (rid, m.get("error"), m.get("fatal"), want, fatal))
            d.close()
            return
        failures.append("%r: no error within 10 s (want %r)" % (rid, want))
        d.close()

    def pack(**kw):
        kw.setdefault("stream", "main")
        return msgpack.packb(kw, use_bin_type=True)

    ask(b"r-nohello", pack(msg="credit", consumer="r-nohello", credit=1), "send hello first")
    ask(b"r-noversion", pack(msg="hello", consumer="r-noversion", resume=0, credit=1),
        "this producer speaks protocol 1")
    ask(b"r-v2", pack(msg="hello", consumer="r-v2", resume=0, credit=1, protocol=2),
        "consumer speaks protocol 2, this producer protocol 1")
    ask(b"r-idA", pack(msg="hello", consumer="r-idB", resume=0, credit=1, protocol=1),
        "hello says consumer 'r-idB' but the connection's routing id is 'r-idA'")
    ask(b"r-garbage", b"\xc1\xc1 not msgpack", "malformed message", fatal=False)
    ask(b"r-nomsg", pack(consumer="r-nomsg"), "malformed message", fatal=False)
    ctx.term()
    if failures:
        sys.exit("rogue: " + "; ".join(failures))
    sys.stderr.write("rogue: every violation got the documented error\n")
    return 0


def rogue_producer(ep):
    ctx = zmq.Context()
    r = ctx.socket(zmq.ROUTER)
    r.setsockopt(zmq.LINGER, 1000)
    r.bind(ep)

    def expect(pred, what, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not r.poll(200):
                continue
            rid, data = r.recv_multipart()
            m = decode(data)
            if pred(m):
                return rid, m
        sys.exit("rogue-producer: no %s within %d s" % (what, timeout))

    def send(rid, **kw):
        kw.setdefault("stream", "main")
        r.send_multipart([rid, msgpack.packb(kw, default=__import__("msgpack_numpy").encode, use_bin_type=True)])

    rid, h = expect(lambda m: m.get("msg") == "hello", "hello")
    if h.get("protocol") != 1 or h.get("consumer", "").encode() != rid or h.get("resume") != 0:
        sys.exit("rogue-producer: hello %r from %r" % (h, rid))
    send(rid, msg="heartbeat", protocol=1, total=3)
    r.send_multipart([rid, b"\xc1\xc1 not msgpack"])
    _, e = expect(lambda m: m.get("msg") == "error", "error about the malformed message")
    if "malformed" not in e.get("error", "") or e.get("fatal"):
        sys.exit("rogue-producer: answer to garbage: %r" % e)
    send(rid, msg="batch", seq=0, **pattern(0))
    send(rid, msg="batch", seq=2, **pattern(2))
    _, e = expect(lambda m: m.get("msg") == "error", "error about the gap")
    if "expected message 1, got message 2" not in e.get("error", ""):
        sys.exit("rogue-producer: answer to a gap: %r" % e)
    _, h = expect(lambda m: m.get("msg") == "hello", "a new hello after the gap")
    if h.get("resume") != 1:
        sys.exit("rogue-producer: the hello after the gap says resume %r, not 1" % h.get("resume"))
    send(rid, msg="batch", seq=1, **pattern(1))
    send(rid, msg="batch", seq=2, **pattern(2))
    send(rid, msg="end", seq=3, count=3)
    expect(lambda m: m.get("msg") == "heartbeat" and m.get("count") == 3, "END confirmation")
    r.close()
    ctx.term()
    sys.stderr.write("rogue-producer: the consumer answered garbage, a gap and END as documented\n")
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"produce": produce, "consume": consume, "rogue": rogue, "rogue-producer": rogue_producer}[cmd](*args))

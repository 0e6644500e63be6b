"""Lossless message streams over ZeroMQ, as in docs/protocol.md: a Producer (ROUTER, fan-out to
every consumer under credit, retain buffer or regeneration, END with the count, heartbeats,
dead-consumer policies) and a Consumer (DEALER, hello, credit, acks, exactly-once in-order
delivery, resume, heartbeats stating its position).

Each stream runs an I/O thread that owns the socket, so heartbeats go out while the application
is busy (a PyTorch forward releases the GIL). The application talks to it through queues.
Errors are raised as StreamError(status, text) with the status names of the C side (EPEER,
ETIMEOUT, EINVAL, EFORMAT). The file transport ("file:PATH" or a plain path) is msgfile.py.
"""
import os
import queue
import threading
import time

import msgpack
import msgpack_numpy
import numpy as np
import zmq

from . import msgfile
from .protocol import CREDIT_MAX, ID_MAX, KINDS, PROTOCOL_VERSION


class StreamError(Exception):
    """A stream failed. status: "EPEER", "ETIMEOUT", "EINVAL", "EFORMAT", "EINTR" or "EIO"."""

    def __init__(self, status, text):
        super().__init__("%s: %s" % (status, text))
        self.status = status
        self.text = text


class EndOfStream(Exception):
    """Consumer.recv after the last message; .count is the END count."""

    def __init__(self, count):
        super().__init__("end of stream after %d messages" % count)
        self.count = count


def now_ms():
    return int(time.monotonic() * 1000)


def encode(m):
    """A message map as one msgpack frame (tensors as msgpack-numpy)."""
    return msgpack.packb(m, default=msgpack_numpy.encode, use_bin_type=True)


def decode(data):
    """One frame -> dict with str keys (tensors as numpy arrays)."""
    m = msgpack.unpackb(data, object_hook=msgpack_numpy.decode, raw=False, strict_map_key=False)
    if not isinstance(m, dict):
        raise StreamError("EFORMAT", "message is not a msgpack map")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in m.items()}


def peek(data):
    """Decodes a protocol message and checks its protocol fields (docs/protocol.md section 2).
    Raises StreamError("EFORMAT", what) for anything out of protocol."""
    try:
        m = decode(data)
    except StreamError:
        raise
    except Exception as e:  # msgpack raises several kinds
        raise StreamError("EFORMAT", "not a msgpack map (first byte 0x%02x): %s"
                          % (data[0] if data else 0, str(e) or type(e).__name__))
    kind = m.get("msg")
    if not isinstance(kind, str):
        raise StreamError("EFORMAT", "message has no \"msg\" field (%s)" % ", ".join(KINDS))
    if kind not in KINDS:
        raise StreamError("EFORMAT", "unknown message kind \"%s\"" % kind[:32])
    if not isinstance(m.get("stream"), str):
        raise StreamError("EFORMAT", "%s message has no \"stream\" field" % kind)
    for key in ("seq", "count", "resume", "credit", "protocol", "total", "fatal"):
        if key in m:
            v = m[key]
            if isinstance(v, bool) and key == "fatal":
                v = int(v)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise StreamError("EFORMAT", "field '%s' must be an integer >= 0" % key)
    if "credit" in m and m["credit"] > CREDIT_MAX:
        raise StreamError("EFORMAT", "field 'credit' = %d is above the limit 2^20" % m["credit"])
    for key in ("consumer", "error"):
        if key in m and not isinstance(m[key], str):
            raise StreamError("EFORMAT", "field '%s' must be a string" % key)
    need = {"batch": "seq", "ack": "seq", "end": "count", "credit": "credit"}.get(kind)
    if need and need not in m:
        raise StreamError("EFORMAT", "%s message has no \"%s\" field" % (kind, need))
    return m


def is_zmq_endpoint(ep):
    return ep.startswith("tcp://") or ep.startswith("ipc://")


class Options:
    """The settings of docs/protocol.md section 5 (same names and defaults as tb_stream_opts)."""

    def __init__(self, **kw):
        self.stream_id = "main"
        self.heartbeat_ms = 500
        self.peer_timeout_ms = 10000
        self.linger_ms = 1000
        self.hwm = 32
        # producer
        self.consumers = 1
        self.hello_timeout_ms = 30000
        self.retain_max = 64
        self.policy = "fail"  # fail | drop | wait
        self.dead_wait_ms = 60000
        self.finish_timeout_ms = 60000
        self.regen = None  # regen(seq) -> dict: rebuild message seq (application thread)
        # admit(consumer_id, hello) -> None to admit, or the reason to refuse (application thread,
        # inside wait_consumers/send/finish); the consumer is sent nothing before it returns
        self.admit = None
        # > 0: the batches the stream will hold, announced in every consumer's welcome ("total")
        self.announce_count = 0
        # consumer
        self.consumer_id = "c%d" % os.getpid()
        self.credit = 4
        self.resume_from = 0
        self.hello = None  # dict of application fields for the hello
        self.manual_ack = False
        for k, v in kw.items():
            if not hasattr(self, k):
                raise TypeError("unknown stream option %r" % k)
            setattr(self, k, v)


class _IO:
    """The I/O thread of a stream: owns the socket; app <-> io through two queues."""

    def __init__(self, opts):
        self.o = opts
        self.ctx = zmq.Context()
        self.to_io = queue.Queue()
        self.to_app = queue.Queue()
        self.quit = threading.Event()
        self.failed = None  # (status, text), sticky
        self.thread = None
        self.quit_reason = None  # producer closing on an error: told to consumers

    def start(self):
        self.thread = threading.Thread(target=self._run_guarded, daemon=True)
        self.thread.start()

    def _run_guarded(self):
        try:
            self.run()
        except Exception as e:  # a bug in the kit must not leave the application waiting
            self.fail("EIO", "stream I/O thread: %r" % e)

    def fail(self, status, text):
        if self.failed:
            return
        self.failed = (status, text)
        self.log("error", text)
        self.to_app.put(("fail", status, text))

    def log(self, level, text):
        import sys
        sys.stderr.write("[tinybert_stage] %s: stream %s: %s\n" % (level, self.o.stream_id, text))

    def stop(self):
        self.quit.set()
        if self.thread:
            self.thread.join()
        self.ctx.term()


# ---- producer ---------------------------------------------------------------------------------

LIVE, DEAD, DROPPED = "live", "dead", "dropped"


class _Peer:
    def __init__(self, pid):
        self.id = pid
        self.state = LIVE
        self.credit = 0
        self.next = 0
        self.acked = 0
        self.window = 0
        self.end_sent = False
        self.end_seen = False
        self.end_sent_at = 0
        self.last_seen = self.last_hb = self.dead_since = 0
        self.stall_at = 0
        self.stall_since = 0
        self.hello = {}
        self.admitted = True


class _ProducerIO(_IO):
    def __init__(self, endpoint, opts):
        super().__init__(opts)
        self.endpoint = endpoint
        self.peers = {}  # id bytes -> _Peer, in join order
        self.ring = {}  # seq -> bytes, [base, head)
        self.base = self.head = 0
        self.pending = None
        self.ready = False
        self.ended = False
        self.end_count = 0
        self.t_open = now_ms()
        self.t_end = 0
        self.regen_out = False
        self.done_sent = False
        self.lock = threading.Lock()  # guards hellos
        self.hellos = []  # (id str, hello dict, active)
        self.anon_warned = set()
        self.stats = {"sent": 0, "dropped": 0, "errors_sent": 0, "regenerated": 0}

    # -- sending
    def route(self, pid, data):
        try:
            self.sock.send_multipart([pid, data], flags=zmq.DONTWAIT)
            return True
        except zmq.ZMQError:  # EAGAIN (pipe full) or EHOSTUNREACH (not connected): retry later
            return False

    def ctl(self, pid, kind, **fields):
        m = {"msg": kind, "stream": self.o.stream_id}
        m.update(fields)
        return self.route(pid, encode(m))

    def send_error(self, pid, fatal, text):
        self.log("warn", "to consumer '%s': %s" % (pid.decode(errors="replace"), text))
        f = {"error": text[:255]}
        if fatal:
            f["fatal"] = 1
        self.ctl(pid, "error", **f)
        self.stats["errors_sent"] += 1

    # -- peers
    def holds(self, c):
        return c.state == LIVE or (c.state == DEAD and not self.o.regen)

    def advance_base(self):
        nb = self.head
        for c in self.peers.values():
            if self.holds(c):
                nb = min(nb, c.next if self.o.regen else c.acked)
        while self.base < nb:
            self.ring.pop(self.base, None)
            self.base += 1

    def accept_pending(self):
        if self.pending is None or not self.ready or self.failed:
            return
        if self.head - self.base >= self.o.retain_max:
            return
        self.ring[self.head] = self.pending
        self.pending = None
        self.head += 1
        self.to_app.put(("accepted", self.head - 1))

    def set_active(self, pid, active):
        with self.lock:
            for i, (hid, h, _) in enumerate(self.hellos):
                if hid == pid.decode(errors="replace"):
                    self.hellos[i] = (hid, h, active)

    def peer_gone(self, c, why):
        if self.o.policy == "fail":
            self.fail("EPEER", "consumer '%s' %s at message %d (acknowledged < %d); the dead-peer policy "
                      "is 'fail' (choose 'drop' or 'wait' to go on without it)"
                      % (c.id.decode(errors="replace"), why, c.next, c.acked))
            return
        if self.o.policy == "drop":
            self.log("warn", "consumer '%s' %s at message %d: dropped, going on with the others"
                     % (c.id.decode(errors="replace"), why, c.next))
            c.state = DROPPED
            self.set_active(c.id, False)
        else:
            self.log("warn", "consumer '%s' %s at message %d: waiting up to %d ms for it to come back"
                     % (c.id.decode(errors="replace"), why, c.next, self.o.dead_wait_ms))
            c.state = DEAD
            c.dead_since = now_ms()
        self.advance_base()

    def holding(self):
        return sum(1 for c in self.peers.values() if c.state in (LIVE, DEAD))

    def on_hello(self, pid, m):
        o = self.o
        resume = m.get("resume", 0)
        credit = m.get("credit", 1)
        limit = self.end_count if self.ended else self.head
        if len(pid) > ID_MAX:
            return self.send_error(pid, 1, "consumer id is longer than %d bytes" % ID_MAX)
        if "protocol" not in m:
            return self.send_error(pid, 1, "hello without a \"protocol\" field: this producer speaks "
                                   "protocol %d" % PROTOCOL_VERSION)
        if m["protocol"] != PROTOCOL_VERSION:
            return self.send_error(pid, 1, "consumer speaks protocol %d, this producer protocol %d"
                                   % (m["protocol"], PROTOCOL_VERSION))
        if m.get("consumer", "").encode() != pid:
            return self.send_error(pid, 1, "hello says consumer '%s' but the connection's routing id is '%s': "
                                   "set ZMQ_ROUTING_ID to the consumer id"
                                   % (m.get("consumer", "")[:64], pid.decode(errors="replace")))
        if resume > limit:
            return self.send_error(pid, 1, "cannot resume from message %d: only %d were produced so far"
                                   % (resume, limit))
        if resume < self.base and not o.regen:
            return self.send_error(pid, 1, "cannot resume from message %d: the oldest message kept is %d "
                                   "(retain_max %d); give the producer a regenerate callback or a larger "
                                   "retain_max" % (resume, self.base, o.retain_max))
        c = self.peers.get(pid)
        name = pid.decode(errors="replace")
        if c is None:
            c = _Peer(pid)
            self.peers[pid] = c
            with self.lock:
                self.hellos.append((name, m, True))
            self.log("info", "consumer '%s' joined (resume from %d, credit %d)" % (name, resume, credit))
        else:
            self.log("info", "consumer '%s' said hello again (resume from %d, credit %d)" % (name, resume, credit))
            with self.lock:
                for i, (hid, _, _) in enumerate(self.hellos):
                    if hid == name:
                        self.hellos[i] = (name, m, True)
        c.state = LIVE
        c.admitted = o.admit is None
        if o.admit is not None:
            self.to_app.put(("hello", name))
        c.next = c.acked = resume
        c.credit = c.window = credit
        c.end_sent = c.end_seen = False
        c.stall_since = 0
        c.last_seen = c.last_hb = now_ms()
        if o.announce_count > 0:
            self.ctl(pid, "heartbeat", protocol=PROTOCOL_VERSION, total=o.announce_count)
        else:
            self.ctl(pid, "heartbeat", protocol=PROTOCOL_VERSION)
        if not self.ready and len(self.peers) >= o.consumers:  # a refused one counts: the others are served
            self.ready = True
            self.to_app.put(("ready",))

    def on_heartbeat(self, c, m):
        o = self.o
        t = now_ms()
        if "seq" in m and m["seq"] < c.next and m["seq"] + 1 > c.acked:
            c.acked = m["seq"] + 1
            self.advance_base()
        if "resume" not in m or "credit" not in m or m["resume"] > c.next:
            return
        in_flight = c.next - m["resume"]
        c.credit = max(m["credit"] - in_flight, 0)
        if in_flight == 0:
            c.stall_since = 0
        elif not c.stall_since or c.stall_at != m["resume"]:
            c.stall_at = m["resume"]
            c.stall_since = t
        elif t - c.stall_since > o.peer_timeout_ms:
            if m["resume"] < self.base and not o.regen:
                return self.peer_gone(c, "lost messages from %d on, which are no longer kept" % m["resume"])
            self.log("warn", "consumer '%s' still waits for message %d: sending again from there"
                     % (c.id.decode(errors="replace"), m["resume"]))
            c.next = m["resume"]
            c.credit = m["credit"]
            c.end_sent = False
            c.stall_since = 0
        if self.ended and m.get("count") == self.end_count and m["resume"] == self.end_count:
            c.end_seen = True
        if (self.ended and c.end_sent and "count" not in m and m["resume"] == self.end_count
                and t - c.end_sent_at > o.peer_timeout_ms):
            c.end_sent = False

    def on_peer_msg(self, pid, data):
        if not pid or pid[0] == 0:  # a routing id made up by ZeroMQ
            try:
                m = peek(data)
            except StreamError:
                m = {"msg": "malformed message"}
            if m["msg"] == "hello":
                self.send_error(pid, 1, "a consumer must connect with its consumer id as ZMQ_ROUTING_ID "
                                "(a stale connection replaced by a newer one with the same id gets this too)")
            elif pid not in self.anon_warned:
                self.anon_warned.add(pid)
                self.log("warn", "ignoring '%s' from a connection without a consumer id (a peer that did not "
                         "set ZMQ_ROUTING_ID and say hello, or a stale connection of a consumer that "
                         "reconnected)" % m["msg"])
            return
        try:
            m = peek(data)
        except StreamError as e:
            return self.send_error(pid, 0, "malformed message (%d bytes): %s" % (len(data), e.text))
        if m["stream"] != self.o.stream_id:
            return self.send_error(pid, 1, "this producer serves stream '%s', not '%s'"
                                   % (self.o.stream_id, m["stream"][:64]))
        kind = m["msg"]
        if kind == "hello":
            return self.on_hello(pid, m)
        c = self.peers.get(pid)
        if c is None:
            return self.send_error(pid, 1, "unknown consumer '%s' sent '%s': send hello first"
                                   % (pid.decode(errors="replace")[:64], kind))
        if c.state == DROPPED:
            return self.send_error(pid, 1, "consumer '%s' was dropped by the dead-peer policy"
                                   % pid.decode(errors="replace"))
        c.last_seen = now_ms()
        if c.state == DEAD:
            self.log("info", "consumer '%s' answers again" % pid.decode(errors="replace"))
            c.state = LIVE
        if kind == "credit":
            c.credit = min(c.credit + m["credit"], CREDIT_MAX)
        elif kind == "ack":
            if m["seq"] >= c.next:
                self.send_error(pid, 0, "ack for message %d, which was not sent yet (next is %d)"
                                % (m["seq"], c.next))
            elif m["seq"] + 1 > c.acked:
                c.acked = m["seq"] + 1
                self.advance_base()
        elif kind == "heartbeat":
            self.on_heartbeat(c, m)
        elif kind == "error":
            self.log("warn", "consumer '%s' reports: %s" % (pid.decode(errors="replace"), m.get("error", "")[:512]))
            if m.get("fatal") and not self.peer_done(c):
                self.peer_gone(c, "left")
        else:
            self.send_error(pid, 0, "message kind '%s' is not valid from a consumer" % kind)

    def peer_done(self, c):
        return self.ended and c.end_seen and c.acked >= self.end_count

    def drain_socket(self):
        for _ in range(1024):
            try:
                frames = self.sock.recv_multipart(flags=zmq.DONTWAIT)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            if len(frames) > 2:
                self.send_error(frames[0], 0, "message has %d frames; the protocol sends one msgpack map"
                                % (len(frames) - 1))
                continue
            self.on_peer_msg(frames[0], frames[1])

    def drain_app(self):
        while True:
            try:
                cmd = self.to_io.get_nowait()
            except queue.Empty:
                return
            if cmd[0] == "batch":
                self.pending = cmd[2]
                self.accept_pending()
            elif cmd[0] == "regen":
                self.on_regen(cmd[1], cmd[2])
            elif cmd[0] == "end":
                self.ended = True
                self.end_count = cmd[1]
                self.t_end = now_ms()
            elif cmd[0] == "admit":
                c = self.peers.get(cmd[1])
                if c:
                    c.admitted = True
            elif cmd[0] == "refuse":
                c = self.peers.get(cmd[1])
                if c and c.state != DROPPED:
                    self.send_error(c.id, 1, "refused: %s" % cmd[2])
                    c.state = DROPPED
                    self.set_active(c.id, False)
                    self.advance_base()

    def on_regen(self, seq, data):
        self.regen_out = False
        for c in self.peers.values():
            if c.state == LIVE and c.admitted and c.next == seq and c.credit > 0 and self.route(c.id, data):
                c.credit -= 1
                c.next += 1

    def pump(self):
        if not self.ready or self.failed:
            return
        t = now_ms()
        for c in self.peers.values():
            if c.state != LIVE or not c.admitted:
                continue
            while c.credit > 0 and c.next < self.head:
                if c.next < self.base:
                    if not self.regen_out:
                        self.regen_out = True
                        self.to_app.put(("need", c.next))
                    break
                if not self.route(c.id, self.ring[c.next]):
                    break
                c.credit -= 1
                c.next += 1
                c.last_hb = t
            if self.ended and c.next == self.end_count and not c.end_sent:
                if self.ctl(c.id, "end", seq=self.end_count, count=self.end_count):
                    c.end_sent = True
                    c.end_sent_at = t
        self.advance_base()
        self.accept_pending()

    def check_done(self):
        if not self.ended or self.done_sent or self.failed or self.pending is not None:
            return
        done = 0
        for c in self.peers.values():
            if c.state == DROPPED:
                continue
            if c.state == DEAD or not self.peer_done(c):
                return
            done += 1
        if done == 0 and self.o.consumers > 0:
            return
        self.done_sent = True
        self.to_app.put(("done",))

    def timers(self):
        o = self.o
        t = now_ms()
        if self.failed:
            return
        if not self.ready and t - self.t_open > o.hello_timeout_ms:
            return self.fail("ETIMEOUT", "only %d of %d consumers said hello within %d ms on %s; start the "
                             "consumers or raise the hello timeout"
                             % (self.holding(), o.consumers, o.hello_timeout_ms, self.endpoint))
        for c in self.peers.values():
            if self.failed:
                return
            if c.state == LIVE and not self.peer_done(c) and t - c.last_seen > o.peer_timeout_ms:
                self.peer_gone(c, "was silent for %d ms" % (t - c.last_seen))
            elif c.state == DEAD and t - c.dead_since > o.dead_wait_ms:
                return self.fail("ETIMEOUT", "consumer '%s' did not come back within %d ms (dead-peer policy "
                                 "'wait'); it stopped at message %d"
                                 % (c.id.decode(errors="replace"), o.dead_wait_ms, c.acked))
            if c.state == LIVE and t - c.last_hb >= o.heartbeat_ms:
                self.ctl(c.id, "heartbeat")
                c.last_hb = t
        if self.ready and o.consumers > 0 and self.holding() == 0:
            return self.fail("EPEER", "every consumer of the stream was dropped; nobody receives it")
        if self.ended and not self.done_sent and t - self.t_end > o.finish_timeout_ms:
            late = ["'%s' acknowledged < %d" % (c.id.decode(errors="replace"), c.acked)
                    for c in self.peers.values() if c.state != DROPPED and not self.peer_done(c)]
            self.fail("ETIMEOUT", "end of %d messages not acknowledged within %d ms: %s"
                      % (self.end_count, o.finish_timeout_ms, "; ".join(late)))

    def run(self):
        o = self.o
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.SNDHWM, o.hwm)
        self.sock.setsockopt(zmq.RCVHWM, o.hwm)
        self.sock.setsockopt(zmq.LINGER, o.linger_ms)
        try:
            self.sock.bind(self.endpoint)
        except zmq.ZMQError as e:
            self.fail("EIO", "cannot bind stream %s to %s: %s (is another producer there?)"
                      % (o.stream_id, self.endpoint, e))
        if o.consumers == 0 and not self.failed:
            self.ready = True
            self.to_app.put(("ready",))
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self.quit.is_set():
            poller.poll(20)
            self.drain_app()
            if self.failed:
                continue
            self.drain_socket()
            self.pump()
            self.timers()
            self.check_done()
        # goodbye: a producer that did not finish tells its consumers why
        if self.quit_reason is not None:
            for c in self.peers.values():
                if c.state != DROPPED:
                    self.send_error(c.id, 1, "producer stopped before the end%s" % self.quit_reason)
        self.sock.close()


class Producer:
    """Sends messages to every consumer of `endpoint` (tcp://*:PORT, ipc://PATH) or to a message
    file (file:PATH or a plain path).

        p = Producer("tcp://*:5555", consumers=2)
        p.wait_consumers(); hellos = p.hellos()   # what each consumer asked for
        for m in messages: p.send(m)              # dicts of numpy arrays, ints, strs
        p.finish(); p.close()
    """

    def __init__(self, endpoint, **opts):
        self.o = Options(**opts)
        self.endpoint = endpoint
        self.next_seq = 0
        self.finished = False
        self.file = None
        self.io = None
        self.ready = self.done = False
        self.inflight = False
        if not is_zmq_endpoint(endpoint):
            self.file = msgfile.Writer(msgfile.file_path(endpoint), self.o.stream_id)
            return
        self.io = _ProducerIO(endpoint, self.o)
        self.io.start()

    def _handle(self, cmd):
        k = cmd[0]
        if k == "fail":
            raise StreamError(cmd[1], "stream %s (%s): %s" % (self.o.stream_id, self.endpoint, cmd[2]))
        if k == "ready":
            self.ready = True
        elif k == "accepted":
            self.inflight = False
        elif k == "done":
            self.done = True
        elif k == "hello":
            hello = next((h for hid, h, _ in self.hellos() if hid == cmd[1]), {})
            reason = self.o.admit(cmd[1], hello)
            if reason is None:
                self.io.to_io.put(("admit", cmd[1].encode()))
            else:
                self.refuse(cmd[1], reason)
        elif k == "need":
            seq = cmd[1]
            if self.o.regen is None:
                raise StreamError("EINVAL", "internal: regeneration of message %d asked without a callback" % seq)
            m = dict(self.o.regen(seq))
            m.update({"msg": "batch", "stream": self.o.stream_id, "seq": seq})
            self.io.stats["regenerated"] += 1
            self.io.to_io.put(("regen", seq, encode(m)))

    def _wait(self, cond, timeout_ms=None, what="waiting"):
        deadline = None if timeout_ms is None else now_ms() + timeout_ms
        while True:
            if self.io.failed:
                st, text = self.io.failed
                raise StreamError(st, "stream %s (%s): %s" % (self.o.stream_id, self.endpoint, text))
            if cond():
                return
            left = 0.1 if deadline is None else min(0.1, (deadline - now_ms()) / 1000)
            if left <= 0:
                raise StreamError("ETIMEOUT", "stream %s (%s): %s: nothing within %d ms"
                                  % (self.o.stream_id, self.endpoint, what, timeout_ms))
            try:
                self._handle(self.io.to_app.get(timeout=left))
            except queue.Empty:
                pass

    def wait_consumers(self):
        if self.io:
            self._wait(lambda: self.ready, what="waiting for consumers")

    def hellos(self):
        """[(consumer id, hello dict, active)] in join order (active: not refused or dropped)."""
        if not self.io:
            return []
        with self.io.lock:
            return list(self.io.hellos)

    def refuse(self, consumer_id, reason):
        """Refuses a consumer: it gets a fatal error "refused: <reason>" and is dropped; the
        stream goes on with the others."""
        with self.io.lock:
            for i, (hid, h, _) in enumerate(self.io.hellos):
                if hid == consumer_id:
                    self.io.hellos[i] = (hid, h, False)
        self.io.to_io.put(("refuse", consumer_id.encode(), reason))

    def send(self, m):
        """Sends dict m as the next message; returns its sequence number."""
        if self.finished:
            raise StreamError("EINVAL", "stream %s: send after finish" % self.o.stream_id)
        seq = self.next_seq
        m = dict(m)
        m.update({"msg": "batch", "stream": self.o.stream_id, "seq": seq})
        if self.file:
            self.file.write(m)
        else:
            self._wait(lambda: self.ready, what="waiting for consumers")
            self._wait(lambda: not self.inflight, what="waiting for credit")
            self.inflight = True
            self.io.to_io.put(("batch", seq, encode(m)))
        self.next_seq += 1
        return seq

    def finish(self):
        """Sends END with the count and waits until every consumer acknowledged everything."""
        if self.finished:
            return
        if self.file:
            self.file.finish()
            self.finished = True
            return
        self._wait(lambda: self.ready, what="waiting for consumers")
        self._wait(lambda: not self.inflight, what="waiting for credit")
        self.io.to_io.put(("end", self.next_seq))
        self._wait(lambda: self.done, what="waiting for the final acknowledgements")
        self.finished = True

    def close(self, reason=None):
        """Closes the stream. A producer that did not finish tells its consumers (a fatal error,
        with `reason` when given)."""
        if self.file:
            self.file.close()
            return
        if self.io:
            if not self.finished:
                self.io.quit_reason = ": " + reason if reason else ""
            self.io.stop()
            self.io = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(str(exc[1]) if exc[1] else None)


# ---- consumer ---------------------------------------------------------------------------------

class _ConsumerIO(_IO):
    def __init__(self, endpoint, opts):
        super().__init__(opts)
        self.endpoint = endpoint
        self.expected = opts.resume_from
        self.in_app = 0
        self.resyncing = False
        self.ended = False
        self.heard = False
        self.acked = None
        self.t_open = self.last_seen = now_ms()
        self.last_hb = 0
        self.announced = None  # the producer's "total", set before any batch is passed on

    def ctl(self, kind, **fields):
        m = {"msg": kind, "stream": self.o.stream_id, "consumer": self.o.consumer_id}
        m.update(fields)
        try:
            self.sock.send(encode(m), flags=zmq.DONTWAIT)
        except zmq.Again:
            pass
        self.last_hb = now_ms()

    def send_error(self, fatal, text):
        self.log("warn", "to the producer: %s" % text)
        f = {"error": text[:255]}
        if fatal:
            f["fatal"] = 1
        self.ctl("error", **f)

    def send_hello(self):
        m = dict(self.o.hello or {})
        m.update({"msg": "hello", "stream": self.o.stream_id, "consumer": self.o.consumer_id,
                  "resume": self.expected, "credit": max(self.o.credit - self.in_app, 0),
                  "protocol": PROTOCOL_VERSION})
        self.sock.send(encode(m), flags=zmq.DONTWAIT)
        self.last_hb = now_ms()

    def send_heartbeat(self):
        f = {"resume": self.expected, "credit": max(self.o.credit - self.in_app, 0)}
        if self.acked is not None:
            f["seq"] = self.acked
        if self.ended:
            f["count"] = self.expected
        self.ctl("heartbeat", **f)

    def resync(self, what, got):
        if self.resyncing:
            return
        self.send_error(0, "expected message %d, got %s %d: resuming from %d" % (self.expected, what, got, self.expected))
        self.resyncing = True
        self.send_hello()

    def on_message(self, data):
        self.last_seen = now_ms()
        self.heard = True
        try:
            m = peek(data)
        except StreamError as e:
            return self.send_error(0, "malformed message (%d bytes): %s" % (len(data), e.text))
        if m["stream"] != self.o.stream_id:
            return self.send_error(0, "this consumer reads stream '%s', not '%s'" % (self.o.stream_id, m["stream"][:64]))
        kind = m["msg"]
        if kind == "batch":
            seq = m["seq"]
            if seq == self.expected:
                self.to_app.put(("batch", seq, m))
                self.expected += 1
                self.in_app += 1
                self.resyncing = False
            elif seq < self.expected:
                self.ctl("credit", credit=1)  # a duplicate: dropped, its credit returned
            else:
                self.resync("message", seq)
        elif kind == "heartbeat":
            if "protocol" in m and m["protocol"] != PROTOCOL_VERSION:
                self.send_error(1, "this consumer speaks protocol %d, the producer protocol %d"
                                % (PROTOCOL_VERSION, m["protocol"]))
                self.fail("EPEER", "the producer at %s speaks protocol %d, this consumer protocol %d"
                          % (self.endpoint, m["protocol"], PROTOCOL_VERSION))
            elif "total" in m:
                self.announced = m["total"]
        elif kind == "end":
            n = m["count"]
            if n == self.expected:
                if not self.ended:
                    self.to_app.put(("end", n))
                self.ended = True
                self.send_heartbeat()  # confirms the END at once
            elif n > self.expected:
                self.resync("end after", n)
            else:
                self.send_error(1, "end says %d messages, but %d were received" % (n, self.expected))
                self.fail("EPEER", "the producer's end says %d messages, but %d were received" % (n, self.expected))
        elif kind == "error":
            self.log("warn", "the producer reports: %s" % m.get("error", "")[:512])
            if m.get("fatal"):
                self.fail("EPEER", "the producer at %s reports: %s" % (self.endpoint, m.get("error", "")[:512]))
        else:
            self.send_error(0, "message kind '%s' is not valid from a producer" % kind)

    def drain_app(self):
        while True:
            try:
                cmd = self.to_io.get_nowait()
            except queue.Empty:
                return
            if cmd[0] == "took":
                self.in_app -= 1
                self.ctl("credit", credit=1)
                if not self.o.manual_ack:
                    self.ack(cmd[1])
            elif cmd[0] == "ack":
                self.ack(cmd[1])
            elif cmd[0] == "bad":
                self.send_error(0, "message %d does not decode: %s" % (cmd[1], cmd[2]))

    def ack(self, seq):
        self.ctl("ack", seq=seq)
        if self.acked is None or seq > self.acked:
            self.acked = seq

    def timers(self):
        o = self.o
        t = now_ms()
        if self.failed:
            return
        silent = t - (self.last_seen if self.heard else self.t_open)
        if silent > o.peer_timeout_ms and not self.ended:
            if self.heard:
                return self.fail("EPEER", "the producer at %s was silent for %d ms after message %d: it died "
                                 "or hangs" % (self.endpoint, silent, self.expected))
            return self.fail("ETIMEOUT", "no producer answered at %s within %d ms: is it running?"
                             % (self.endpoint, o.peer_timeout_ms))
        if t - self.last_hb >= o.heartbeat_ms:
            self.send_heartbeat()

    def run(self):
        o = self.o
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, o.consumer_id.encode())
        self.sock.setsockopt(zmq.SNDHWM, 10000)
        self.sock.setsockopt(zmq.RCVHWM, o.hwm)
        self.sock.setsockopt(zmq.LINGER, o.linger_ms)
        self.sock.connect(self.endpoint)
        self.send_hello()
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self.quit.is_set():
            poller.poll(20)
            self.drain_app()
            if self.failed:
                continue
            for _ in range(1024):
                try:
                    frames = self.sock.recv_multipart(flags=zmq.DONTWAIT)
                except zmq.Again:
                    break
                if len(frames) != 1:
                    self.send_error(0, "message has %d frames; the protocol sends one msgpack map" % len(frames))
                    continue
                self.on_message(frames[0])
                if self.failed:
                    break
            self.timers()
        self.drain_app()  # acknowledgements queued just before closing
        if not self.ended and not self.failed:
            self.send_error(1, "consumer '%s' left at message %d before the end" % (o.consumer_id, self.expected))
        elif not self.ended and self.failed:
            self.send_error(1, "consumer '%s' left at message %d before the end (%s)"
                            % (o.consumer_id, self.expected, self.failed[0]))
        self.sock.close()


class Consumer:
    """Receives the messages of `endpoint` exactly once and in order.

        c = Consumer("tcp://host:5555", consumer_id="py-1", hello={"features.student_layers": 2})
        for m in c:            # dicts; m["seq"] is the sequence number
            ...
        c.close()

    With manual_ack=True acknowledge with c.ack(seq) once seq is safe in a checkpoint; restart
    with resume_from=<first seq not in the checkpoint> and the same consumer_id.
    """

    def __init__(self, endpoint, **opts):
        self.o = Options(**opts)
        if len(self.o.consumer_id.encode()) > ID_MAX or not self.o.consumer_id:
            raise StreamError("EINVAL", "consumer id '%s' must have 1..%d bytes" % (self.o.consumer_id, ID_MAX))
        self.endpoint = endpoint
        self.next_seq = self.o.resume_from
        self.ended = False
        self.count = None
        self.file = None
        self.io = None
        if not is_zmq_endpoint(endpoint):
            self.file = msgfile.Reader(msgfile.file_path(endpoint), self.o.stream_id, self.o.resume_from)
            return
        self.io = _ConsumerIO(endpoint, self.o)
        self.io.start()

    def recv(self, timeout_ms=None):
        """The next message (a dict); raises EndOfStream after the last one, StreamError on
        failure (ETIMEOUT when nothing came within timeout_ms)."""
        if self.ended:
            raise EndOfStream(self.count)
        if self.file:
            try:
                m = self.file.read()
            except EndOfStream as e:
                self.ended, self.count = True, e.count
                raise
            self.next_seq = m["seq"] + 1
            return m
        deadline = None if timeout_ms is None else now_ms() + timeout_ms
        while True:
            if self.io.failed:
                st, text = self.io.failed
                raise StreamError(st, "stream %s (%s): %s" % (self.o.stream_id, self.endpoint, text))
            left = 0.1 if deadline is None else min(0.1, (deadline - now_ms()) / 1000)
            if left <= 0:
                raise StreamError("ETIMEOUT", "stream %s (%s): receiving: nothing within %d ms"
                                  % (self.o.stream_id, self.endpoint, timeout_ms))
            try:
                cmd = self.io.to_app.get(timeout=left)
            except queue.Empty:
                continue
            if cmd[0] == "fail":
                raise StreamError(cmd[1], "stream %s (%s): %s" % (self.o.stream_id, self.endpoint, cmd[2]))
            if cmd[0] == "end":
                self.ended, self.count = True, cmd[1]
                raise EndOfStream(cmd[1])
            if cmd[0] == "batch":
                self.io.to_io.put(("took", cmd[1]))
                self.next_seq = cmd[1] + 1
                return cmd[2]

    def announced_count(self):
        """The messages the stream holds, before its END: a message file's END count, or the
        count the producer announced ("total"; it comes before the first message). None when
        the producer announced none."""
        if self.file:
            return msgfile.end_count(self.file.path)
        return self.io.announced if self.io else None

    def ack(self, seq):
        """manual_ack: every message <= seq is safe in a checkpoint."""
        if seq >= self.next_seq:
            raise StreamError("EINVAL", "cannot acknowledge message %d: only messages < %d were received"
                              % (seq, self.next_seq))
        if self.io:
            self.io.to_io.put(("ack", seq))

    def __iter__(self):
        while True:
            try:
                yield self.recv()
            except EndOfStream:
                return

    def close(self):
        if self.file:
            self.file.close()
        if self.io:
            self.io.stop()
            self.io = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def as_array(v):
    """A message value as a numpy array (tensors already are)."""
    return v if isinstance(v, np.ndarray) else np.asarray(v)

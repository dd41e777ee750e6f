#!/usr/bin/env python3
"""make_seeds.py - writes the seed corpora of tests/fuzz/corpus/<target>/.

Each fuzz target reads its input as a program (see the target's source): an
op byte and its arguments.  The seeds are a few such programs around valid
protobuf messages (encoded here by hand), so that the fuzzers start from
accepted requests rather than from nothing.  Run from anywhere; rewrites the
seed-* files only."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def vf(field, v):  # varint field
    return varint(field << 3) + varint(v)


def f64(field, v):  # fixed64 field
    return varint(field << 3 | 1) + struct.pack("<Q", v)


def ld(field, data):  # length-delimited field
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def u16(v):
    return struct.pack("<H", v)


def handler_spec(name, payload, queue="", prio=0):
    return (ld(1, queue) if queue else b"") + (vf(2, prio) if prio else b"") + \
        ld(4, ld(1, name) + ld(2, payload))


def argv_spec(*args):
    return ld(3, b"".join(ld(1, a) for a in args))


ID = 0x0000000100000001

# TaskService / WorkerService / AdminService requests.
submit = ld(1, handler_spec("echo", "hi", "q1", 5)) + ld(1, argv_spec("true", "x"))
stream_in = ld(1, vf(1, 7) + ld(2, handler_spec("noop", "")))
wait = f64(1, ID) + vf(2, 10) + vf(3, 1)
get = ld(1, struct.pack("<Q", ID)) + vf(2, 1)
cancel = ld(1, struct.pack("<Q", ID))
watch = ld(1, struct.pack("<Q", ID)) + vf(3, 1)
register = ld(1, ld(1, "w1") + vf(2, 2) + ld(3, "default") + ld(3, "q1") + ld(4, "echo") + vf(5, 1))
result = ld(3, f64(1, ID) + vf(2, 1) + vf(3, 4) + ld(5, "out") + ld(7, "err"))
heartbeat = ld(2, ld(1, f64(1, ID) + vf(2, 1)) + vf(2, 1))
list_workers = vf(1, 1)

K = dict(submit=0, stream=1, wait=2, get=3, cancel=4, watch=5, worker=6, list=7, stats=8, drain=9)


def raw(kind, msg, pick=0):  # fuzz_server op 11: raw bytes to a method
    return bytes([11, K[kind]]) + u16(len(msg)) + msg + bytes([pick])


seeds = {
    "fuzz_server": {
        "requests": b"".join([raw("submit", submit), raw("stream", stream_in), raw("wait", wait),
                              raw("get", get), raw("cancel", cancel), raw("watch", watch),
                              raw("list", list_workers), raw("stats", b"")]),
        # a worker registers, a task is submitted and dispatched, the worker
        # reports it (generated result for its assignment), a Wait collects it
        "lifecycle": raw("worker", register) + raw("submit", ld(1, handler_spec("echo", "x"))) +
        bytes([13, 0]) + raw("worker", heartbeat) + bytes([8, 0, 1, 0]) + bytes(24) +
        bytes([5, 0, 0, 1, 0]),
        "stream_results": raw("worker", register) + raw("stream", stream_in) + bytes([13, 0]) +
        bytes([8, 0, 1, 1]) + bytes(24) + bytes([3, 1, 0]) + raw("worker", result),
    },
    "fuzz_worker": {
        # slots, max_output, then op 0: raw WorkerDown bytes
        "registered_assignments": bytes([2]) + u16(4096) + bytes([0]) + u16(0) +
        (lambda m: u16(len(m)) + m)(
            ld(1, f64(1, 42) + vf(2, 100)) +
            ld(2, f64(1, ID) + vf(2, 1) + ld(3, handler_spec("echo", "hello"))) +
            ld(2, f64(1, ID + 1) + vf(2, 1) + ld(3, handler_spec("sleep", "5"))) +
            ld(2, f64(1, ID + 2) + vf(2, 1) + ld(3, argv_spec("true", "--version")))) +
        bytes([3, 4, 5, 0, 0, 6]) +
        bytes([0]) + (lambda m: u16(len(m)) + m)(
            ld(3, f64(1, ID + 1) + vf(2, 1)) + ld(5, f64(1, ID) + vf(2, 1)) + ld(4, ld(1, "bye"))),
    },
    "fuzz_engine": {
        # register a worker, submit, dispatch, start, finish, release, worker dead
        "lifecycle": bytes([9, 0, 2, 0]) + bytes([0, 1, 0, 7, 10, 0, 3, 1, 0, 0]) +
        bytes([3, 0]) + bytes([4, 0, 0, 1]) + bytes([5, 0, 0, 1, 5, 0, 0, 0, 0, 1]) +
        bytes([8, 0, 0]) + bytes([9, 3, 0]),
        "delayed": bytes([0, 1, 8, 3, 4, 0, 1, 0, 0, 0, 50]) + bytes([10, 100]) +
        bytes([11 | 0x80, 2, 0]) + b"q1" + bytes([1]),
    },
    "fuzz_codec": {
        "result": bytes([0, 4]) + u16(3) + b"abc" + u16(2) + b"no" + struct.pack("<Q", ID) +
        bytes([7]) + bytes(40),
        "spec": bytes([2]) + (lambda m: u16(len(m)) + m)(handler_spec("echo", "x", "q", 3)) +
        bytes([1]),
        "histogram": bytes([3, 5, 0, 10, 0, 2, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                            0xFF, 0xFF, 4, 3, 0, 7, 0, 0]),
    },
}

for target, files in seeds.items():
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)

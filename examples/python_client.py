#!/usr/bin/python3
"""A gsched client in Python: submit tasks, wait for their results.

Uses only Debian's python3-grpcio and stubs generated from proto/gsched.proto
with python3-grpc-tools:

    /usr/bin/python3 -m grpc_tools.protoc -I proto --python_out=gen \
        --grpc_python_out=gen proto/gsched.proto
    PYTHONPATH=gen /usr/bin/python3 examples/python_client.py --server 127.0.0.1:7070

It submits an echo handler call and a shell command, waits for both, prints
their outputs, and exits non-zero if either did not succeed.
"""
import argparse
import sys

import grpc

import gsched_pb2 as pb
import gsched_pb2_grpc as rpc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="127.0.0.1:7070")
    ap.add_argument("--timeout-ms", type=int, default=10000)
    args = ap.parse_args()

    with grpc.insecure_channel(args.server) as channel:
        tasks = rpc.TaskServiceStub(channel)
        specs = [
            pb.TaskSpec(handler=pb.HandlerCall(name="echo", payload=b"hello from python")),
            pb.TaskSpec(argv=pb.Argv(args=["sh", "-c", "echo $((6 * 7))"]), priority=10),
        ]
        try:
            submitted = tasks.Submit(pb.SubmitRequest(tasks=specs), timeout=5)
            done = tasks.Wait(
                pb.WaitRequest(ids=submitted.ids, timeout_ms=args.timeout_ms),
                timeout=args.timeout_ms / 1000 + 5,
            )
        except grpc.RpcError as e:
            print(f"gsched: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1

    ok = done.complete
    for r in done.results:
        state = pb.TaskState.Name(r.state)
        print(f"{r.id}: {state} exit={r.exit_code} output={r.output.decode(errors='replace').strip()!r}")
        ok = ok and r.state == pb.TASK_STATE_DONE and r.exit_code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

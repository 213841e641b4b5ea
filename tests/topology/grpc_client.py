#!/usr/bin/env python3
"""A gRPC client with one long-lived channel, for the attach-mid-connection
test. Usage: grpc_client.py PORT PREFIX N

Connects and makes 3 GetItem calls, prints "warm", waits for a line on
stdin (the tracer starts meanwhile), then makes N GetItem calls and N Stock
calls (rid PREFIX + index in x-request-id) and prints "done"."""
import sys

import grpc

import grpc_gen

pb, pb_grpc = grpc_gen.load()
port, prefix, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
stub = pb_grpc.InventoryStub(grpc.insecure_channel("127.0.0.1:%d" % port))
for i in range(3):
    stub.GetItem(pb.ItemRequest(id=i, rid="warm%d" % i), metadata=(("x-request-id", "warm%d" % i),))
print("warm", flush=True)
sys.stdin.readline()
for i in range(2 * n):
    rid = "%s%03d" % (prefix, i)
    call = stub.GetItem if i < n else stub.Stock
    call(pb.ItemRequest(id=i % 10 * 10 + 1, rid=rid), metadata=(("x-request-id", rid),))
print("done", flush=True)

#!/usr/bin/env python3
"""Concurrent gRPC load on zt.test.Inventory for the end-to-end tests.
Usage: grpc_load.py PORT N C PREFIX

N calls (GetItem and Stock alternating), C at a time over one channel, each
with ground-truth id PREFIX + index in ItemRequest.rid and in the
x-request-id metadata. One JSON object per call: {"rid", "n", "code"}."""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

import grpc_gen

pb, pb_grpc = grpc_gen.load()
port, n, c, prefix = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
stub = pb_grpc.InventoryStub(grpc.insecure_channel("127.0.0.1:%d" % port))


def one(i):
    rid = "%s%04d" % (prefix, i)
    call = stub.GetItem if i % 2 == 0 else stub.Stock
    try:
        call(pb.ItemRequest(id=i, rid=rid), metadata=(("x-request-id", rid),), timeout=10)
        code = "OK"
    except grpc.RpcError as e:
        code = e.code().name
    return {"rid": rid, "n": i, "code": code}


with ThreadPoolExecutor(c) as pool:
    for r in pool.map(one, range(n)):
        print(json.dumps(r), flush=True)

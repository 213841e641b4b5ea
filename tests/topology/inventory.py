#!/usr/bin/env python3
"""gRPC service of the test topology (Python grpcio, thread pool), backed by
MariaDB. Usage: inventory.py PORT

GetItem(id, rid): SELECT from zt_test.items with the ground-truth id in a
query comment. Ids ending in 7 have no row (NOT_FOUND); ids ending in 5 query
a table that does not exist (MySQL error 1146 -> INTERNAL). Odd ids use the
C client (mysqlclient), even ids the pure-Python one (pymysql).
"""
import queue
import sys
from concurrent import futures

import grpc
import MySQLdb
import pymysql

import grpc_gen

pb, pb_grpc = grpc_gen.load()
PORT = int(sys.argv[1])
DB = dict(host="127.0.0.1", port=3306, user="zt", password="zt-secret", database="zt_test")
POOLS = {}


def connect(kind):
    if kind == "py":
        return pymysql.connect(**DB, autocommit=True)
    return MySQLdb.connect(host=DB["host"], port=DB["port"], user=DB["user"], passwd=DB["password"],
                           db=DB["database"], autocommit=True)


class conn:
    """A connection opened at start-up, borrowed for one call."""

    def __init__(self, kind):
        self.q = POOLS[kind]

    def __enter__(self):
        self.c = self.q.get()
        return self.c

    def __exit__(self, *exc):
        self.q.put(self.c)


def setup():
    c = pymysql.connect(**DB, autocommit=True)
    cur = c.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS items (id BIGINT PRIMARY KEY, name VARCHAR(64), stock BIGINT)")
    cur.execute("SELECT COUNT(*) FROM items")
    if cur.fetchone()[0] == 0:
        rows = [(i, "item-%d" % i, i * 3) for i in range(0, 2000) if i % 10 != 7]
        cur.executemany("INSERT INTO items (id, name, stock) VALUES (%s, %s, %s)", rows)
    c.close()


class Inventory(pb_grpc.InventoryServicer):
    def GetItem(self, request, context):
        n, rid = request.id, request.rid
        table = "missing_items" if n % 10 == 5 else "items"
        with conn("c" if n % 2 else "py") as c:
            cur = c.cursor()
            try:
                cur.execute("SELECT /* rid=%s */ id, name, stock FROM %s WHERE id = %d" % (rid, table, n))
                row = cur.fetchone()
            except (pymysql.MySQLError, MySQLdb.MySQLError) as e:
                row, err = None, e.args[0]
            else:
                err = None
        if err is not None:
            context.abort(grpc.StatusCode.INTERNAL, "query failed: %s" % err)
        if row is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no item %d" % n)
        return pb.Item(id=row[0], name=row[1], stock=row[2])

    def Stock(self, request, context):
        return pb.Item(id=request.id, stock=request.id * 3)


if __name__ == "__main__":
    setup()
    for kind in ("py", "c"):
        POOLS[kind] = queue.Queue()
        for _ in range(10):
            POOLS[kind].put(connect(kind))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_InventoryServicer_to_server(Inventory(), server)
    server.add_insecure_port("127.0.0.1:%d" % PORT)
    server.start()
    print("ready inventory", PORT, flush=True)
    server.wait_for_termination()

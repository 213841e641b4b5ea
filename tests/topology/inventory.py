#!/usr/bin/env python3
"""gRPC service of the test topology (Python grpcio, thread pool), backed by
MariaDB. Usage: inventory.py PORT

GetItem(id, rid): SELECT from zt_test.items with the ground-truth id in a
query comment. Ids ending in 7 have no row (NOT_FOUND); ids ending in 5 query
a table that does not exist (MySQL error 1146 -> INTERNAL). Odd ids use the
C client (mysqlclient), even ids the pure-Python one (pymysql).
"""
import sys
import threading
from concurrent import futures

import grpc
import MySQLdb
import pymysql

import grpc_gen

pb, pb_grpc = grpc_gen.load()
PORT = int(sys.argv[1])
DB = dict(host="127.0.0.1", port=3306, user="zt", password="zt-secret", database="zt_test")
local = threading.local()


def conn(kind):
    c = getattr(local, kind, None)
    if c is None:
        c = pymysql.connect(**DB, autocommit=True) if kind == "py" else MySQLdb.connect(
            host=DB["host"], port=DB["port"], user=DB["user"], passwd=DB["password"], db=DB["database"], autocommit=True)
        setattr(local, kind, c)
    return c


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
        cur = conn("c" if n % 2 else "py").cursor()
        try:
            cur.execute("SELECT /* rid=%s */ id, name, stock FROM %s WHERE id = %d" % (rid, table, n))
            row = cur.fetchone()
        except (pymysql.MySQLError, MySQLdb.MySQLError) as e:
            context.abort(grpc.StatusCode.INTERNAL, "query failed: %s" % e.args[0])
        if row is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no item %d" % n)
        return pb.Item(id=row[0], name=row[1], stock=row[2])


if __name__ == "__main__":
    setup()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_InventoryServicer_to_server(Inventory(), server)
    server.add_insecure_port("127.0.0.1:%d" % PORT)
    server.start()
    print("ready inventory", PORT, flush=True)
    server.wait_for_termination()

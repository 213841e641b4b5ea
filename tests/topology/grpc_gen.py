"""Generates the Python gRPC code for proto/inventory.proto (into gen/,
gitignored) and imports it. Shared by the services and tests."""
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "gen")


def load():
    if GEN not in sys.path:
        sys.path.insert(0, GEN)
    try:
        import inventory_pb2, inventory_pb2_grpc  # noqa: F401
    except ImportError:
        from grpc_tools import protoc
        os.makedirs(GEN, exist_ok=True)
        rc = protoc.main(["protoc", "-I" + os.path.join(HERE, "proto"), "--python_out=" + GEN,
                          "--grpc_python_out=" + GEN, os.path.join(HERE, "proto", "inventory.proto")])
        if rc != 0:
            raise RuntimeError("protoc failed")
        importlib.invalidate_caches()
        import inventory_pb2, inventory_pb2_grpc  # noqa: F401
    import inventory_pb2
    import inventory_pb2_grpc
    return inventory_pb2, inventory_pb2_grpc

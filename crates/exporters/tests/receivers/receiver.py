#!/usr/bin/env python3
"""Conformance receivers for zt-trace's exporters.

Decodes what the exporters send with the *official* definitions and prints
one JSON line per request on stdout, in a normalised form the Rust tests
assert on:

  otlp-http     OTLP/HTTP (protobuf or JSON, optional gzip) decoded with the
                opentelemetry-proto package's ExportTraceServiceRequest;
                POST /v1/metrics with its ExportMetricsServiceRequest.
  otlp-grpc     OTLP/gRPC TraceService/Export and MetricsService/Export
                served with grpcio and the opentelemetry-proto generated
                services.
  zipkin        Zipkin v2 JSON validated against the Zipkin API definition
                (zipkin2-api.yaml, definitions/ListOfSpans) with jsonschema.
  jaeger-thrift jaeger.thrift Batch decoded with the Thrift types generated
                from Jaeger's IDL that ship in the jaeger-client package.

Usage: receiver.py MODE [--spec PATH] [--port N]
       receiver.py --check MODE   (exit 0 when the needed packages import)

The first stdout line is "PORT <n>"; then one "REQ <json>" line per request.
Binds 127.0.0.1 only. Exits when stdin closes (the test process went away).
"""

import argparse
import base64
import gzip
import importlib.util
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def emit(obj):
    with LOCK:
        sys.stdout.write("REQ " + json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------- OTLP ----

def otlp_modules():
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2
    return trace_service_pb2, trace_pb2


def any_value(v):
    kind = v.WhichOneof("value")
    val = getattr(v, kind) if kind else None
    if kind == "bytes_value":
        val = val.hex()
    return [kind, val]


def attrs(kvs):
    out = {}
    for kv in kvs:
        if kv.key in out:
            out.setdefault("__duplicates__", []).append(kv.key)
        out[kv.key] = any_value(kv.value)
    return out


def normalise_otlp(req):
    _, trace_pb2 = otlp_modules()
    out = []
    for rs in req.resource_spans:
        scopes = []
        for ss in rs.scope_spans:
            spans = []
            for s in ss.spans:
                spans.append({
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": trace_pb2.Span.SpanKind.Name(s.kind),
                    "flags": s.flags,
                    "start_time_unix_nano": s.start_time_unix_nano,
                    "end_time_unix_nano": s.end_time_unix_nano,
                    "attributes": attrs(s.attributes),
                    "status": {
                        "code": trace_pb2.Status.StatusCode.Name(s.status.code),
                        "message": s.status.message,
                    },
                    "links": [{
                        "trace_id": l.trace_id.hex(),
                        "span_id": l.span_id.hex(),
                        "attributes": attrs(l.attributes),
                    } for l in s.links],
                })
            scopes.append({
                "scope": {"name": ss.scope.name, "version": ss.scope.version},
                "spans": spans,
            })
        out.append({"resource": attrs(rs.resource.attributes), "scope_spans": scopes})
    return out


def normalise_metrics(req):
    from opentelemetry.proto.metrics.v1 import metrics_pb2
    out = []
    for rm in req.resource_metrics:
        scopes = []
        for sm in rm.scope_metrics:
            metrics = []
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                points = []
                for p in data.data_points:
                    point = {
                        "attributes": attrs(p.attributes),
                        "start_time_unix_nano": p.start_time_unix_nano,
                        "time_unix_nano": p.time_unix_nano,
                    }
                    if kind == "histogram":
                        point.update({
                            "count": p.count,
                            "sum": p.sum,
                            "bucket_counts": list(p.bucket_counts),
                            "explicit_bounds": list(p.explicit_bounds),
                        })
                    else:
                        which = p.WhichOneof("value")
                        point["value"] = [which, getattr(p, which)]
                    points.append(point)
                entry = {"name": m.name, "unit": m.unit, "description": m.description,
                         "kind": kind, "points": points}
                if kind in ("sum", "histogram"):
                    entry["temporality"] = metrics_pb2.AggregationTemporality.Name(
                        data.aggregation_temporality)
                if kind == "sum":
                    entry["monotonic"] = data.is_monotonic
                metrics.append(entry)
            scopes.append({"scope": {"name": sm.scope.name, "version": sm.scope.version},
                           "metrics": metrics})
        out.append({"resource": attrs(rm.resource.attributes), "scope_metrics": scopes})
    return out


ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def hex_ids_to_base64(obj):
    """OTLP/JSON carries ids as hex; protobuf's JSON mapping wants base64."""
    if isinstance(obj, dict):
        for k, v in list(obj.items()):
            if k in ID_FIELDS and isinstance(v, str):
                obj[k] = base64.b64encode(bytes.fromhex(v)).decode()
            else:
                hex_ids_to_base64(v)
    elif isinstance(obj, list):
        for v in obj:
            hex_ids_to_base64(v)
    return obj


def decode_otlp_http(body, content_type):
    from google.protobuf import json_format
    trace_service_pb2, _ = otlp_modules()
    req = trace_service_pb2.ExportTraceServiceRequest()
    if content_type.startswith("application/json"):
        raw = json.loads(body)
        # Strict: unknown fields or wrong types raise.
        json_format.ParseDict(hex_ids_to_base64(raw), req)
    elif content_type.startswith("application/x-protobuf"):
        req.ParseFromString(body)
    else:
        raise ValueError("unexpected content type %r" % content_type)
    return req


# -------------------------------------------------------------- Zipkin ----

def zipkin_validator(spec_path):
    import jsonschema
    import yaml
    with open(spec_path) as f:
        api = yaml.safe_load(f)
    schema = {"definitions": api["definitions"], "$ref": "#/definitions/ListOfSpans"}
    cls = jsonschema.Draft4Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=jsonschema.FormatChecker())


# -------------------------------------------------------------- Jaeger ----

def jaeger_ttypes():
    """Load jaeger_client/thrift_gen/jaeger/ttypes.py without importing the
    jaeger_client package itself (its __init__ pulls in tornado and
    opentracing, which the receiver does not need)."""
    spec = importlib.util.find_spec("jaeger_client")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("jaeger-client is not installed")
    base = list(spec.submodule_search_locations)[0]
    path = os.path.join(base, "thrift_gen", "jaeger", "ttypes.py")
    mspec = importlib.util.spec_from_file_location("jaeger_ttypes", path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return mod


def decode_jaeger(body):
    from thrift.protocol import TBinaryProtocol
    from thrift.transport import TTransport
    tt = jaeger_ttypes()
    trans = TTransport.TMemoryBuffer(body)
    proto = TBinaryProtocol.TBinaryProtocol(trans)
    batch = tt.Batch()
    batch.read(proto)
    batch.validate()
    leftover = len(body) - trans._buffer.tell()
    tag_type = tt.TagType._VALUES_TO_NAMES
    ref_type = tt.SpanRefType._VALUES_TO_NAMES

    def tags(ts):
        out = {}
        for t in ts or []:
            t.validate()
            name = tag_type[t.vType]
            val = {"STRING": t.vStr, "DOUBLE": t.vDouble, "BOOL": t.vBool,
                   "LONG": t.vLong, "BINARY": t.vBinary}[name]
            if isinstance(val, bytes):
                val = val.decode("utf-8", "replace")
            out[t.key] = [name, val]
        return out

    spans = []
    for s in batch.spans:
        s.validate()
        spans.append({
            "traceIdHigh": s.traceIdHigh, "traceIdLow": s.traceIdLow,
            "spanId": s.spanId, "parentSpanId": s.parentSpanId,
            "operationName": s.operationName, "flags": s.flags,
            "startTime": s.startTime, "duration": s.duration,
            "tags": tags(s.tags),
            "references": [{"refType": ref_type[r.refType], "traceIdHigh": r.traceIdHigh,
                            "traceIdLow": r.traceIdLow, "spanId": r.spanId}
                           for r in (s.references or [])],
            "logs": len(s.logs or []),
        })
    return {
        "process": {"serviceName": batch.process.serviceName, "tags": tags(batch.process.tags)},
        "spans": spans,
        "leftover_bytes": leftover,
    }


# ---------------------------------------------------------------- HTTP ----

def make_handler(mode, validator):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code, body=b"", ctype="text/plain"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            encoding = self.headers.get("Content-Encoding", "")
            ctype = self.headers.get("Content-Type", "")
            record = {
                "path": self.path,
                "content_type": ctype,
                "content_encoding": encoding,
                "headers": {k.lower(): v for k, v in self.headers.items()
                            if k.lower().startswith("x-")},
                "user_agent": self.headers.get("User-Agent", ""),
            }
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                if mode == "otlp-http" and self.path == "/v1/metrics":
                    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
                    if not ctype.startswith("application/x-protobuf"):
                        raise ValueError("unexpected content type %r" % ctype)
                    req = metrics_service_pb2.ExportMetricsServiceRequest()
                    req.ParseFromString(body)
                    record["resource_metrics"] = normalise_metrics(req)
                    resp = metrics_service_pb2.ExportMetricsServiceResponse()
                    self.reply(200, resp.SerializeToString(), "application/x-protobuf")
                elif mode == "otlp-http":
                    req = decode_otlp_http(body, ctype)
                    record["resource_spans"] = normalise_otlp(req)
                    trace_service_pb2, _ = otlp_modules()
                    resp = trace_service_pb2.ExportTraceServiceResponse()
                    if ctype.startswith("application/json"):
                        self.reply(200, b"{}", "application/json")
                    else:
                        self.reply(200, resp.SerializeToString(), "application/x-protobuf")
                elif mode == "zipkin":
                    doc = json.loads(body)
                    errors = sorted(e.message for e in validator.iter_errors(doc))
                    record["schema_errors"] = errors
                    record["spans"] = doc
                    self.reply(400 if errors else 202)
                elif mode == "jaeger-thrift":
                    record["batch"] = decode_jaeger(body)
                    self.reply(202)
                else:
                    self.reply(404)
            except Exception as e:  # report, never crash the receiver
                record["decode_error"] = "%s: %s" % (type(e).__name__, e)
                self.reply(400, str(e).encode())
            emit(record)

    return Handler


def serve_http(mode, port, validator):
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(mode, validator))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


# ---------------------------------------------------------------- gRPC ----

def serve_grpc(port):
    from concurrent import futures
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            md = {k: v for k, v in context.invocation_metadata() if k.startswith("x-")}
            emit({"path": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                  "headers": md,
                  "resource_spans": normalise_otlp(request)})
            return trace_service_pb2.ExportTraceServiceResponse()

    from opentelemetry.proto.collector.metrics.v1 import (metrics_service_pb2,
                                                          metrics_service_pb2_grpc)

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):
            md = {k: v for k, v in context.invocation_metadata() if k.startswith("x-")}
            emit({"path": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                  "headers": md,
                  "resource_metrics": normalise_metrics(request)})
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    bound = server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    return bound, server


def check(mode, spec):
    if mode in ("otlp-http", "otlp-grpc"):
        otlp_modules()
        from google.protobuf import json_format  # noqa: F401
        if mode == "otlp-grpc":
            import grpc  # noqa: F401
            from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc  # noqa: F401
    elif mode == "zipkin":
        import jsonschema  # noqa: F401
        import yaml  # noqa: F401
    elif mode == "jaeger-thrift":
        import thrift  # noqa: F401
        jaeger_ttypes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["otlp-http", "otlp-grpc", "zipkin", "jaeger-thrift"])
    ap.add_argument("--spec", default=None)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if args.check:
        try:
            check(args.mode, args.spec)
        except Exception as e:
            print("missing: %s: %s" % (type(e).__name__, e))
            sys.exit(3)
        print("ok")
        return
    keep = None
    if args.mode == "otlp-grpc":
        port, keep = serve_grpc(args.port)
    else:
        validator = zipkin_validator(args.spec) if args.mode == "zipkin" else None
        port = serve_http(args.mode, args.port, validator)
    sys.stdout.write("PORT %d\n" % port)
    sys.stdout.flush()
    # Run until the test closes our stdin.
    sys.stdin.read()
    if keep is not None:
        keep.stop(0)


if __name__ == "__main__":
    main()

"""A reference feast.serving.ServingService server made of Feast's own Python
pieces: Feast's generated protos and gRPC servicer (feast.protos...
ServingService_pb2_grpc) answering GetOnlineFeatures with the proto of the
SDK's FeatureStore.get_online_features. Feast's Python package has no
ServingService server of its own (its Go and Java servers are not on PyPI),
so the gRPC client tests use this one to check that the Go and Java clients
speak Feast's real wire format, independently of hos-proxy.

    python feast_reference_server.py --repo REPO --port PORT

Errors: a FeatureViewNotFoundException / FeatureServiceNotFoundException
(and any other "not found" from Feast) is NOT_FOUND, anything else
INVALID_ARGUMENT, each with Feast's message. Runs until SIGTERM.
"""

import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures

os.environ.setdefault("TZ", "UTC")
time.tzset()

import feast  # noqa: E402
import grpc  # noqa: E402
from feast import FeatureStore  # noqa: E402
from feast.protos.feast.serving import ServingService_pb2 as pb  # noqa: E402
from feast.protos.feast.serving import ServingService_pb2_grpc as pb_grpc  # noqa: E402


def plain(v):
    """A request entity Value as the Python value get_online_features takes."""
    which = v.WhichOneof("val")
    return None if which in (None, "null_val") else getattr(v, which)


class Servicer(pb_grpc.ServingServiceServicer):
    def __init__(self, fs: FeatureStore):
        self.fs = fs
        self.lock = threading.Lock()

    def GetFeastServingInfo(self, request, context):
        return pb.GetFeastServingInfoResponse(version=feast.__version__)

    def GetOnlineFeatures(self, request, context):
        keys = list(request.entities)
        n = len(request.entities[keys[0]].val) if keys else 0
        rows = [{k: plain(request.entities[k].val[i]) for k in keys} for i in range(n)]
        try:
            with self.lock:
                if request.WhichOneof("kind") == "feature_service":
                    features = self.fs.get_feature_service(request.feature_service)
                else:
                    features = list(request.features.val)
                resp = self.fs.get_online_features(features=features, entity_rows=rows,
                                                   full_feature_names=request.full_feature_names)
        except Exception as e:  # noqa: BLE001 - every Feast error becomes a status
            name = type(e).__name__
            code = grpc.StatusCode.NOT_FOUND if "NotFound" in name else grpc.StatusCode.INVALID_ARGUMENT
            context.abort(code, f"{name}: {e}")
        return resp.proto


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    fs = FeatureStore(repo_path=args.repo)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ServingServiceServicer_to_server(Servicer(fs), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"feast reference ServingService on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()

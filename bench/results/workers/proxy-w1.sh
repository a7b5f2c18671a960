#!/bin/sh
# hos-proxy with one tokio worker thread (the load generator keeps its own).
TOKIO_WORKER_THREADS=1 exec /work/bin/hos-proxy-head "$@"

#!/bin/sh
# hos-proxy with every request traced (bench of the export cost).
if [ "$1" = serve ]; then exec /work/bin/hos-proxy-j5lto "$@" --otlp-sample-ratio 1; fi
exec /work/bin/hos-proxy-j5lto "$@"

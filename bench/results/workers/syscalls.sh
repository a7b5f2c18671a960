#!/bin/bash
# syscalls per request of the proxy (pid $1) under MODE ($2: http|grpc) at concurrency $3
PID=$1; MODE=$2; C=$3
URL=$([ "$MODE" = grpc ] && echo http://127.0.0.1:6571 || echo http://127.0.0.1:6570/get-online-features)
EV=$(for s in write writev sendmsg sendto read readv recvfrom recvmsg epoll_wait futex; do printf "syscalls:sys_enter_%s," $s; done)
perf stat -x, -e "${EV%,}" -p $PID -o /work/state/perf.$MODE.$C.txt -- sleep 4 &
PP=$!
/work/bin/hos-bench-load --$MODE $URL --bodies /work/state/bodies.jsonl --concurrency $C --duration 4 --warmup 0 --cpu-pid $PID > /work/state/load.$MODE.$C.json 2>&1
wait $PP
python3 - $MODE $C <<'PY'
import json,sys
m,c=sys.argv[1],sys.argv[2]
d=json.load(open(f"/work/state/load.{m}.{c}.json"))
n=d["sent"]
out=[]
for ln in open(f"/work/state/perf.{m}.{c}.txt"):
    p=ln.strip().split(",")
    if len(p)>2 and p[0].replace('.','').isdigit():
        out.append(f"{p[2].split('sys_enter_')[-1]}={int(float(p[0]))/n:.2f}")
print(m,c,"rps",round(d["throughput_rps"]),"cpu_us",d["server_cpu"]["us_per_request"] if d.get("server_cpu") else None," ".join(out))
PY

//! `hos-bench-load`: the load generator of bench/run.sh.
//!
//! One program drives every target the same way:
//!
//! - `--http URL`: POSTs request bodies to a feature server (hos-proxy or
//!   `feast serve`) over keep-alive HTTP/1.1 connections, one blocking
//!   connection per worker thread.
//! - `--direct`: the floor. Each worker thread does the same lookup
//!   in-process against the backend itself (SQLite files through rusqlite,
//!   Redis through pipelined HMGET), with the same entity keys, the same
//!   Value decoding and the same JSON response serialization as the proxy,
//!   but no HTTP, routing or request parsing.
//! - `--grpc URL`: calls Feast's `feast.serving.ServingService/GetOnlineFeatures`
//!   (hos-proxy's `--grpc-listen`) with the same requests, converted from
//!   the JSON bodies to protobuf once at start-up; one HTTP/2 channel per
//!   worker thread, each driven by its own current-thread Tokio runtime so
//!   the worker loop stays the same blocking loop as for HTTP.
//!
//! Load shapes, both bounded in time:
//!
//! - closed loop (`--concurrency N`, no `--rate`): N workers, each sends
//!   its next request when the previous one is answered;
//! - open loop (`--rate R`): request k is due at `start + k/R`; N workers
//!   take due requests in order, and a request's latency is measured from
//!   its due time (not from when a worker got to it), so queueing behind a
//!   slow server counts (no coordinated omission). Requests still unsent
//!   `--grace` seconds after the end are counted as `unsent`.
//!
//! Bodies come from a file, one JSON request per line, used round-robin.
//! The text `@TS@` in a body is replaced by a per-request RFC 3339 time
//! (start of run + k seconds), so repeated writes are never skipped as stale.
//!
//! Latencies are recorded in HDR histograms (one per worker, merged at the
//! end; 3 significant digits, 1 ns to 100 s), not in a sorted list, so a
//! long run costs constant memory and the percentiles carry a known
//! precision.
//!
//! `--cpu-pid PID` (repeatable): the server's processes. Their CPU time
//! (utime + stime from /proc/PID/stat) is read when the measured phase
//! starts and after its last request, so the CPU per request covers the
//! measured window only.
//!
//! Output: one JSON object (stdout, and `--out FILE`) with counts, errors by
//! kind, throughput, latency percentiles in microseconds, where latency is
//! measured from (`latency_from`), and the server's CPU per request.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api::entity_key::{self, SerializationVersion};
use api::json::{format_timestamp, value_to_json};
use api::keys::{redis_feature_field, redis_key, redis_ts_field};
use api::proto::feast::serving::get_online_features_request::Kind;
use api::proto::feast::serving::serving_service_client::ServingServiceClient;
use api::proto::feast::serving::{FeatureList, GetOnlineFeaturesRequest};
use api::proto::feast::types::RepeatedValue;
use api::proto::{Val, Value};
use hdrhistogram::Histogram;
use prost::Message;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params_from_iter};
use serde_json::{Map, Value as Json, json};

const EPOCH: &str = "1970-01-01T00:00:00Z";

fn usage() -> ! {
    eprintln!(
        "usage: hos-bench-load (--http URL | --grpc URL | --direct --backend VIEW=sqlite:PATH|VIEW=redis:HOST:PORT ... --project P)\n\
         \x20      --bodies FILE [--concurrency N] [--rate RPS] [--duration S] [--warmup S]\n\
         \x20      [--timeout S] [--grace S] [--cpu-pid PID ...] [--label TEXT] [--out FILE]"
    );
    std::process::exit(2)
}

#[derive(Clone, Debug)]
enum BackendSpec {
    Sqlite(PathBuf),
    Redis(String),
}

#[derive(Clone, Debug)]
struct Args {
    http: Option<String>,
    grpc: Option<String>,
    direct: bool,
    backends: HashMap<String, BackendSpec>,
    project: String,
    bodies: PathBuf,
    concurrency: usize,
    rate: Option<f64>,
    duration: f64,
    warmup: f64,
    timeout: f64,
    grace: f64,
    cpu_pids: Vec<u32>,
    label: String,
    out: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        http: None,
        grpc: None,
        direct: false,
        backends: HashMap::new(),
        project: String::new(),
        bodies: PathBuf::new(),
        concurrency: 1,
        rate: None,
        duration: 10.0,
        warmup: 1.0,
        timeout: 10.0,
        grace: 1.0,
        cpu_pids: Vec::new(),
        label: String::new(),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--http" => a.http = Some(val()),
            "--grpc" => a.grpc = Some(val()),
            "--direct" => a.direct = true,
            "--backend" => {
                let v = val();
                let (view, spec) = v.split_once('=').unwrap_or_else(|| usage());
                let spec = if let Some(p) = spec.strip_prefix("sqlite:") {
                    BackendSpec::Sqlite(PathBuf::from(p))
                } else if let Some(r) = spec.strip_prefix("redis:") {
                    BackendSpec::Redis(r.to_string())
                } else {
                    usage()
                };
                a.backends.insert(view.to_string(), spec);
            }
            "--project" => a.project = val(),
            "--bodies" => a.bodies = PathBuf::from(val()),
            "--concurrency" => a.concurrency = val().parse().unwrap_or_else(|_| usage()),
            "--rate" => a.rate = Some(val().parse().unwrap_or_else(|_| usage())),
            "--duration" => a.duration = val().parse().unwrap_or_else(|_| usage()),
            "--warmup" => a.warmup = val().parse().unwrap_or_else(|_| usage()),
            "--timeout" => a.timeout = val().parse().unwrap_or_else(|_| usage()),
            "--grace" => a.grace = val().parse().unwrap_or_else(|_| usage()),
            "--cpu-pid" => a.cpu_pids.push(val().parse().unwrap_or_else(|_| usage())),
            "--label" => a.label = val(),
            "--out" => a.out = Some(PathBuf::from(val())),
            _ => usage(),
        }
    }
    let modes =
        usize::from(a.http.is_some()) + usize::from(a.grpc.is_some()) + usize::from(a.direct);
    if modes != 1 || a.bodies.as_os_str().is_empty() || a.concurrency == 0 {
        usage();
    }
    if a.direct && a.project.is_empty() {
        usage();
    }
    if !(a.duration > 0.0 && a.duration <= 600.0) {
        eprintln!("--duration must be in (0, 600]");
        std::process::exit(2);
    }
    if let Some(r) = a.rate
        && !(r > 0.0 && r <= 1_000_000.0)
    {
        eprintln!("--rate must be in (0, 1e6]");
        std::process::exit(2);
    }
    a
}

// ---------------------------------------------------------------------------
// request bodies
// ---------------------------------------------------------------------------

/// A body split at its `@TS@` placeholders.
struct Template {
    parts: Vec<String>,
}

impl Template {
    fn new(line: &str) -> Template {
        Template {
            parts: line.split("@TS@").map(str::to_string).collect(),
        }
    }

    fn render(&self, ts: &str, out: &mut Vec<u8>) {
        out.clear();
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(ts.as_bytes());
            }
            out.extend_from_slice(p.as_bytes());
        }
    }
}

/// RFC 3339 UTC text of epoch seconds.
fn rfc3339(secs: i64) -> String {
    format_timestamp(secs, 0)
}

/// A parsed read request for the direct floor.
struct ReadReq {
    /// Entity columns in request order: join key -> values.
    entities: Vec<(String, Vec<Json>)>,
    rows: usize,
    /// Views in order of first appearance, with their requested features.
    views: Vec<(String, Vec<String>)>,
    /// Output columns: (view index, feature index, output name).
    columns: Vec<(usize, usize, String)>,
}

/// A parsed write request for the direct floor.
struct WriteReq {
    view: String,
    /// Per row: join-key values (sorted by the serializer) and features.
    keys: Vec<(Vec<String>, Vec<Value>)>,
    features: Vec<(String, Vec<Value>)>,
}

enum DirectReq {
    Read(ReadReq),
    Write(WriteReq),
}

/// A JSON number as Feast's type inference would store it: integers as
/// Int64, everything else with a fraction as Float64.
fn json_value(j: &Json) -> Value {
    let val = match j {
        Json::Number(n) if n.is_i64() => Some(Val::Int64Val(n.as_i64().unwrap_or(0))),
        Json::Number(n) => Some(Val::DoubleVal(n.as_f64().unwrap_or(0.0))),
        Json::String(s) => Some(Val::StringVal(s.clone())),
        Json::Bool(b) => Some(Val::BoolVal(*b)),
        _ => None,
    };
    Value { val }
}

fn parse_direct(line: &str) -> Result<DirectReq, String> {
    let body: Json = serde_json::from_str(line).map_err(|e| format!("bad body JSON: {e}"))?;
    if let Some(view) = body.get("feature_view_name").and_then(Json::as_str) {
        let df = body
            .get("df")
            .and_then(Json::as_object)
            .ok_or("write body without df")?;
        // Join keys: columns named *_id; features: everything else but the timestamp.
        let key_cols: Vec<(&String, &Vec<Json>)> = df
            .iter()
            .filter(|(k, _)| k.ends_with("_id"))
            .filter_map(|(k, v)| v.as_array().map(|a| (k, a)))
            .collect();
        let rows = key_cols.first().map(|(_, a)| a.len()).unwrap_or(0);
        let mut keys = Vec::with_capacity(rows);
        for r in 0..rows {
            keys.push((
                key_cols.iter().map(|(k, _)| (*k).clone()).collect(),
                key_cols.iter().map(|(_, a)| json_value(&a[r])).collect(),
            ));
        }
        let features = df
            .iter()
            .filter(|(k, _)| !k.ends_with("_id") && k.as_str() != "event_timestamp")
            .filter_map(|(k, v)| {
                v.as_array()
                    .map(|a| (k.clone(), a.iter().map(json_value).collect()))
            })
            .collect();
        return Ok(DirectReq::Write(WriteReq {
            view: view.to_string(),
            keys,
            features,
        }));
    }
    let full = body
        .get("full_feature_names")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let ents = body
        .get("entities")
        .and_then(Json::as_object)
        .ok_or("read body without entities")?;
    let entities: Vec<(String, Vec<Json>)> = ents
        .iter()
        .map(|(k, v)| (k.clone(), v.as_array().cloned().unwrap_or_default()))
        .collect();
    let rows = entities.first().map(|(_, v)| v.len()).unwrap_or(1);
    let mut views: Vec<(String, Vec<String>)> = Vec::new();
    let mut columns = Vec::new();
    for r in body
        .get("features")
        .and_then(Json::as_array)
        .ok_or("read body without features")?
    {
        let s = r.as_str().ok_or("feature ref not a string")?;
        let (v, f) = s.split_once(':').ok_or("feature ref without ':'")?;
        let vi = match views.iter().position(|(n, _)| n == v) {
            Some(i) => i,
            None => {
                views.push((v.to_string(), Vec::new()));
                views.len() - 1
            }
        };
        let fs = &mut views[vi].1;
        let fi = match fs.iter().position(|x| x == f) {
            Some(i) => i,
            None => {
                fs.push(f.to_string());
                fs.len() - 1
            }
        };
        let name = if full {
            format!("{v}__{f}")
        } else {
            f.to_string()
        };
        columns.push((vi, fi, name));
    }
    // Feast groups columns by view, in order of first appearance.
    columns.sort_by_key(|c| c.0);
    Ok(DirectReq::Read(ReadReq {
        entities,
        rows,
        views,
        columns,
    }))
}

/// A JSON read body as Feast's gRPC request: the same feature refs and
/// entity columns, values typed as the JSON path infers them (integers as
/// Int64), so both paths read the same rows.
fn parse_grpc(line: &str) -> Result<GetOnlineFeaturesRequest, String> {
    let body: Json = serde_json::from_str(line).map_err(|e| format!("bad body JSON: {e}"))?;
    let features = body
        .get("features")
        .and_then(Json::as_array)
        .ok_or("gRPC body without features")?
        .iter()
        .map(|f| {
            f.as_str()
                .map(str::to_string)
                .ok_or("feature ref not a string")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let entities = body
        .get("entities")
        .and_then(Json::as_object)
        .ok_or("gRPC body without entities")?
        .iter()
        .map(|(k, v)| {
            let vals = v
                .as_array()
                .map(|a| a.iter().map(json_value).collect())
                .unwrap_or_default();
            (k.clone(), RepeatedValue { val: vals })
        })
        .collect();
    Ok(GetOnlineFeaturesRequest {
        kind: Some(Kind::Features(FeatureList { val: features })),
        entities,
        full_feature_names: body
            .get("full_feature_names")
            .and_then(Json::as_bool)
            .unwrap_or(false),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------
// gRPC client: one HTTP/2 channel per worker, on a current-thread runtime
// ---------------------------------------------------------------------------

struct GrpcClient {
    rt: tokio::runtime::Runtime,
    endpoint: tonic::transport::Endpoint,
    client: Option<ServingServiceClient<tonic::transport::Channel>>,
}

impl GrpcClient {
    fn new(url: &str, timeout: Duration) -> GrpcClient {
        let host = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("only http:// gRPC URLs: {url}"));
        let addr = host
            .trim_end_matches('/')
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("cannot resolve {host}"));
        assert!(addr.ip().is_loopback(), "only loopback targets: {addr}");
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap_or_else(|e| panic!("bad gRPC URL {url}: {e}"))
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
        GrpcClient {
            rt,
            endpoint,
            client: None,
        }
    }

    /// One GetOnlineFeatures call; returns the response's encoded size.
    fn call(&mut self, req: &GetOnlineFeaturesRequest) -> Result<usize, String> {
        let GrpcClient {
            rt,
            endpoint,
            client,
        } = self;
        let res = rt.block_on(async {
            if client.is_none() {
                let ch = endpoint
                    .connect()
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                // Large 100-row answers exceed tonic's 4 MiB default.
                *client = Some(ServingServiceClient::new(ch).max_decoding_message_size(64 << 20));
            }
            let c = client.as_mut().ok_or("no channel")?;
            c.get_online_features(req.clone())
                .await
                .map(|r| r.get_ref().encoded_len())
                .map_err(|st| format!("grpc_{:?}", st.code()).to_lowercase())
        });
        if matches!(&res, Err(e) if e.starts_with("connect")) {
            self.client = None;
        }
        res
    }
}

// ---------------------------------------------------------------------------
// HTTP client: keep-alive HTTP/1.1 on a blocking socket
// ---------------------------------------------------------------------------

struct HttpClient {
    addr: SocketAddr,
    host: String,
    path: String,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    line: String,
}

impl HttpClient {
    fn new(url: &str, timeout: Duration) -> HttpClient {
        let rest = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("only http:// URLs: {url}"));
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = host
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("cannot resolve {host}"));
        assert!(addr.ip().is_loopback(), "only loopback targets: {addr}");
        HttpClient {
            addr,
            host: host.to_string(),
            path: path.to_string(),
            timeout,
            conn: None,
            wbuf: Vec::new(),
            rbuf: Vec::new(),
            line: String::new(),
        }
    }

    fn connect(&mut self) -> std::io::Result<()> {
        let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        self.conn = Some(BufReader::with_capacity(64 * 1024, s));
        Ok(())
    }

    /// Sends one POST; returns the status code and body length.
    fn post(&mut self, body: &[u8]) -> Result<(u16, usize), String> {
        let r = self.post_inner(body);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    fn post_inner(&mut self, body: &[u8]) -> Result<(u16, usize), String> {
        if self.conn.is_none() {
            self.connect()
                .map_err(|e| format!("connect: {}", io_kind(&e)))?;
        }
        self.wbuf.clear();
        write!(
            self.wbuf,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.path,
            self.host,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        self.wbuf.extend_from_slice(body);
        let conn = self.conn.as_mut().ok_or("no connection")?;
        conn.get_mut()
            .write_all(&self.wbuf)
            .map_err(|e| format!("write: {}", io_kind(&e)))?;
        // Status line.
        self.line.clear();
        let n = conn
            .read_line(&mut self.line)
            .map_err(|e| format!("read: {}", io_kind(&e)))?;
        if n == 0 {
            return Err("read: connection closed".into());
        }
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "bad status line".to_string())?;
        let mut len: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            self.line.clear();
            let n = conn
                .read_line(&mut self.line)
                .map_err(|e| format!("read: {}", io_kind(&e)))?;
            if n == 0 {
                return Err("read: connection closed in headers".into());
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        let size = if chunked {
            let mut total = 0;
            loop {
                self.line.clear();
                conn.read_line(&mut self.line)
                    .map_err(|e| format!("read: {}", io_kind(&e)))?;
                let n = usize::from_str_radix(self.line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| "bad chunk size".to_string())?;
                self.rbuf.resize(n + 2, 0);
                conn.read_exact(&mut self.rbuf)
                    .map_err(|e| format!("read: {}", io_kind(&e)))?;
                total += n;
                if n == 0 {
                    break;
                }
            }
            total
        } else {
            let n = len.ok_or("response without content-length")?;
            self.rbuf.resize(n, 0);
            conn.read_exact(&mut self.rbuf)
                .map_err(|e| format!("read: {}", io_kind(&e)))?;
            n
        };
        if close {
            self.conn = None;
        }
        Ok((status, size))
    }
}

fn io_kind(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timeout".into(),
        k => format!("{k:?}").to_lowercase(),
    }
}

// ---------------------------------------------------------------------------
// direct floor: the same lookups against the backends, in-process
// ---------------------------------------------------------------------------

/// One feature row of a view: values by requested feature, event time.
type Row = Option<(Vec<Option<Value>>, i64)>;

struct Direct {
    project: String,
    backends: HashMap<String, BackendSpec>,
    sqlite: HashMap<PathBuf, Connection>,
    redis: HashMap<String, redis::Connection>,
    /// Tables known to have Feast's `value_text` column.
    value_text: HashMap<String, bool>,
    timeout: Duration,
}

fn sqlite_err(e: rusqlite::Error) -> String {
    format!("sqlite: {e}")
}

fn redis_err(e: redis::RedisError) -> String {
    format!("redis: {e}")
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Direct {
    fn new(args: &Args) -> Direct {
        Direct {
            project: args.project.clone(),
            backends: args.backends.clone(),
            sqlite: HashMap::new(),
            redis: HashMap::new(),
            value_text: HashMap::new(),
            timeout: Duration::from_secs_f64(args.timeout),
        }
    }

    fn spec(&self, view: &str) -> Result<BackendSpec, String> {
        self.backends
            .get(view)
            .cloned()
            .ok_or_else(|| format!("no --backend for view {view}"))
    }

    fn sqlite_conn(&mut self, path: &PathBuf) -> Result<&mut Connection, String> {
        if !self.sqlite.contains_key(path) {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sqlite_err)?;
            c.busy_timeout(Duration::from_secs(5)).map_err(sqlite_err)?;
            self.sqlite.insert(path.clone(), c);
        }
        Ok(self.sqlite.get_mut(path).expect("just inserted"))
    }

    fn redis_conn(&mut self, addr: &str) -> Result<&mut redis::Connection, String> {
        if !self.redis.contains_key(addr) {
            let client = redis::Client::open(format!("redis://{addr}/")).map_err(redis_err)?;
            let c = client
                .get_connection_with_timeout(self.timeout)
                .map_err(redis_err)?;
            c.set_read_timeout(Some(self.timeout)).map_err(redis_err)?;
            c.set_write_timeout(Some(self.timeout)).map_err(redis_err)?;
            self.redis.insert(addr.to_string(), c);
        }
        Ok(self.redis.get_mut(addr).expect("just inserted"))
    }

    /// Feast's SQLite read: every row of the keys, features filtered here.
    fn sqlite_read(
        &mut self,
        path: &PathBuf,
        view: &str,
        keys: &[Vec<u8>],
        features: &[String],
    ) -> Result<Vec<Row>, String> {
        let table = format!("{}_{}", self.project, view);
        let conn = self.sqlite_conn(path)?;
        let mut out: Vec<Row> = vec![None; keys.len()];
        let mut slots: HashMap<&[u8], Vec<usize>> = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            slots.entry(k.as_slice()).or_default().push(i);
        }
        let fidx: HashMap<&str, usize> = features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.as_str(), i))
            .collect();
        let unique: Vec<&[u8]> = slots.keys().copied().collect();
        let sql = format!(
            "SELECT entity_key, feature_name, value, event_ts FROM {} WHERE entity_key IN ({})",
            quote(&table),
            vec!["?"; unique.len()].join(",")
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(sqlite_err)?;
        let mut rows = stmt
            .query(params_from_iter(unique.iter()))
            .map_err(sqlite_err)?;
        while let Some(row) = rows.next().map_err(sqlite_err)? {
            let ValueRef::Blob(key) = row.get_ref(0).map_err(sqlite_err)? else {
                continue;
            };
            let Some(targets) = slots.get(key) else {
                continue;
            };
            let ValueRef::Text(name) = row.get_ref(1).map_err(sqlite_err)? else {
                continue;
            };
            let ts = match row.get_ref(3).map_err(sqlite_err)? {
                ValueRef::Integer(i) => i,
                _ => 0,
            };
            let fi = std::str::from_utf8(name)
                .ok()
                .and_then(|n| fidx.get(n).copied());
            let value = match (fi, row.get_ref(2).map_err(sqlite_err)?) {
                (Some(_), ValueRef::Blob(b)) => {
                    Some(Value::decode(b).map_err(|e| format!("decode: {e}"))?)
                }
                (Some(_), _) => Some(Value::default()),
                (None, _) => None,
            };
            for &slot in targets {
                let entry = out[slot].get_or_insert_with(|| (vec![None; features.len()], ts));
                entry.1 = entry.1.max(ts);
                if let (Some(i), Some(v)) = (fi, value.as_ref()) {
                    entry.0[i] = Some(v.clone());
                }
            }
        }
        Ok(out)
    }

    /// Feast's Redis read: one pipelined HMGET per entity.
    fn redis_read(
        &mut self,
        addr: &str,
        view: &str,
        keys: &[Vec<u8>],
        features: &[String],
    ) -> Result<Vec<Row>, String> {
        let project = self.project.clone();
        let fields: Vec<Vec<u8>> = features
            .iter()
            .map(|f| redis_feature_field(view, f).to_vec())
            .chain(std::iter::once(redis_ts_field(view).into_bytes()))
            .collect();
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("HMGET").arg(redis_key(k, &project)).arg(&fields);
        }
        let conn = self.redis_conn(addr)?;
        let replies: Vec<Vec<Option<Vec<u8>>>> = pipe.query(conn).map_err(redis_err)?;
        replies
            .into_iter()
            .map(|mut cells| {
                let ts = cells.pop().flatten();
                if ts.is_none() && cells.iter().all(Option::is_none) {
                    return Ok(None);
                }
                let values = cells
                    .into_iter()
                    .map(|c| {
                        c.map(|b| Value::decode(b.as_slice()).map_err(|e| format!("decode: {e}")))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let secs = ts.as_deref().and_then(prost_types_seconds).unwrap_or(0);
                Ok(Some((values, secs)))
            })
            .collect()
    }

    fn read(&mut self, req: &ReadReq) -> Result<String, String> {
        // Entity keys per view (every view here is keyed by all request
        // entity columns, as in the benchmark's repos).
        let names: Vec<&str> = req.entities.iter().map(|(k, _)| k.as_str()).collect();
        let cols: Vec<Vec<Value>> = req
            .entities
            .iter()
            .map(|(_, v)| v.iter().map(json_value).collect())
            .collect();
        let mut keys = Vec::with_capacity(req.rows);
        let mut row_values: Vec<&Value> = Vec::with_capacity(names.len());
        for r in 0..req.rows {
            row_values.clear();
            row_values.extend(cols.iter().map(|c| &c[r]));
            let mut out = Vec::with_capacity(16 + 24 * names.len());
            entity_key::serialize_into(&names, &row_values, SerializationVersion::V3, &mut out)
                .map_err(|e| e.to_string())?;
            keys.push(out);
        }
        let mut results: Vec<Vec<Row>> = Vec::with_capacity(req.views.len());
        for (view, features) in &req.views {
            let rows = match self.spec(view)? {
                BackendSpec::Sqlite(p) => self.sqlite_read(&p, view, &keys, features)?,
                BackendSpec::Redis(a) => self.redis_read(&a, view, &keys, features)?,
            };
            results.push(rows);
        }
        // The response, in the proxy's (feast serve's) shape.
        let mut names_out = Vec::new();
        let mut out = Vec::new();
        for (k, items) in &req.entities {
            let values: Vec<Json> = items
                .iter()
                .map(|j| value_to_json(&json_value(j)))
                .collect();
            names_out.push(Json::String(k.clone()));
            out.push(json!({
                "values": values,
                "statuses": vec!["PRESENT"; items.len()],
                "event_timestamps": vec![EPOCH; items.len()],
            }));
        }
        for (vi, fi, name) in &req.columns {
            let rows = &results[*vi];
            let mut values = Vec::with_capacity(req.rows);
            let mut statuses = Vec::with_capacity(req.rows);
            let mut stamps = Vec::with_capacity(req.rows);
            for row in rows {
                match row
                    .as_ref()
                    .and_then(|(vals, ts)| vals[*fi].as_ref().map(|v| (v, *ts)))
                {
                    Some((v, ts)) => {
                        values.push(value_to_json(v));
                        statuses.push("PRESENT");
                        stamps.push(Json::String(format_timestamp(ts, 0)));
                    }
                    None => {
                        values.push(Json::Null);
                        statuses.push("NOT_FOUND");
                        stamps.push(Json::String(EPOCH.to_string()));
                    }
                }
            }
            names_out.push(Json::String(name.clone()));
            out.push(json!({"values": values, "statuses": statuses, "event_timestamps": stamps}));
        }
        let mut metadata = Map::new();
        metadata.insert("feature_names".into(), Json::Array(names_out));
        let mut resp = Map::new();
        resp.insert("results".into(), Json::Array(out));
        resp.insert("metadata".into(), Json::Object(metadata));
        Ok(Json::Object(resp).to_string())
    }

    fn write(&mut self, req: &WriteReq, ts: i64) -> Result<String, String> {
        let mut keys = Vec::with_capacity(req.keys.len());
        for (names, vals) in &req.keys {
            let n: Vec<&str> = names.iter().map(String::as_str).collect();
            let v: Vec<&Value> = vals.iter().collect();
            let mut out = Vec::new();
            entity_key::serialize_into(&n, &v, SerializationVersion::V3, &mut out)
                .map_err(|e| e.to_string())?;
            keys.push(out);
        }
        match self.spec(&req.view)? {
            BackendSpec::Sqlite(p) => self.sqlite_write(&p, req, &keys, ts)?,
            BackendSpec::Redis(a) => self.redis_write(&a, req, &keys, ts)?,
        }
        Ok("null".into())
    }

    /// Feast's SQLite write: an upsert per (entity, feature) in one transaction.
    fn sqlite_write(
        &mut self,
        path: &PathBuf,
        req: &WriteReq,
        keys: &[Vec<u8>],
        ts: i64,
    ) -> Result<(), String> {
        let table = format!("{}_{}", self.project, req.view);
        let known = self.value_text.get(&table).copied();
        let conn = self.sqlite_conn(path)?;
        let has_text = match known {
            Some(b) => b,
            None => {
                let mut stmt = conn
                    .prepare(&format!("PRAGMA table_info({})", quote(&table)))
                    .map_err(sqlite_err)?;
                let cols: Vec<String> = stmt
                    .query_map([], |r| r.get::<_, String>(1))
                    .map_err(sqlite_err)?
                    .collect::<Result<_, _>>()
                    .map_err(sqlite_err)?;
                cols.iter().any(|c| c == "value_text")
            }
        };
        let t = quote(&table);
        let sql = if has_text {
            format!(
                "INSERT INTO {t} (entity_key, feature_name, value, value_text, vector_value, event_ts, created_ts) \
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, NULL) ON CONFLICT(entity_key, feature_name) DO UPDATE SET \
                 value = excluded.value, value_text = excluded.value_text, vector_value = excluded.vector_value, \
                 event_ts = excluded.event_ts, created_ts = excluded.created_ts"
            )
        } else {
            format!(
                "INSERT INTO {t} (entity_key, feature_name, value, vector_value, event_ts, created_ts) \
                 VALUES (?1, ?2, ?3, NULL, ?5, NULL) ON CONFLICT(entity_key, feature_name) DO UPDATE SET \
                 value = excluded.value, vector_value = excluded.vector_value, \
                 event_ts = excluded.event_ts, created_ts = excluded.created_ts"
            )
        };
        let tx = conn.transaction().map_err(sqlite_err)?;
        {
            let mut stmt = tx.prepare_cached(&sql).map_err(sqlite_err)?;
            for (r, key) in keys.iter().enumerate() {
                for (name, vals) in &req.features {
                    let v = &vals[r];
                    let text = match &v.val {
                        Some(Val::DoubleVal(d)) => Some(format!("{d:?}")),
                        Some(Val::Int64Val(i)) => Some(i.to_string()),
                        _ => None,
                    };
                    stmt.execute(rusqlite::params![key, name, v.encode_to_vec(), text, ts])
                        .map_err(sqlite_err)?;
                }
            }
        }
        tx.commit().map_err(sqlite_err)?;
        self.value_text.insert(table, has_text);
        Ok(())
    }

    /// Feast's Redis write: HGET of the stored times, then HSET of newer rows.
    fn redis_write(
        &mut self,
        addr: &str,
        req: &WriteReq,
        keys: &[Vec<u8>],
        ts: i64,
    ) -> Result<(), String> {
        let project = self.project.clone();
        let ts_field = redis_ts_field(&req.view);
        let rkeys: Vec<Vec<u8>> = keys.iter().map(|k| redis_key(k, &project)).collect();
        let fields: Vec<[u8; 4]> = req
            .features
            .iter()
            .map(|(n, _)| redis_feature_field(&req.view, n))
            .collect();
        let conn = self.redis_conn(addr)?;
        let mut pipe = redis::pipe();
        for k in &rkeys {
            pipe.cmd("HGET").arg(k).arg(&ts_field);
        }
        let stored: Vec<Option<Vec<u8>>> = pipe.query(conn).map_err(redis_err)?;
        let mut pipe = redis::pipe();
        let mut writes = 0;
        for (r, (k, prev)) in rkeys.iter().zip(stored).enumerate() {
            if let Some(p) = prev.as_deref().and_then(prost_types_seconds)
                && p != 0
                && ts <= p
            {
                continue;
            }
            let mut hset = redis::cmd("HSET");
            hset.arg(k);
            for (fi, (_, vals)) in req.features.iter().enumerate() {
                hset.arg(fields[fi].as_slice()).arg(vals[r].encode_to_vec());
            }
            hset.arg(&ts_field).arg(encode_ts_seconds(ts));
            pipe.add_command(hset).ignore();
            writes += 1;
        }
        if writes > 0 {
            let () = pipe.query(conn).map_err(redis_err)?;
        }
        Ok(())
    }
}

/// Seconds of a serialized google.protobuf.Timestamp (field 1, varint).
fn prost_types_seconds(b: &[u8]) -> Option<i64> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Ts {
        #[prost(int64, tag = "1")]
        seconds: i64,
        #[prost(int32, tag = "2")]
        nanos: i32,
    }
    Ts::decode(b).ok().map(|t| t.seconds)
}

fn encode_ts_seconds(secs: i64) -> Vec<u8> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Ts {
        #[prost(int64, tag = "1")]
        seconds: i64,
        #[prost(int32, tag = "2")]
        nanos: i32,
    }
    Ts {
        seconds: secs,
        nanos: 0,
    }
    .encode_to_vec()
}

// ---------------------------------------------------------------------------
// the load loop
// ---------------------------------------------------------------------------

enum Target {
    Http(Box<HttpClient>),
    Grpc(Box<GrpcClient>),
    Direct(Box<Direct>),
}

struct Bodies {
    templates: Vec<Template>,
    direct: Vec<DirectReq>,
    grpc: Vec<GetOnlineFeaturesRequest>,
}

/// Highest latency the histograms hold: 100 s in ns (a request's timeout is
/// far below; anything above is clamped to it, never dropped).
const HIST_MAX_NS: u64 = 100_000_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3)
        .unwrap_or_else(|e| panic!("histogram bounds: {e}"))
}

struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    sent: u64,
    errors: BTreeMap<String, u64>,
    bytes: u64,
    last_done: Option<Instant>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            hist: new_histogram(),
            ok: 0,
            sent: 0,
            errors: BTreeMap::new(),
            bytes: 0,
            last_done: None,
        }
    }
}

struct Shared {
    next: AtomicU64,
}

/// Sends request `k` and returns (ok?, error kind, response bytes).
fn send(
    target: &mut Target,
    bodies: &Bodies,
    k: u64,
    base_secs: i64,
    buf: &mut Vec<u8>,
) -> Result<usize, String> {
    let i = (k % bodies.templates.len() as u64) as usize;
    let ts_secs = base_secs + k as i64;
    match target {
        Target::Http(c) => {
            let ts = rfc3339(ts_secs);
            bodies.templates[i].render(&ts, buf);
            let (status, n) = c.post(buf)?;
            if status == 200 {
                Ok(n)
            } else {
                Err(format!("http_{status}"))
            }
        }
        Target::Grpc(c) => c.call(&bodies.grpc[i]),
        Target::Direct(d) => {
            let s = match &bodies.direct[i] {
                DirectReq::Read(r) => d.read(r)?,
                DirectReq::Write(w) => d.write(w, ts_secs)?,
            };
            Ok(s.len())
        }
    }
}

/// One phase of load on this worker until its deadline. Returns the tally.
#[allow(clippy::too_many_arguments)]
fn run_phase(
    target: &mut Target,
    bodies: &Bodies,
    shared: &Shared,
    start: Instant,
    duration: Duration,
    rate: Option<f64>,
    grace: Duration,
    base_secs: i64,
    record: bool,
) -> Tally {
    let mut t = Tally::default();
    let deadline = start + duration;
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let k = shared.next.fetch_add(1, Ordering::Relaxed);
        let due = match rate {
            None => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
            Some(r) => {
                let due = start + Duration::from_secs_f64(k as f64 / r);
                if due >= deadline {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                } else if now >= deadline + grace {
                    // Still behind schedule after the grace period: stop;
                    // the rest is reported as unsent.
                    break;
                }
                due
            }
        };
        t.sent += 1;
        let res = send(target, bodies, k, base_secs, &mut buf);
        let done = Instant::now();
        if !record {
            continue;
        }
        match res {
            Ok(n) => {
                t.ok += 1;
                t.bytes += n as u64;
                // Open loop: from the request's scheduled time, so time
                // spent waiting behind a slow server counts (no
                // coordinated omission). Closed loop: due == send time.
                let ns = u64::try_from(done.duration_since(due).as_nanos()).unwrap_or(u64::MAX);
                t.hist.saturating_record(ns.clamp(1, HIST_MAX_NS));
            }
            Err(e) => *t.errors.entry(e).or_default() += 1,
        }
        t.last_done = Some(done);
    }
    t
}

/// A quantile of the histogram in µs (NaN when empty).
fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Summed utime + stime of these processes, in seconds (a process that is
/// gone counts 0). /proc reports clock ticks of `clk_tck` per second.
fn cpu_seconds(pids: &[u32], clk_tck: f64) -> f64 {
    let mut ticks = 0u64;
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces): state is
        // field 3, utime 14 and stime 15 (1-based) -> 11 and 12 here.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        for i in [11, 12] {
            ticks += f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ticks as f64 / clk_tck
}

/// The kernel's USER_HZ (`getconf CLK_TCK`; 100 on Linux when unknown).
fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

fn main() {
    let args = parse_args();
    let text = std::fs::read_to_string(&args.bodies)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", args.bodies.display()));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no bodies in {}", args.bodies.display());
    let grpc = if args.grpc.is_some() {
        lines
            .iter()
            .map(|l| parse_grpc(l).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    } else {
        Vec::new()
    };
    let direct = if args.direct {
        lines
            .iter()
            .map(|l| parse_direct(l).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    } else {
        Vec::new()
    };
    let bodies = Arc::new(Bodies {
        templates: lines.iter().map(|l| Template::new(l)).collect(),
        direct,
        grpc,
    });
    let tck = clk_tck();
    let timeout = Duration::from_secs_f64(args.timeout);
    let base_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let n = args.concurrency;
    // Phases: every worker starts the warm-up together (A), waits for all
    // to finish it (B), and starts the measurement at the time main sets
    // once they all have (C).
    let barrier = Arc::new(Barrier::new(n + 1));
    let warm = Arc::new(Shared {
        next: AtomicU64::new(0),
    });
    let meas = Arc::new(Shared {
        next: AtomicU64::new(0),
    });
    let starts = Arc::new(std::sync::Mutex::new((Instant::now(), Instant::now())));
    let mut handles = Vec::new();
    for _ in 0..n {
        let args = args.clone();
        let bodies = Arc::clone(&bodies);
        let barrier = Arc::clone(&barrier);
        let warm = Arc::clone(&warm);
        let meas = Arc::clone(&meas);
        let starts = Arc::clone(&starts);
        handles.push(std::thread::spawn(move || {
            let mut target = match (&args.http, &args.grpc) {
                (Some(url), _) => Target::Http(Box::new(HttpClient::new(url, timeout))),
                (None, Some(url)) => Target::Grpc(Box::new(GrpcClient::new(url, timeout))),
                (None, None) => Target::Direct(Box::new(Direct::new(&args))),
            };
            let grace = Duration::from_secs_f64(args.grace);
            barrier.wait(); // A
            let ws = starts.lock().expect("lock").0;
            let mut warm_sent = 0;
            if args.warmup > 0.0 {
                // Warm-up writes carry times before the measured ones, so a
                // measured write is never skipped as stale.
                warm_sent = run_phase(
                    &mut target,
                    &bodies,
                    &warm,
                    ws,
                    Duration::from_secs_f64(args.warmup),
                    args.rate,
                    Duration::ZERO,
                    base_secs - 10_000_000,
                    false,
                )
                .sent;
            }
            barrier.wait(); // B
            barrier.wait(); // C
            let ms = starts.lock().expect("lock").1;
            let t = run_phase(
                &mut target,
                &bodies,
                &meas,
                ms,
                Duration::from_secs_f64(args.duration),
                args.rate,
                grace,
                base_secs,
                true,
            );
            (warm_sent, t)
        }));
    }
    starts.lock().expect("lock").0 = Instant::now();
    barrier.wait(); // A
    barrier.wait(); // B
    let cpu0 = cpu_seconds(&args.cpu_pids, tck);
    starts.lock().expect("lock").1 = Instant::now();
    barrier.wait(); // C
    let measure_start = starts.lock().expect("lock").1;
    let mut total = Tally::default();
    let mut warmup_sent = 0;
    for h in handles {
        let (w, t) = h.join().expect("worker panicked");
        warmup_sent += w;
        total.ok += t.ok;
        total.sent += t.sent;
        total.bytes += t.bytes;
        total
            .hist
            .add(&t.hist)
            .unwrap_or_else(|e| panic!("merging histograms: {e}"));
        for (k, v) in t.errors {
            *total.errors.entry(k).or_default() += v;
        }
        total.last_done = match (total.last_done, t.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    // After the last measured request of every worker.
    let cpu1 = cpu_seconds(&args.cpu_pids, tck);
    let lat = &total.hist;
    let elapsed = total
        .last_done
        .map(|d| d.duration_since(measure_start).as_secs_f64())
        .unwrap_or(args.duration)
        .max(args.duration.min(1e-3));
    let errors: u64 = total.errors.values().sum();
    let scheduled = args.rate.map(|r| (args.duration * r).ceil() as u64);
    let unsent = scheduled.map(|s| s.saturating_sub(total.sent)).unwrap_or(0);
    let mean = if lat.is_empty() {
        f64::NAN
    } else {
        lat.mean() / 1000.0
    };
    let server_cpu = if args.cpu_pids.is_empty() {
        Json::Null
    } else {
        let cpu = (cpu1 - cpu0).max(0.0);
        json!({
            "pids": args.cpu_pids,
            "cpu_s": (cpu * 1000.0).round() / 1000.0,
            "clk_tck": tck,
            "window": "measured phase (after warm-up, to the last answer)",
            "us_per_request": if total.sent > 0 { (cpu * 1e6 / total.sent as f64).round() } else { f64::NAN },
        })
    };
    let num = |x: f64| {
        serde_json::Number::from_f64((x * 1000.0).round() / 1000.0)
            .map(Json::Number)
            .unwrap_or(Json::Null)
    };
    let out = json!({
        "label": args.label,
        "mode": if args.direct { "direct" } else if args.grpc.is_some() { "grpc" } else { "http" },
        "target": args.http.clone().or_else(|| args.grpc.clone()).unwrap_or_else(|| "direct".into()),
        "concurrency": args.concurrency,
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "elapsed_s": num(elapsed),
        "scheduled": scheduled,
        "sent": total.sent,
        "warmup_sent": warmup_sent,
        "ok": total.ok,
        "errors": errors,
        "error_kinds": total.errors,
        "unsent": unsent,
        "throughput_rps": num(total.ok as f64 / elapsed),
        "response_bytes_mean": num(if total.ok > 0 { total.bytes as f64 / total.ok as f64 } else { 0.0 }),
        // Open loop: each latency runs from the request's scheduled send
        // time (coordinated-omission-correct); closed loop: from its send.
        "latency_from": if args.rate.is_some() { "scheduled" } else { "sent" },
        "latency_recorder": "hdrhistogram, per-worker histograms merged, 3 significant digits, 1 ns..100 s",
        "latency_samples": lat.len(),
        "server_cpu": server_cpu,
        "latency_us": {
            "min": num(if lat.is_empty() { f64::NAN } else { lat.min() as f64 / 1000.0 }),
            "mean": num(mean),
            "p50": num(pct(lat, 0.50)),
            "p90": num(pct(lat, 0.90)),
            "p99": num(pct(lat, 0.99)),
            "p99.9": num(pct(lat, 0.999)),
            "max": num(if lat.is_empty() { f64::NAN } else { lat.max() as f64 / 1000.0 }),
        },
    });
    let s = serde_json::to_string_pretty(&out).expect("json");
    if let Some(p) = &args.out {
        std::fs::write(p, &s).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
    }
    println!("{s}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_request_matches_the_json_body() {
        let req = parse_grpc(
            r#"{"features":["user_stats:f00","user_stats:f01"],"entities":{"user_id":[7,42]},"full_feature_names":true}"#,
        )
        .unwrap();
        match req.kind {
            Some(Kind::Features(FeatureList { val })) => {
                assert_eq!(val, vec!["user_stats:f00", "user_stats:f01"])
            }
            other => panic!("unexpected kind {other:?}"),
        }
        let ids: Vec<Option<Val>> = req.entities["user_id"]
            .val
            .iter()
            .map(|v| v.val.clone())
            .collect();
        assert_eq!(ids, vec![Some(Val::Int64Val(7)), Some(Val::Int64Val(42))]);
        assert!(req.full_feature_names);
        assert!(parse_grpc(r#"{"entities":{"user_id":[1]}}"#).is_err());
    }

    #[test]
    fn merged_histograms_give_the_percentiles_of_all_samples() {
        // Worker A: 1..=900 µs, worker B: 901..=1000 µs (as ns).
        let mut a = Tally::default();
        let mut b = Tally::default();
        for us in 1..=1000u64 {
            let t = if us <= 900 { &mut a } else { &mut b };
            t.hist.saturating_record(us * 1000);
        }
        a.hist.add(&b.hist).unwrap();
        assert_eq!(a.hist.len(), 1000);
        // 3 significant digits: within 0.1 % of the exact order statistic.
        for (q, exact) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0), (0.999, 999.0)] {
            let got = pct(&a.hist, q);
            assert!(
                (got - exact).abs() <= exact * 0.001 + 1.0,
                "q={q}: {got} vs {exact}"
            );
        }
        assert!((a.hist.max() as f64 / 1000.0 - 1000.0).abs() <= 1.0);
        assert!(pct(&new_histogram(), 0.5).is_nan());
    }

    #[test]
    fn cpu_seconds_reads_this_process() {
        let me = std::process::id();
        let t0 = cpu_seconds(&[me], 100.0);
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let t1 = cpu_seconds(&[me], 100.0);
        assert!(t1 - t0 >= 0.1, "{t0} -> {t1}");
        // A pid that does not exist counts 0.
        assert_eq!(cpu_seconds(&[u32::MAX], 100.0), 0.0);
    }
}

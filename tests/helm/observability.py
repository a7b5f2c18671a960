#!/usr/bin/env python3
"""Checks the chart's observability objects against the metrics the code exports.

Usage (run by tests/helm/check.sh with a Python that has PyYAML):

  observability.py ROOT metrics
      Print the metric series hos-proxy and hos-operator export, derived
      from the `registry.register(` calls of proxy/src/metrics.rs and
      operator/src/metrics.rs (prefix, type, label struct), one per line.
  observability.py ROOT exposition METRICS.txt COMPONENT
      A live /metrics text of COMPONENT (proxy|operator): every family has
      the type the source registers it with, every sample is a derived
      series with the label set of its struct, and every unlabelled metric
      is there (labelled families show up once they have a series).
  observability.py ROOT servicemonitors RENDER.yaml NAMESPACES
      The two ServiceMonitors select the operator's metrics Service and the
      proxy Services by the labels hos-operator puts on them, port http, in
      NAMESPACES (comma-separated; empty: any namespace).
  observability.py ROOT dashboard RENDER.yaml PROMTOOL_RULES_OUT
      The dashboard ConfigMap: label, JSON identical to dashboards/hos.json,
      layout, variables, every query uses exported metrics and labels, the
      required panels exist and every exported family is shown. Writes the
      queries (Grafana variables replaced) as a rule file for promtool.
  observability.py ROOT rules RENDER.yaml PROMTOOL_RULES_OUT
      The PrometheusRule: structure, severities, annotations, every
      expression uses exported metrics and labels, the alert set matches the
      values schema. Writes spec.groups as a plain rule file for promtool.

Exits 1 with one line per problem, else prints a one-line summary.
The PromQL check here is a tokenizer, not a parser: balanced brackets,
known functions, metric names, label names in matchers and groupings, and
rate()/increase() only on counters; promtool (when built) parses for real.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# The files registering each component's metrics into its prefixed
# registry (the per-view families register into the proxy's, from their
# own module).
SOURCES = {"proxy": ["proxy/src/metrics.rs", "proxy/src/view_metrics.rs"],
           "operator": ["operator/src/metrics.rs"]}
PREFIX = {"proxy": "hos_proxy", "operator": "hos_operator"}

# Labels the Prometheus Operator puts on every series of a ServiceMonitor's
# targets; the proxies' ServiceMonitor adds its relabeling targets (store).
TARGET_LABELS = {"job", "instance", "namespace", "service", "pod", "container", "endpoint"}

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes",
    "clamp", "clamp_max", "clamp_min", "count_over_time", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_quantile", "holt_winters", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "last_over_time",
    "ln", "log10", "log2", "max_over_time", "min_over_time", "minute",
    "month", "predict_linear", "present_over_time", "quantile_over_time",
    "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
    "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "time",
    "timestamp", "vector", "year",
}
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


# ---- metrics from the source -------------------------------------------------
@dataclass
class Series:
    name: str  # as scraped, e.g. hos_proxy_requests_total
    family: str  # as registered with prefix, e.g. hos_proxy_requests
    kind: str  # counter | gauge | histogram
    labels: set[str] = field(default_factory=set)


def _label_structs(src: str) -> dict[str, list[str]]:
    out = {}
    for m in re.finditer(r"#\[derive\([^)]*EncodeLabelSet[^)]*\)\]\s*pub struct (\w+)\s*\{([^}]*)\}", src):
        out[m.group(1)] = re.findall(r"pub (\w+)\s*:", m.group(2))
    return out


def families(root: Path, component: str) -> dict[str, tuple[str, list[str]]]:
    """family -> (kind, labels) registered in COMPONENT's source files."""
    where = " + ".join(SOURCES[component])
    # Unit tests make registries of their own: only the code above them counts.
    src = "\n".join(re.split(r"^#\[cfg\(test\)\]\s*\nmod tests", (root / f).read_text(), flags=re.M)[0]
                    for f in SOURCES[component])
    prefixes = re.findall(r'Registry::with_prefix\("([A-Za-z_:][A-Za-z0-9_:]*)"\)', src)
    if prefixes != [PREFIX[component]]:
        raise SystemExit(f"{where}: expected one Registry::with_prefix(\"{PREFIX[component]}\"), found {prefixes}")
    structs = _label_structs(src)
    # `let name = Type...;` and struct fields `name: Type<...>,` (metrics
    # registered as `f.name.clone()`).
    bindings = {m.group(1): m.group(2) for m in re.finditer(r"let (\w+)\s*=\s*([^;]+);", src)}
    fields = {m.group(1): m.group(2) for m in re.finditer(
        r"^\s*(?:pub\s+)?(\w+)\s*:\s*((?:Family\s*<|(?:Counter|Gauge|Histogram)\s*(?:<|,))[^\n]*?),?\s*$",
        src, re.M)}
    calls = re.findall(
        r'registry\s*\.\s*(register\w*)\(\s*"([^"]+)"\s*,\s*"(?:[^"\\]|\\.)*"\s*,\s*([\w.]+)\.clone\(\)\s*,?\s*\)', src)
    total = len(re.findall(r"\.register\w*\(", src))
    if len(calls) != total:
        raise SystemExit(f"{where}: {total} register calls, only {len(calls)} understood "
                         "(expected registry.register(\"name\", \"help\", metric.clone()))")
    out = {}
    for method, name, var in calls:
        if method != "register":
            raise SystemExit(f"{where}: {method}(\"{name}\") is not handled (a unit suffix changes the name)")
        ty = fields.get(var.rsplit(".", 1)[1]) if "." in var else bindings.get(var)
        if ty is None:
            raise SystemExit(f"{where}: no `let {var} = ...` or field type for registered metric {name}")
        fam = re.match(r"Family\s*(?:::)?<\s*(\w+)\s*,\s*(Counter|Gauge|Histogram)\b", ty)
        if fam:
            struct, kind = fam.groups()
            if struct not in structs:
                raise SystemExit(f"{where}: label set {struct} of {name} not found")
            labels = structs[struct]
        else:
            plain = re.match(r"(Counter|Gauge|Histogram)\b", ty)
            if not plain:
                raise SystemExit(f"{where}: cannot tell the type of {name} from `{ty}`")
            kind, labels = plain.group(1), []
        out[f"{PREFIX[component]}_{name}"] = (kind.lower(), labels)
    return out


def exported(root: Path, extra_proxy_labels: set[str] | None = None) -> dict[str, Series]:
    """Series name -> Series, as prometheus-client 0.24 encodes them:
    counters get _total, histograms _bucket (with le), _sum and _count."""
    series: dict[str, Series] = {}
    for component in SOURCES:
        fams = families(root, component)
        extra = TARGET_LABELS | ((extra_proxy_labels or set()) if component == "proxy" else set())
        for fam, (kind, labels) in fams.items():
            names = {"counter": [(f"{fam}_total", [])], "gauge": [(fam, [])],
                     "histogram": [(f"{fam}_bucket", ["le"]), (f"{fam}_sum", []), (f"{fam}_count", [])]}[kind]
            for name, more in names:
                series[name] = Series(name, fam, kind, set(labels) | set(more) | extra)
    return series


# ---- PromQL tokens -----------------------------------------------------------
TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>(?:[0-9]*\.)?[0-9]+(?:[eE][-+]?[0-9]+)?(?:ms|s|m|h|d|w|y)?(?:[0-9]+(?:ms|s|m|h|d|w|y))*)
  | (?P<id>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]:@])
""", re.VERBOSE)


@dataclass
class Query:
    metrics: list[str] = field(default_factory=list)
    matchers: list[tuple[str | None, str]] = field(default_factory=list)  # (metric or None, label)
    groupings: list[list[str]] = field(default_factory=list)
    counter_args: list[str] = field(default_factory=list)  # metrics under rate/increase
    functions: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)


def tokenize(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"unexpected character {expr[pos]!r} at {pos}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def analyse(expr: str) -> Query:
    """The metric names, label names and functions an expression uses;
    ValueError when it is not well formed."""
    toks = tokenize(expr)
    q = Query()
    stack: list[str] = []
    pairs = {")": "(", "}": "{", "]": "["}
    i = 0
    last_metric_at = -2
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "var":
            q.variables.append(text.strip("${}").split(":")[0])
        elif kind == "op" and text in "({[":
            stack.append(text)
            if text == "{":
                # Matchers: label op string {, label op string}
                metric = toks[i - 1][1] if i == last_metric_at + 1 else None
                j = i + 1
                while j < len(toks) and toks[j][1] != "}":
                    if toks[j][0] != "id" or j + 2 >= len(toks) or toks[j + 1][1] not in ("=", "!=", "=~", "!~") \
                            or toks[j + 2][0] not in ("str",):
                        raise ValueError(f"bad label matcher near {' '.join(t for _, t in toks[j:j + 3])!r}")
                    q.matchers.append((metric, toks[j][1]))
                    j += 3
                    if j < len(toks) and toks[j][1] == ",":
                        j += 1
                if j >= len(toks):
                    raise ValueError("unclosed {")
                stack.pop()
                i = j
            elif text == "[":
                # A range: duration or Grafana variable, optional :resolution.
                j = i + 1
                body = []
                while j < len(toks) and toks[j][1] != "]":
                    body.append(toks[j])
                    j += 1
                if j >= len(toks):
                    raise ValueError("unclosed [")
                parts = [t for t in body if t[1] != ":"]
                for k, t in parts:
                    if k == "var":
                        q.variables.append(t.strip("${}").split(":")[0])
                    elif not (k == "num" and DURATION.match(t)):
                        raise ValueError(f"bad range [{''.join(t for _, t in body)}]")
                if not parts:
                    raise ValueError("empty range []")
                stack.pop()
                i = j
        elif kind == "op" and text in ")}]":
            if not stack or stack[-1] != pairs[text]:
                raise ValueError(f"unbalanced {text!r}")
            stack.pop()
        elif kind == "id":
            low = text.lower()
            if low in GROUPING:
                if nxt == "(":
                    j = i + 2
                    labels = []
                    while j < len(toks) and toks[j][1] != ")":
                        if toks[j][0] == "id":
                            labels.append(toks[j][1])
                        elif toks[j][1] != ",":
                            raise ValueError(f"bad label list after {text}")
                        j += 1
                    if j >= len(toks):
                        raise ValueError(f"unclosed {text} (")
                    q.groupings.append(labels)
                    i = j
                elif low in ("by", "without", "on", "ignoring"):
                    raise ValueError(f"{text} without a label list")
            elif nxt == "(":
                if low not in FUNCTIONS and low not in AGGREGATIONS:
                    raise ValueError(f"unknown function {text}()")
                q.functions.append(low)
                if low in COUNTER_FUNCTIONS and i + 2 < len(toks) and toks[i + 2][0] == "id":
                    q.counter_args.append(toks[i + 2][1])
            elif low in KEYWORDS:
                pass
            elif low in AGGREGATIONS and nxt in ("by", "without"):
                q.functions.append(low)
            else:
                q.metrics.append(text)
                last_metric_at = i
        i += 1
    if stack:
        raise ValueError(f"unclosed {stack[-1]!r}")
    return q


def check_expr(expr: str, where: str, series: dict[str, Series], errors: list[str]) -> Query | None:
    try:
        q = analyse(expr)
    except ValueError as e:
        errors.append(f"{where}: {e}: {expr}")
        return None
    if not q.metrics:
        errors.append(f"{where}: no metric in {expr}")
    for m in q.metrics:
        if m not in series:
            errors.append(f"{where}: metric {m} is not exported by hos-proxy or hos-operator")
    known = [series[m] for m in q.metrics if m in series]
    for metric, label in q.matchers:
        if metric in series and label not in series[metric].labels:
            errors.append(f"{where}: {metric} has no label {label} (has {sorted(series[metric].labels)})")
    union = set().union(*(s.labels for s in known)) if known else set()
    for labels in q.groupings:
        for label in labels:
            if known and label not in union:
                errors.append(f"{where}: grouping label {label} is on none of {sorted(s.name for s in known)}")
    for m in q.counter_args:
        if m in series and series[m].kind == "gauge":
            errors.append(f"{where}: rate/increase of gauge {m}")
    for s in known:
        if s.name.endswith("_bucket"):
            if "histogram_quantile" not in q.functions or not any("le" in g for g in q.groupings):
                errors.append(f"{where}: {s.name} used outside histogram_quantile(..., sum by (le, ...))")
    return q


def docs_of(path: str) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def proxy_target_labels(docs: list[dict]) -> set[str]:
    out = set()
    for d in docs:
        if d["kind"] == "ServiceMonitor" and d["metadata"]["name"].endswith("-proxies"):
            for ep in d["spec"]["endpoints"]:
                out |= {r["targetLabel"] for r in ep.get("relabelings", []) if r.get("targetLabel")}
    return out


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with its variables replaced, for promtool."""
    expr = re.sub(r"\$\{?__rate_interval\}?|\$\{?__interval\}?|\$\{?__range\}?", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)


# ---- commands ----------------------------------------------------------------
def cmd_metrics(root: Path) -> int:
    for s in sorted(exported(root).values(), key=lambda s: s.name):
        print(f"{s.name} {s.kind} {{{','.join(sorted(s.labels - TARGET_LABELS))}}}")
    return 0


def cmd_exposition(root: Path, path: str, component: str) -> int:
    text = Path(path).read_text()
    got = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    fams = families(root, component)
    errors = []
    for f in sorted(set(got) | set(fams)):
        want = fams.get(f, (None, []))
        if f not in got:
            # prometheus-client writes nothing for a labelled family with
            # no series yet; an unlabelled metric is always there.
            if not want[1]:
                errors.append(f"{f}: not on /metrics, the source registers an unlabelled {want[0]}")
        elif got[f] != want[0]:
            errors.append(f"{f}: /metrics says {got[f]}, the source registers {want[0] or 'nothing'}")
    # Every sample is a series derived from the source, with its labels.
    series = exported(root)
    samples = 0
    for name, labels in re.findall(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{([^}]*)\})? ", text, re.M):
        samples += 1
        s = series.get(name)
        if s is None:
            errors.append(f"/metrics has series {name}, not derived from the source")
            continue
        have = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', labels))
        fam_labels = fams.get(s.family, (None, []))[1]
        want = set(fam_labels) | ({"le"} if name.endswith("_bucket") else set())
        if have != want:
            errors.append(f"{name}{{{labels}}}: labels {sorted(have)}, the source says {sorted(want)}")
    return report(errors, f"{component} /metrics: {len(got)} of {len(fams)} families ({samples} samples) as derived"
                          f" from {' + '.join(SOURCES[component])}")


def cmd_servicemonitors(root: Path, render: str, watch_ns: str) -> int:
    docs = docs_of(render)
    errors = []
    sms = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceMonitor"}
    svc = next(d for d in docs if d["kind"] == "Service")
    op = [d for n, d in sms.items() if not n.endswith("-proxies")]
    px = [d for n, d in sms.items() if n.endswith("-proxies")]
    if len(op) != 1 or len(px) != 1:
        return report([f"expected the operator's and the proxies' ServiceMonitor, got {sorted(sms)}"], "")
    op, px = op[0], px[0]
    sel = op["spec"]["selector"]["matchLabels"]
    if any(svc["metadata"]["labels"].get(k) != v for k, v in sel.items()):
        errors.append("operator ServiceMonitor does not select the metrics Service")
    if op["spec"]["namespaceSelector"] != {"matchNames": [svc["metadata"]["namespace"]]}:
        errors.append("operator ServiceMonitor does not look in the release namespace only")
    if [(e["port"], e["path"]) for e in op["spec"]["endpoints"]] != [("metrics", "/metrics")]:
        errors.append("operator ServiceMonitor endpoint is not port metrics, /metrics")
    # The proxy Service labels and port, as hos-operator writes them.
    plan = (root / "operator/src/plan/proxy.rs").read_text()
    keys = re.search(r"SELECTOR_KEYS: \[&str; \d+\] = \[(.*?)\];", plan, re.S)
    if not keys:
        errors.append("operator/src/plan/proxy.rs: SELECTOR_KEYS not found")
    else:
        want_keys = [k.strip().strip('"') for k in keys.group(1).split(",") if k.strip()]
        want_keys = ["hybrid-online-store.io/store" if k == "STORE_LABEL" else k for k in want_keys]
        psel = px["spec"]["selector"]
        have = set(psel.get("matchLabels", {})) | {e["key"] for e in psel.get("matchExpressions", [])}
        if set(want_keys) != have:
            errors.append(f"proxies ServiceMonitor selects by {sorted(have)}, the proxy Service has {sorted(want_keys)}")
        want_values = {"app.kubernetes.io/name": "hos-proxy", "app.kubernetes.io/managed-by": "hos-operator"}
        for k, v in want_values.items():
            if f'("{k}".into(), "{v}".into())' not in plan and f'"{k}".to_string(), "{v}".to_string()' not in plan:
                errors.append(f"operator/src/plan/proxy.rs no longer labels proxies {k}={v}")
            if psel.get("matchLabels", {}).get(k) != v:
                errors.append(f"proxies ServiceMonitor does not select {k}={v}")
    if 'port("http", spec.port)' not in plan:
        errors.append("operator/src/plan/proxy.rs: the proxy Service port is no longer named http")
    eps = px["spec"]["endpoints"]
    if [(e["port"], e["path"]) for e in eps] != [("http", "/metrics")]:
        errors.append("proxies ServiceMonitor endpoint is not port http, /metrics")
    relabel = [r for r in eps[0].get("relabelings", []) if r.get("targetLabel") == "store"]
    if not relabel or relabel[0]["sourceLabels"] != ["__meta_kubernetes_service_label_hybrid_online_store_io_store"]:
        errors.append("proxies ServiceMonitor does not copy the store label to `store`")
    # A metric label named like a target label (endpoint, pod, ...) reaches
    # Prometheus as exported_<label>; each ServiceMonitor must rename it back.
    for component, sm in (("proxy", px), ("operator", op)):
        labels = {lab for _, labs in families(root, component).values() for lab in labs}
        clashes = sorted(labels & (TARGET_LABELS | {"store"}))
        mrl = sm["spec"]["endpoints"][0].get("metricRelabelings", [])
        for lab in clashes:
            back = [r for r in mrl if r.get("sourceLabels") == [f"exported_{lab}"] and r.get("targetLabel") == lab
                    and r.get("action", "replace") == "replace"]
            dropped = any(r.get("action") == "labeldrop" and re.fullmatch(r["regex"], f"exported_{lab}") for r in mrl)
            if not back or not dropped:
                errors.append(f"{component} metrics have a label `{lab}` that the Prometheus Operator's target label "
                              f"overrides: its ServiceMonitor must rename exported_{lab} back to {lab} (metricRelabelings)")
    want_ns = {"matchNames": watch_ns.split(",")} if watch_ns else {"any": True}
    if px["spec"]["namespaceSelector"] != want_ns:
        errors.append(f"proxies ServiceMonitor namespaceSelector {px['spec']['namespaceSelector']}, want {want_ns}")
    return report(errors, f"ServiceMonitors {sorted(sms)} select the operator and the proxies"
                          f" (proxies in {watch_ns or 'any namespace'})")


REQUIRED_PANELS = [
    # (what, metric used, labels the query must group by, histogram quantile)
    ("request rate per store", "hos_proxy_requests_total", {"store"}, None),
    ("error ratio per store", "hos_proxy_requests_total", {"store"}, "ratio"),
    ("request rate per view", "hos_proxy_view_requests_total", {"view"}, None),
    ("error ratio per view", "hos_proxy_view_requests_total", {"view"}, "ratio"),
    ("latency p50 per view", "hos_proxy_view_duration_seconds_bucket", {"view"}, "0.5"),
    ("latency p99 per view", "hos_proxy_view_duration_seconds_bucket", {"view"}, "0.99"),
    ("latency p50 per backend", "hos_proxy_view_duration_seconds_bucket", {"backend"}, "0.5"),
    ("latency p99 per backend", "hos_proxy_view_duration_seconds_bucket", {"backend"}, "0.99"),
    ("backend call latency p99", "hos_proxy_backend_call_duration_seconds_bucket", {"backend"}, "0.99"),
    ("backend up", "hos_proxy_backend_up", {"backend"}, None),
    ("circuit open", "hos_proxy_backend_circuit_open", {"backend"}, None),
    ("reloads by result", "hos_proxy_reload_total", {"result"}, None),
    ("routing digests per store", "hos_proxy_routing_info", {"store", "digest"}, None),
    ("shed requests", "hos_proxy_requests_shed_total", {"reason"}, None),
    ("open connections", "hos_proxy_open_connections", {"pod"}, None),
    ("operator reconciles", "hos_operator_reconcile_total", {"controller"}, None),
    ("operator reconcile errors", "hos_operator_reconcile_errors_total", {"reason"}, None),
    ("operator leader", "hos_operator_leader", {"pod"}, None),
]


def cmd_dashboard(root: Path, render: str, out: str) -> int:
    docs = docs_of(render)
    errors: list[str] = []
    series = exported(root, proxy_target_labels(docs))
    cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    if len(cms) != 1:
        return report([f"expected one dashboard ConfigMap, found {len(cms)}"], "")
    cm = cms[0]
    if cm["metadata"]["labels"].get("grafana_dashboard") != "1":
        errors.append("dashboard ConfigMap lacks the label grafana_dashboard: \"1\"")
    if list(cm["data"]) != ["hos.json"]:
        errors.append(f"dashboard ConfigMap keys {list(cm['data'])}, want [hos.json]")
    chart_file = root / "charts/hybrid-online-store/dashboards/hos.json"
    try:
        dash = json.loads(cm["data"]["hos.json"])
    except (KeyError, json.JSONDecodeError) as e:
        return report([f"dashboard JSON does not parse: {e}"], "")
    if dash != json.loads(chart_file.read_text()):
        errors.append("the ConfigMap's JSON differs from dashboards/hos.json")
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in dash:
            errors.append(f"dashboard has no {key}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        errors.append("no datasource variable")
    panels = dash.get("panels", [])
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids) or None in ids:
        errors.append("panel ids missing or not unique")
    cells: dict[tuple[int, int], str] = {}
    queries: list[tuple[str, str, Query]] = []
    promtool_rules = []
    for p in panels:
        title = p.get("title", "?")
        g = p.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24 or not g.get("w") or not g.get("h"):
            errors.append(f"panel {title!r}: gridPos {g} outside the 24 columns")
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in cells:
                    errors.append(f"panel {title!r} overlaps {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if not p.get("description"):
            errors.append(f"panel {title!r} has no description")
        if p.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"panel {title!r} does not use the datasource variable")
        targets = p.get("targets", [])
        if not targets:
            errors.append(f"panel {title!r} has no query")
        for t in targets:
            expr = t.get("expr", "")
            q = check_expr(expr, f"panel {title!r}", series, errors)
            if q:
                queries.append((title, expr, q))
                for v in q.variables:
                    if v not in variables and v not in GRAFANA_BUILTINS:
                        errors.append(f"panel {title!r}: undefined variable ${v}")
                promtool_rules.append({"record": f"dashboard:panel{p['id']}:{t['refId'].lower()}",
                                       "expr": grafana_to_promql(expr)})
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        query = v.get("query", {}).get("query", "") if isinstance(v.get("query"), dict) else v.get("query", "")
        m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)", query)
        if not m:
            errors.append(f"variable {name}: not label_values(selector, label): {query}")
            continue
        q = check_expr(m.group(1), f"variable {name}", series, errors)
        if q and q.metrics and q.metrics[0] in series and m.group(2) not in series[q.metrics[0]].labels:
            errors.append(f"variable {name}: {q.metrics[0]} has no label {m.group(2)}")
    for what, metric, by, quant in REQUIRED_PANELS:
        def fits(expr: str, q: Query) -> bool:
            if metric not in q.metrics or not any(by <= set(g) for g in q.groupings):
                return False
            if quant == "ratio":
                return "/" in expr
            if quant:
                return f"histogram_quantile({quant}," in re.sub(r"\s+", "", expr)
            return True
        if not any(fits(e, q) for _, e, q in queries):
            errors.append(f"no panel shows {what} ({metric} grouped by {sorted(by)})")
    used = {s for _, _, q in queries for s in q.metrics}
    fams_used = {series[s].family for s in used if s in series}
    for fam in sorted({s.family for s in series.values()} - fams_used):
        errors.append(f"exported metric family {fam} is on no dashboard panel")
    Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": promtool_rules}]},
                                        sort_keys=False, width=1000))
    return report(errors, f"dashboard: {len(panels)} panels, {len(queries)} queries on {len(fams_used)} metric families"
                          f", {len(variables)} variables")


def cmd_rules(root: Path, render: str, out: str) -> int:
    docs = docs_of(render)
    errors: list[str] = []
    series = exported(root, proxy_target_labels(docs))
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        return report([f"expected one PrometheusRule, found {len(rules)}"], "")
    pr = rules[0]
    if pr.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"PrometheusRule apiVersion {pr.get('apiVersion')}")
    groups = pr.get("spec", {}).get("groups", [])
    names = [g.get("name") for g in groups]
    if not groups or len(set(names)) != len(names):
        errors.append(f"groups missing or names not unique: {names}")
    alerts = []
    for g in groups:
        if set(g) - {"name", "rules", "interval"}:
            errors.append(f"group {g.get('name')}: unknown keys {sorted(set(g) - {'name', 'rules', 'interval'})}")
        for r in g.get("rules", []):
            name = r.get("alert")
            where = f"alert {name}"
            if not name or not re.fullmatch(r"Hos[A-Z][A-Za-z]+", name):
                errors.append(f"rule without a Hos... alert name: {r}")
                continue
            alerts.append(name)
            if set(r) - {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}:
                errors.append(f"{where}: unknown keys {sorted(set(r) - {'alert', 'expr', 'for', 'labels', 'annotations'})}")
            if "for" in r and not DURATION.match(str(r["for"])):
                errors.append(f"{where}: bad for {r['for']!r}")
            sev = r.get("labels", {}).get("severity")
            if sev not in SEVERITIES:
                errors.append(f"{where}: severity {sev!r} not one of {sorted(SEVERITIES)}")
            ann = r.get("annotations", {})
            for key in ("summary", "description"):
                if not str(ann.get(key, "")).strip():
                    errors.append(f"{where}: no {key} annotation")
            q = check_expr(str(r.get("expr", "")), where, series, errors)
            if q is None:
                continue
            if q.variables:
                errors.append(f"{where}: Grafana variables in an alert: {q.variables}")
            # $labels.x in the annotations must be labels the alert carries:
            # the outermost grouping (the first `by`), or the metric's labels.
            carried = set(q.groupings[0]) if q.groupings else \
                set().union(*(series[m].labels for m in q.metrics if m in series))
            for text in ann.values():
                for label in re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", str(text)):
                    if label not in carried:
                        errors.append(f"{where}: annotation uses $labels.{label}, the alert has {sorted(carried)}")
                if str(text).count("{{") != str(text).count("}}"):
                    errors.append(f"{where}: unbalanced {{{{ }}}} in an annotation")
    if len(set(alerts)) != len(alerts):
        errors.append(f"duplicate alert names: {alerts}")
    schema = json.loads((root / "charts/hybrid-online-store/values.schema.json").read_text())
    enum = schema["properties"]["prometheusRule"]["properties"]["disabledAlerts"]["items"]["enum"]
    if sorted(enum) != sorted(alerts):
        errors.append(f"values.schema.json disabledAlerts enum {sorted(enum)} != rendered alerts {sorted(alerts)}")
    readme = (root / "charts/hybrid-online-store/README.md").read_text()
    for a in alerts:
        if f"`{a}`" not in readme:
            errors.append(f"alert {a} is not documented in charts/hybrid-online-store/README.md")
    Path(out).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000))
    sev = {s: sum(1 for g in groups for r in g["rules"] if r.get("labels", {}).get("severity") == s) for s in SEVERITIES}
    return report(errors, f"PrometheusRule: {len(alerts)} alerts in {len(groups)} groups "
                          f"({sev['critical']} critical, {sev['warning']} warning), every expression on exported metrics")


def report(errors: list[str], ok: str) -> int:
    if errors:
        for e in errors:
            print(e)
        return 1
    print(ok)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__)
        return 2
    root, cmd, args = Path(argv[1]), argv[2], argv[3:]
    commands = {"metrics": (cmd_metrics, 0), "exposition": (cmd_exposition, 2),
                "servicemonitors": (cmd_servicemonitors, 2), "dashboard": (cmd_dashboard, 2),
                "rules": (cmd_rules, 2)}
    if cmd not in commands or len(args) != commands[cmd][1]:
        print(__doc__)
        return 2
    return commands[cmd][0](root, *args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

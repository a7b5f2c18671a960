package hos.grpcclient;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.google.protobuf.ByteString;
import com.google.protobuf.Timestamp;
import feast.serving.ServingServiceGrpc;
import feast.serving.ServingServiceOuterClass.FeatureList;
import feast.serving.ServingServiceOuterClass.FieldStatus;
import feast.serving.ServingServiceOuterClass.GetFeastServingInfoRequest;
import feast.serving.ServingServiceOuterClass.GetFeastServingInfoResponse;
import feast.serving.ServingServiceOuterClass.GetOnlineFeaturesRequest;
import feast.serving.ServingServiceOuterClass.GetOnlineFeaturesResponse;
import feast.types.ValueOuterClass.Map;
import feast.types.ValueOuterClass.RepeatedValue;
import feast.types.ValueOuterClass.Value;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/**
 * Java gRPC client of Feast's feast.serving.ServingService (the API Feast's Go and Java feature
 * servers speak, and hos-proxy serves with --grpc-listen), with stubs generated from api/proto by
 * protoc and protoc-gen-grpc-java. Same command line, output and exit codes as the Go client
 * (tests/grpc/go/main.go):
 *
 * <pre>
 *   hos-grpc-java -addr 127.0.0.1:PORT -request request.json [-timeout 30s]
 * </pre>
 *
 * <p>stdout: {"feature_names": [...], "results": [{"values": [...], "statuses": [...],
 * "event_timestamps": [...]}]} with values rendered as Feast's convert_response_to_dict renders
 * them; GetFeastServingInfo's version goes to stderr as "serving-info version: V". Exit codes: 0
 * success, 1 usage or bad request file, 2 server unreachable, 3 an RPC failed (stdout {"error":
 * {"rpc", "code", "message"}}, stderr "grpc error: RPC code=CODE message=MESSAGE"). A JSON array of
 * requests is a batch: one channel, a JSON array of answers (or errors) on stdout, exit code 0 unless
 * the server was unreachable (2).
 */
public final class Main {
  private static final DateTimeFormatter SECONDS =
      DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss").withZone(ZoneOffset.UTC);

  private Main() {}

  public static void main(String[] args) {
    System.exit(run(args));
  }

  private static final class UsageError extends Exception {
    UsageError(String msg) {
      super(msg);
    }
  }

  static int run(String[] args) {
    PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    PrintStream err = new PrintStream(System.err, true, StandardCharsets.UTF_8);
    String addr = null;
    String reqPath = null;
    long timeoutMs = 30_000;
    try {
      for (int i = 0; i < args.length; i++) {
        String a = args[i];
        String flag = a.startsWith("--") ? a.substring(1) : a;
        String value = null;
        int eq = flag.indexOf('=');
        if (eq > 0) {
          value = flag.substring(eq + 1);
          flag = flag.substring(0, eq);
        }
        if (!flag.equals("-addr") && !flag.equals("-request") && !flag.equals("-timeout")) {
          throw new UsageError("unknown argument " + a);
        }
        if (value == null) {
          if (i + 1 >= args.length) {
            throw new UsageError(a + " needs a value");
          }
          value = args[++i];
        }
        switch (flag) {
          case "-addr" -> addr = value;
          case "-request" -> reqPath = value;
          default -> timeoutMs = parseDuration(value);
        }
      }
      if (addr == null || reqPath == null) {
        throw new UsageError("-addr and -request are required");
      }
    } catch (UsageError e) {
      err.println(e.getMessage());
      err.println("usage: hos-grpc-java -addr HOST:PORT -request request.json [-timeout 30s]");
      return 1;
    }

    List<GetOnlineFeaturesRequest> reqs = new ArrayList<>();
    boolean batch;
    try {
      String text =
          reqPath.equals("-")
              ? new String(System.in.readAllBytes(), StandardCharsets.UTF_8)
              : Files.readString(Path.of(reqPath), StandardCharsets.UTF_8);
      JsonElement root = JsonParser.parseString(text);
      batch = root.isJsonArray();
      if (batch) {
        JsonArray items = root.getAsJsonArray();
        if (items.isEmpty()) {
          throw new UsageError("empty batch");
        }
        for (int i = 0; i < items.size(); i++) {
          try {
            reqs.add(parseRequest(items.get(i)));
          } catch (UsageError | RuntimeException e) {
            throw new UsageError("[" + i + "]: " + e.getMessage());
          }
        }
      } else {
        reqs.add(parseRequest(root));
      }
    } catch (IOException | RuntimeException | UsageError e) {
      err.println("bad request file " + reqPath + ": " + e.getMessage());
      return 1;
    }

    ManagedChannel channel = ManagedChannelBuilder.forTarget(addr).usePlaintext().build();
    try {
      ServingServiceGrpc.ServingServiceBlockingStub stub = ServingServiceGrpc.newBlockingStub(channel);
      GetFeastServingInfoResponse info;
      try {
        info =
            stub.withDeadlineAfter(timeoutMs, TimeUnit.MILLISECONDS)
                .getFeastServingInfo(GetFeastServingInfoRequest.getDefaultInstance());
      } catch (StatusRuntimeException e) {
        StringBuilder sb = new StringBuilder();
        int rc = rpcFailed(sb, err, "GetFeastServingInfo", e);
        out.println(sb);
        out.flush();
        return rc;
      }
      err.println("serving-info version: " + info.getVersion());
      StringBuilder sb = new StringBuilder();
      int rc = 0;
      if (batch) {
        sb.append('[');
      }
      for (int i = 0; i < reqs.size(); i++) {
        if (i > 0) {
          sb.append(',');
        }
        try {
          GetOnlineFeaturesResponse resp =
              stub.withDeadlineAfter(timeoutMs, TimeUnit.MILLISECONDS).getOnlineFeatures(reqs.get(i));
          canonical(resp, sb);
        } catch (StatusRuntimeException e) {
          int code = rpcFailed(sb, err, "GetOnlineFeatures", e);
          if (code == 2 || !batch) {
            rc = code;
          }
        }
      }
      if (batch) {
        sb.append(']');
      }
      out.println(sb);
      out.flush();
      return rc;
    } catch (RuntimeException e) {
      err.println("cannot render the response: " + e);
      return 1;
    } finally {
      channel.shutdownNow();
      try {
        channel.awaitTermination(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /** Go-style durations: 30s, 1500ms, 2m; a bare number is seconds. */
  static long parseDuration(String s) throws UsageError {
    try {
      if (s.endsWith("ms")) {
        return Long.parseLong(s.substring(0, s.length() - 2));
      }
      if (s.endsWith("s")) {
        return Math.round(Double.parseDouble(s.substring(0, s.length() - 1)) * 1000);
      }
      if (s.endsWith("m")) {
        return Math.round(Double.parseDouble(s.substring(0, s.length() - 1)) * 60_000);
      }
      return Math.round(Double.parseDouble(s) * 1000);
    } catch (NumberFormatException e) {
      throw new UsageError("bad duration " + s);
    }
  }

  /**
   * Reports a failed RPC on stderr, appends its JSON form to sb, and returns its exit code (2 when
   * the server could not be reached, 3 otherwise).
   */
  static int rpcFailed(StringBuilder sb, PrintStream err, String rpc, StatusRuntimeException e) {
    Status st = e.getStatus();
    String code = st.getCode().name();
    String message = st.getDescription() == null ? "" : st.getDescription();
    err.println("grpc error: " + rpc + " code=" + code + " message=" + message);
    sb.append("{\"error\":{\"rpc\":");
    str(sb, rpc);
    sb.append(",\"code\":");
    str(sb, code);
    sb.append(",\"message\":");
    str(sb, message);
    sb.append("}}");
    return st.getCode() == Status.Code.UNAVAILABLE ? 2 : 3;
  }

  static GetOnlineFeaturesRequest parseRequest(JsonElement root) throws UsageError {
    if (!root.isJsonObject()) {
      throw new UsageError("not a JSON object");
    }
    JsonObject o = root.getAsJsonObject();
    for (String k : o.keySet()) {
      if (!List.of("features", "feature_service", "entities", "full_feature_names").contains(k)) {
        throw new UsageError("unknown field \"" + k + "\"");
      }
    }
    GetOnlineFeaturesRequest.Builder b = GetOnlineFeaturesRequest.newBuilder();
    boolean hasFeatures = o.has("features") && !o.get("features").isJsonNull();
    boolean hasService = o.has("feature_service") && !o.get("feature_service").isJsonNull();
    if (hasFeatures && hasService) {
      throw new UsageError("give \"features\" or \"feature_service\", not both");
    } else if (hasFeatures) {
      FeatureList.Builder fl = FeatureList.newBuilder();
      for (JsonElement f : o.getAsJsonArray("features")) {
        fl.addVal(f.getAsString());
      }
      b.setFeatures(fl);
    } else if (hasService) {
      b.setFeatureService(o.get("feature_service").getAsString());
    } else {
      throw new UsageError("\"features\" or \"feature_service\" is required");
    }
    if (o.has("entities") && !o.get("entities").isJsonNull()) {
      for (var e : o.getAsJsonObject("entities").entrySet()) {
        RepeatedValue.Builder rv = RepeatedValue.newBuilder();
        JsonArray arr = e.getValue().getAsJsonArray();
        for (int i = 0; i < arr.size(); i++) {
          try {
            rv.addVal(entityValue(arr.get(i)));
          } catch (UsageError ex) {
            throw new UsageError("entities." + e.getKey() + "[" + i + "]: " + ex.getMessage());
          }
        }
        b.putEntities(e.getKey(), rv.build());
      }
    }
    if (o.has("full_feature_names") && !o.get("full_feature_names").isJsonNull()) {
      b.setFullFeatureNames(o.get("full_feature_names").getAsBoolean());
    }
    return b.build();
  }

  static Value entityValue(JsonElement x) throws UsageError {
    if (x.isJsonNull()) {
      return Value.getDefaultInstance();
    }
    if (!x.isJsonPrimitive()) {
      throw new UsageError("unsupported entity value " + x + " (want a number, string, bool or null)");
    }
    JsonPrimitive p = x.getAsJsonPrimitive();
    if (p.isString()) {
      return Value.newBuilder().setStringVal(p.getAsString()).build();
    }
    if (p.isBoolean()) {
      return Value.newBuilder().setBoolVal(p.getAsBoolean()).build();
    }
    String lit = p.getAsNumber().toString();
    if (lit.contains(".") || lit.contains("e") || lit.contains("E")) {
      return Value.newBuilder().setDoubleVal(Double.parseDouble(lit)).build();
    }
    try {
      return Value.newBuilder().setInt64Val(new BigDecimal(lit).longValueExact()).build();
    } catch (ArithmeticException e) {
      throw new UsageError("integer " + lit + " does not fit int64");
    }
  }

  // ---- canonical JSON -------------------------------------------------------

  static void canonical(GetOnlineFeaturesResponse resp, StringBuilder sb) {
    sb.append("{\"feature_names\":[");
    List<String> names = resp.getMetadata().getFeatureNames().getValList();
    for (int i = 0; i < names.size(); i++) {
      if (i > 0) {
        sb.append(',');
      }
      str(sb, names.get(i));
    }
    sb.append("],\"results\":[");
    for (int i = 0; i < resp.getResultsCount(); i++) {
      GetOnlineFeaturesResponse.FeatureVector fv = resp.getResults(i);
      if (i > 0) {
        sb.append(',');
      }
      sb.append("{\"values\":[");
      for (int j = 0; j < fv.getValuesCount(); j++) {
        if (j > 0) {
          sb.append(',');
        }
        value(sb, fv.getValues(j));
      }
      sb.append("],\"statuses\":[");
      for (int j = 0; j < fv.getStatusesCount(); j++) {
        if (j > 0) {
          sb.append(',');
        }
        FieldStatus s = fv.getStatuses(j);
        str(sb, s == FieldStatus.UNRECOGNIZED ? "INVALID" : s.name());
      }
      sb.append("],\"event_timestamps\":[");
      for (int j = 0; j < fv.getEventTimestampsCount(); j++) {
        if (j > 0) {
          sb.append(',');
        }
        str(sb, rfc3339(fv.getEventTimestamps(j)));
      }
      sb.append("]}");
    }
    sb.append("]}");
  }

  /** Like Feast's _timestamp_to_str: no fraction, or 3, 6 or 9 digits. */
  static String rfc3339(Timestamp ts) {
    if (ts.getSeconds() == 0 && ts.getNanos() == 0) {
      return "1970-01-01T00:00:00Z";
    }
    String base = SECONDS.format(Instant.ofEpochSecond(ts.getSeconds()));
    int n = ts.getNanos();
    if (n == 0) {
      return base + "Z";
    } else if (n % 1_000_000 == 0) {
      return base + String.format(".%03dZ", n / 1_000_000);
    } else if (n % 1_000 == 0) {
      return base + String.format(".%06dZ", n / 1_000);
    }
    return base + String.format(".%09dZ", n);
  }

  static void str(StringBuilder sb, String s) {
    sb.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> sb.append("\\\"");
        case '\\' -> sb.append("\\\\");
        case '\n' -> sb.append("\\n");
        case '\r' -> sb.append("\\r");
        case '\t' -> sb.append("\\t");
        default -> {
          if (c < 0x20) {
            sb.append(String.format("\\u%04x", (int) c));
          } else {
            sb.append(c);
          }
        }
      }
    }
    sb.append('"');
  }

  /** A double as Feast renders it: NaN and infinities as protobuf-JSON strings. */
  static void dbl(StringBuilder sb, double d) {
    if (Double.isNaN(d)) {
      sb.append("\"NaN\"");
    } else if (Double.isInfinite(d)) {
      sb.append(d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else {
      // Double.toString round-trips and is valid JSON (e.g. 1.0E20, -0.0).
      sb.append(Double.toString(d));
    }
  }

  static void b64(StringBuilder sb, ByteString b) {
    sb.append('"').append(Base64.getEncoder().encodeToString(b.toByteArray())).append('"');
  }

  interface Item<T> {
    void write(StringBuilder sb, T x);
  }

  static <T> void list(StringBuilder sb, List<T> xs, Item<T> item) {
    sb.append('[');
    for (int i = 0; i < xs.size(); i++) {
      if (i > 0) {
        sb.append(',');
      }
      item.write(sb, xs.get(i));
    }
    sb.append(']');
  }

  static void map(StringBuilder sb, Map m) {
    sb.append('{');
    boolean first = true;
    for (var e : new TreeMap<>(m.getValMap()).entrySet()) {
      if (!first) {
        sb.append(',');
      }
      first = false;
      str(sb, e.getKey());
      sb.append(':');
      value(sb, e.getValue());
    }
    sb.append('}');
  }

  /** A Value as Feast's convert_response_to_dict renders it. */
  static void value(StringBuilder sb, Value v) {
    switch (v.getValCase()) {
      case VAL_NOT_SET, NULL_VAL -> sb.append("null");
      case BYTES_VAL -> b64(sb, v.getBytesVal());
      case STRING_VAL -> str(sb, v.getStringVal());
      case INT32_VAL -> sb.append(v.getInt32Val());
      case INT64_VAL -> sb.append(v.getInt64Val());
      case DOUBLE_VAL -> dbl(sb, v.getDoubleVal());
      case FLOAT_VAL -> dbl(sb, v.getFloatVal());
      case BOOL_VAL -> sb.append(v.getBoolVal());
      case UNIX_TIMESTAMP_VAL -> sb.append(v.getUnixTimestampVal());
      case BYTES_LIST_VAL -> list(sb, v.getBytesListVal().getValList(), Main::b64);
      case STRING_LIST_VAL -> list(sb, v.getStringListVal().getValList(), Main::str);
      case INT32_LIST_VAL -> list(sb, v.getInt32ListVal().getValList(), StringBuilder::append);
      case INT64_LIST_VAL -> list(sb, v.getInt64ListVal().getValList(), StringBuilder::append);
      case DOUBLE_LIST_VAL -> list(sb, v.getDoubleListVal().getValList(), Main::dbl);
      case FLOAT_LIST_VAL -> list(sb, v.getFloatListVal().getValList(), (s, f) -> dbl(s, f));
      case BOOL_LIST_VAL -> list(sb, v.getBoolListVal().getValList(), StringBuilder::append);
      case UNIX_TIMESTAMP_LIST_VAL ->
          list(sb, v.getUnixTimestampListVal().getValList(), StringBuilder::append);
      case MAP_VAL -> map(sb, v.getMapVal());
      case MAP_LIST_VAL -> list(sb, v.getMapListVal().getValList(), Main::map);
      case BYTES_SET_VAL -> list(sb, v.getBytesSetVal().getValList(), Main::b64);
      case STRING_SET_VAL -> list(sb, v.getStringSetVal().getValList(), Main::str);
      case INT32_SET_VAL -> list(sb, v.getInt32SetVal().getValList(), StringBuilder::append);
      case INT64_SET_VAL -> list(sb, v.getInt64SetVal().getValList(), StringBuilder::append);
      case DOUBLE_SET_VAL -> list(sb, v.getDoubleSetVal().getValList(), Main::dbl);
      case FLOAT_SET_VAL -> list(sb, v.getFloatSetVal().getValList(), (s, f) -> dbl(s, f));
      case BOOL_SET_VAL -> list(sb, v.getBoolSetVal().getValList(), StringBuilder::append);
      case UNIX_TIMESTAMP_SET_VAL ->
          list(sb, v.getUnixTimestampSetVal().getValList(), StringBuilder::append);
      case UUID_VAL -> str(sb, v.getUuidVal());
      case TIME_UUID_VAL -> str(sb, v.getTimeUuidVal());
      case UUID_LIST_VAL -> list(sb, v.getUuidListVal().getValList(), Main::str);
      case TIME_UUID_LIST_VAL -> list(sb, v.getTimeUuidListVal().getValList(), Main::str);
      default -> throw new IllegalStateException("unsupported Value kind " + v.getValCase());
    }
  }
}

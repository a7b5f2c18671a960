// Command client is a Go gRPC client of Feast's feast.serving.ServingService
// (the API Feast's Go and Java feature servers speak, and hos-proxy serves
// with --grpc-listen). Its stubs are generated from api/proto by protoc,
// protoc-gen-go and protoc-gen-go-grpc (tests/grpc/build.sh).
//
//	client -addr 127.0.0.1:PORT -request request.json [-timeout 30s]
//
// request.json:
//
//	{"features": ["view:feat", ...], "feature_service": "svc" (instead of features),
//	 "entities": {"user_id": [1001, 1002], "merchant_id": ["m-1", "m-2"]},
//	 "full_feature_names": false}
//
// Entity values become typed feast.types.Values: JSON integers int64_val,
// strings string_val, other numbers double_val, booleans bool_val, null an
// unset Value.
//
// It calls GetFeastServingInfo (its version goes to stderr as
// "serving-info version: V") and then GetOnlineFeatures, and prints one
// canonical JSON document on stdout:
//
//	{"feature_names": [...],
//	 "results": [{"values": [...], "statuses": ["PRESENT", ...],
//	              "event_timestamps": ["2024-05-01T12:34:56.789123Z", ...]}, ...]}
//
// Values are plain JSON, as Feast's convert_response_to_dict renders them:
// numbers (float32 widened to float64; NaN and infinities as the strings
// "NaN", "Infinity", "-Infinity"), strings, booleans, base64 (standard
// alphabet, padded) for bytes, Unix seconds for unix_timestamp, lists for
// list and set types, objects for maps, null for an unset or null Value.
// Timestamps are RFC 3339 UTC with no fraction, or 3, 6 or 9 digits (the
// fewest that are exact), and "1970-01-01T00:00:00Z" for the zero time.
//
// Exit codes: 0 success; 1 usage or bad request file; 2 the server is
// unreachable (UNAVAILABLE); 3 an RPC failed: then stdout holds {"error":
// {"rpc": "GetOnlineFeatures", "code": "NOT_FOUND", "message": "..."}}
// (canonical gRPC code names, as grpc-java names them) and stderr a line
// "grpc error: RPC code=CODE message=MESSAGE".
//
// Batch: when request.json holds a JSON array of requests, each is sent in
// turn on the same channel and stdout holds a JSON array with one element per
// request, its canonical answer or its {"error": ...}; the exit code is then
// 0 when every request got an answer or a gRPC status other than
// UNAVAILABLE (2 otherwise). This saves process start-ups (the JVM's) in tests.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	serving "hos/grpcclient/gen/feast/serving"
	types "hos/grpcclient/gen/feast/types"
)

type request struct {
	Features         *[]string                    `json:"features"`
	FeatureService   *string                      `json:"feature_service"`
	Entities         map[string][]json.RawMessage `json:"entities"`
	FullFeatureNames bool                         `json:"full_feature_names"`
}

type result struct {
	Values          []any    `json:"values"`
	Statuses        []string `json:"statuses"`
	EventTimestamps []string `json:"event_timestamps"`
}

type output struct {
	FeatureNames []string `json:"feature_names"`
	Results      []result `json:"results"`
}

func main() {
	os.Exit(run())
}

func run() int {
	addr := flag.String("addr", "", "server address host:port (plaintext gRPC)")
	reqPath := flag.String("request", "", "request JSON file ('-' for stdin)")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of each RPC")
	flag.Parse()
	if *addr == "" || *reqPath == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: client -addr HOST:PORT -request request.json [-timeout 30s]")
		return 1
	}
	reqs, batch, err := readRequests(*reqPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad request file %s: %v\n", *reqPath, err)
		return 1
	}

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot create a client for %s: %v\n", *addr, err)
		return 2
	}
	defer conn.Close()
	client := serving.NewServingServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	info, err := client.GetFeastServingInfo(ctx, &serving.GetFeastServingInfoRequest{})
	cancel()
	if err != nil {
		rc, body := rpcFailed("GetFeastServingInfo", err)
		emit(body)
		return rc
	}
	fmt.Fprintf(os.Stderr, "serving-info version: %s\n", info.GetVersion())

	answers := []any{}
	rc := 0
	for _, req := range reqs {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		resp, err := client.GetOnlineFeatures(ctx, req)
		cancel()
		if err != nil {
			code, body := rpcFailed("GetOnlineFeatures", err)
			answers = append(answers, body)
			if code == 2 || !batch {
				rc = code
			}
			continue
		}
		out, err := canonical(resp)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cannot render the response: %v\n", err)
			return 1
		}
		answers = append(answers, out)
	}
	var doc any = answers
	if !batch {
		doc = answers[0]
	}
	if err := emit(doc); err != nil {
		fmt.Fprintf(os.Stderr, "cannot write the response: %v\n", err)
		return 1
	}
	return rc
}

func emit(doc any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(doc)
}

// rpcFailed reports a failed RPC on stderr and returns its exit code (2 when
// the server could not be reached, 3 otherwise) and its JSON form.
func rpcFailed(rpc string, err error) (int, any) {
	st, _ := status.FromError(err)
	code := codeName(st.Code())
	fmt.Fprintf(os.Stderr, "grpc error: %s code=%s message=%s\n", rpc, code, st.Message())
	body := map[string]any{"error": map[string]string{"rpc": rpc, "code": code, "message": st.Message()}}
	if st.Code() == codes.Unavailable {
		return 2, body
	}
	return 3, body
}

// codeName is the canonical (upper snake case) name of a gRPC status code,
// as grpc-java's Status.Code names it.
func codeName(c codes.Code) string {
	names := map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
		codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
		codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
		codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
		codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
		codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
		codes.Unauthenticated: "UNAUTHENTICATED",
	}
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}

// readRequests reads one request object, or a JSON array of them (batch).
func readRequests(path string) ([]*serving.GetOnlineFeaturesRequest, bool, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, false, err
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, false, err
		}
		if len(items) == 0 {
			return nil, false, errors.New("empty batch")
		}
		out := []*serving.GetOnlineFeaturesRequest{}
		for i, item := range items {
			r, err := parseRequest(item)
			if err != nil {
				return nil, false, fmt.Errorf("[%d]: %w", i, err)
			}
			out = append(out, r)
		}
		return out, true, nil
	}
	r, err := parseRequest(trimmed)
	if err != nil {
		return nil, false, err
	}
	return []*serving.GetOnlineFeaturesRequest{r}, false, nil
}

func parseRequest(data []byte) (*serving.GetOnlineFeaturesRequest, error) {
	var r request
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	out := &serving.GetOnlineFeaturesRequest{
		Entities:         map[string]*types.RepeatedValue{},
		FullFeatureNames: r.FullFeatureNames,
	}
	switch {
	case r.Features != nil && r.FeatureService != nil:
		return nil, errors.New(`give "features" or "feature_service", not both`)
	case r.Features != nil:
		out.Kind = &serving.GetOnlineFeaturesRequest_Features{Features: &serving.FeatureList{Val: *r.Features}}
	case r.FeatureService != nil:
		out.Kind = &serving.GetOnlineFeaturesRequest_FeatureService{FeatureService: *r.FeatureService}
	default:
		return nil, errors.New(`"features" or "feature_service" is required`)
	}
	for key, raws := range r.Entities {
		rv := &types.RepeatedValue{}
		for i, raw := range raws {
			v, err := entityValue(raw)
			if err != nil {
				return nil, fmt.Errorf("entities.%s[%d]: %w", key, i, err)
			}
			rv.Val = append(rv.Val, v)
		}
		out.Entities[key] = rv
	}
	return out, nil
}

func entityValue(raw json.RawMessage) (*types.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	switch v := x.(type) {
	case nil:
		return &types.Value{}, nil
	case string:
		return &types.Value{Val: &types.Value_StringVal{StringVal: v}}, nil
	case bool:
		return &types.Value{Val: &types.Value_BoolVal{BoolVal: v}}, nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return &types.Value{Val: &types.Value_Int64Val{Int64Val: i}}, nil
		}
		if strings.ContainsAny(v.String(), ".eE") {
			f, err := v.Float64()
			if err != nil {
				return nil, err
			}
			return &types.Value{Val: &types.Value_DoubleVal{DoubleVal: f}}, nil
		}
		return nil, fmt.Errorf("integer %s does not fit int64", v)
	default:
		return nil, fmt.Errorf("unsupported entity value %s (want a number, string, bool or null)", raw)
	}
}

func canonical(resp *serving.GetOnlineFeaturesResponse) (*output, error) {
	out := &output{
		FeatureNames: append([]string{}, resp.GetMetadata().GetFeatureNames().GetVal()...),
		Results:      []result{},
	}
	for i, fv := range resp.GetResults() {
		r := result{Values: []any{}, Statuses: []string{}, EventTimestamps: []string{}}
		for j, v := range fv.GetValues() {
			x, err := plain(v)
			if err != nil {
				return nil, fmt.Errorf("results[%d].values[%d]: %w", i, j, err)
			}
			r.Values = append(r.Values, x)
		}
		for _, s := range fv.GetStatuses() {
			r.Statuses = append(r.Statuses, statusName(s))
		}
		for _, ts := range fv.GetEventTimestamps() {
			r.EventTimestamps = append(r.EventTimestamps, rfc3339(ts))
		}
		out.Results = append(out.Results, r)
	}
	return out, nil
}

func statusName(s serving.FieldStatus) string {
	if n, ok := serving.FieldStatus_name[int32(s)]; ok {
		return n
	}
	return "INVALID"
}

// rfc3339 renders a Timestamp like Feast's _timestamp_to_str.
func rfc3339(ts *timestamppb.Timestamp) string {
	if ts.GetSeconds() == 0 && ts.GetNanos() == 0 {
		return "1970-01-01T00:00:00Z"
	}
	base := time.Unix(ts.GetSeconds(), 0).UTC().Format("2006-01-02T15:04:05")
	n := ts.GetNanos()
	switch {
	case n == 0:
		return base + "Z"
	case n%1_000_000 == 0:
		return fmt.Sprintf("%s.%03dZ", base, n/1_000_000)
	case n%1_000 == 0:
		return fmt.Sprintf("%s.%06dZ", base, n/1_000)
	default:
		return fmt.Sprintf("%s.%09dZ", base, n)
	}
}

func float(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return f
}

func floats32(xs []float32) []any {
	out := make([]any, 0, len(xs))
	for _, x := range xs {
		out = append(out, float(float64(x)))
	}
	return out
}

func floats64(xs []float64) []any {
	out := make([]any, 0, len(xs))
	for _, x := range xs {
		out = append(out, float(x))
	}
	return out
}

func b64s(xs [][]byte) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, base64.StdEncoding.EncodeToString(x))
	}
	return out
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

func plainMap(m *types.Map) (map[string]any, error) {
	out := map[string]any{}
	keys := make([]string, 0, len(m.GetVal()))
	for k := range m.GetVal() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		x, err := plain(m.GetVal()[k])
		if err != nil {
			return nil, err
		}
		out[k] = x
	}
	return out, nil
}

// plain converts a Value as Feast's convert_response_to_dict does.
func plain(v *types.Value) (any, error) {
	switch x := v.GetVal().(type) {
	case nil:
		return nil, nil
	case *types.Value_NullVal:
		return nil, nil
	case *types.Value_BytesVal:
		return base64.StdEncoding.EncodeToString(x.BytesVal), nil
	case *types.Value_StringVal:
		return x.StringVal, nil
	case *types.Value_Int32Val:
		return x.Int32Val, nil
	case *types.Value_Int64Val:
		return x.Int64Val, nil
	case *types.Value_DoubleVal:
		return float(x.DoubleVal), nil
	case *types.Value_FloatVal:
		return float(float64(x.FloatVal)), nil
	case *types.Value_BoolVal:
		return x.BoolVal, nil
	case *types.Value_UnixTimestampVal:
		return x.UnixTimestampVal, nil
	case *types.Value_BytesListVal:
		return b64s(x.BytesListVal.GetVal()), nil
	case *types.Value_StringListVal:
		return nonNil(x.StringListVal.GetVal()), nil
	case *types.Value_Int32ListVal:
		return nonNil(x.Int32ListVal.GetVal()), nil
	case *types.Value_Int64ListVal:
		return nonNil(x.Int64ListVal.GetVal()), nil
	case *types.Value_DoubleListVal:
		return floats64(x.DoubleListVal.GetVal()), nil
	case *types.Value_FloatListVal:
		return floats32(x.FloatListVal.GetVal()), nil
	case *types.Value_BoolListVal:
		return nonNil(x.BoolListVal.GetVal()), nil
	case *types.Value_UnixTimestampListVal:
		return nonNil(x.UnixTimestampListVal.GetVal()), nil
	case *types.Value_MapVal:
		return plainMap(x.MapVal)
	case *types.Value_MapListVal:
		out := []any{}
		for _, m := range x.MapListVal.GetVal() {
			pm, err := plainMap(m)
			if err != nil {
				return nil, err
			}
			out = append(out, pm)
		}
		return out, nil
	case *types.Value_BytesSetVal:
		return b64s(x.BytesSetVal.GetVal()), nil
	case *types.Value_StringSetVal:
		return nonNil(x.StringSetVal.GetVal()), nil
	case *types.Value_Int32SetVal:
		return nonNil(x.Int32SetVal.GetVal()), nil
	case *types.Value_Int64SetVal:
		return nonNil(x.Int64SetVal.GetVal()), nil
	case *types.Value_DoubleSetVal:
		return floats64(x.DoubleSetVal.GetVal()), nil
	case *types.Value_FloatSetVal:
		return floats32(x.FloatSetVal.GetVal()), nil
	case *types.Value_BoolSetVal:
		return nonNil(x.BoolSetVal.GetVal()), nil
	case *types.Value_UnixTimestampSetVal:
		return nonNil(x.UnixTimestampSetVal.GetVal()), nil
	case *types.Value_UuidVal:
		return x.UuidVal, nil
	case *types.Value_TimeUuidVal:
		return x.TimeUuidVal, nil
	case *types.Value_UuidListVal:
		return nonNil(x.UuidListVal.GetVal()), nil
	case *types.Value_TimeUuidListVal:
		return nonNil(x.TimeUuidListVal.GetVal()), nil
	default:
		return nil, fmt.Errorf("unsupported Value kind %T", x)
	}
}

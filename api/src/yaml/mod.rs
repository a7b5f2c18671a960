//! YAML in and out for every document this project reads or writes
//! (`feature_store.yaml`, FeatureView files, routing tables, the proxy's
//! auth config, the CRDs), on serde-saphyr: serde-yaml is unmaintained and
//! pulls in unsafe-libyaml (RUSTSEC-2024-0449).
//!
//! The reader options below keep what serde-yaml 0.9 accepted: YAML 1.2
//! core scalars, `<<` as an ordinary key, no limits on document size beyond
//! depth and alias expansion. Blocks whose type depends on a sibling field
//! (a backend's `conf`) are read into a [`serde_json::Value`] first, as the
//! CRDs hold them anyway.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
use serde_saphyr::{Budget, MergeKeyPolicy, NonFiniteFloatPolicy, Options};

mod value;

pub use value::{Error as ValueError, Mapping, Value};

/// Deepest nesting of lists and mappings (serde-saphyr's default). serde-yaml
/// allowed 128, but reading 128 levels into a `Value` takes about 3 MiB of
/// stack in a debug build, more than a 2 MiB thread (Tokio's workers) has;
/// 64 fits with room to spare, and no configuration here nests past 10.
pub(crate) const MAX_DEPTH: usize = 64;

/// Most events aliases may replay (and anchors record) in one document. A
/// configuration reuses a few small blocks, a few hundred events; an alias
/// bomb is refused after this many (serde-saphyr's default, a million,
/// takes about a second of CPU to reach).
const MAX_ALIAS_EVENTS: usize = 100_000;

/// A document that did not read as the expected type: the failing field's
/// path (serde_path_to_error's notation: `.` is the document itself) and
/// the parser's or the type's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PathError {
    pub path: String,
    pub message: String,
}

/// Why [`documents`] refused a multi-document stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentsError {
    #[error("more than {0} YAML documents")]
    TooMany(usize),
    /// Document `index` (1-based) does not parse.
    #[error("document {index}: {message}")]
    Invalid { index: usize, message: String },
}

/// A value could not be written as YAML (a map with non-string keys, a
/// serializer that fails).
#[derive(Debug, thiserror::Error)]
#[error("cannot write YAML: {0}")]
pub struct WriteError(#[from] serde_saphyr::SerializeError);

/// The options every reader here uses.
pub fn options() -> Options {
    let mut o = Options::default();
    // Messages end up in conditions, events and log lines: one line each,
    // no source snippet (the text may hold a credential).
    o.with_snippet = false;
    // YAML 1.2 core schema, as serde-yaml 0.9: `yes`/`on` are strings and,
    // where no type is known (a JSON value), so are `0755` and `1_000`.
    o.strict_booleans = true;
    o.leading_zero_numbers_as_strings = true;
    o.underscored_numbers_as_strings = true;
    // serde-yaml 0.9 did not expand merge keys: `<<` is a key like any
    // other (and an unknown field where fields are checked).
    o.merge_keys = MergeKeyPolicy::AsOrdinary;
    // Where no type is known (a `Value`), `.nan` and `.inf` stay floats: a
    // Cassandra `request_timeout: .inf` still means no timeout.
    o.non_finite_float_policy = NonFiniteFloatPolicy::PassThrough;
    o.budget = Some(budget());
    o.alias_limits.max_total_replayed_events = MAX_ALIAS_EVENTS;
    o
}

/// serde-yaml had no event, node or document counts; the documents read
/// here are bounded by their source (a ConfigMap, a file the operator of
/// the proxy owns). Depth and alias replay stay limited: the cap on
/// replayed events stops alias bombs (the aliases-per-anchor ratio would
/// also refuse a list repeating one anchor, which serde-yaml read).
fn budget() -> Budget {
    let mut b = Budget::default();
    b.enforce_alias_anchor_ratio = false;
    b.max_recorded_anchor_events = MAX_ALIAS_EVENTS;
    b.max_reader_input_bytes = None;
    b.max_events = usize::MAX;
    b.max_nodes = usize::MAX;
    b.max_documents = usize::MAX;
    b.max_total_scalar_bytes = usize::MAX;
    b.max_depth = MAX_DEPTH;
    b
}

/// Reads one YAML (or JSON) document as `T`; an error names the field
/// where it happened.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, PathError> {
    let mut path = None;
    serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    })
    .map_err(|e| PathError {
        // An error after the document (a second one) has no field path.
        path: path.unwrap_or_else(|| ".".to_string()),
        message: e.to_string(),
    })
}

/// Reads every document of a `---` separated stream, at most `max` of
/// them; a null document (empty, `~`) is `Value::Null`. Stops at the first
/// document that does not parse.
pub fn documents(text: &str, max: usize) -> Result<Vec<Value>, DocumentsError> {
    let null_docs = scan_documents(text, max)?;
    // serde-saphyr's iterator skips null documents; put them back where
    // the scan found them so document numbers match the file.
    let mut reader = std::io::Cursor::new(text.as_bytes());
    let mut values = serde_saphyr::read_with_options::<_, Value>(&mut reader, options());
    let mut out = Vec::with_capacity(null_docs.len());
    for (i, is_null) in null_docs.iter().enumerate() {
        if *is_null {
            out.push(Value::Null);
            continue;
        }
        match values.next() {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => {
                return Err(DocumentsError::Invalid {
                    index: i + 1,
                    message: e.to_string(),
                });
            }
            None => {
                return Err(DocumentsError::Invalid {
                    index: i + 1,
                    message: "document ended early".to_string(),
                });
            }
        }
    }
    if let Some(extra) = values.next() {
        return Err(DocumentsError::Invalid {
            index: out.len() + 1,
            message: extra
                .err()
                .map_or_else(|| "unexpected document".to_string(), |e| e.to_string()),
        });
    }
    Ok(out)
}

/// One pass of the event parser over the stream: whether each document
/// is null, the count capped at `max`, the first syntax error with its
/// document. A stream with no document at all counts as one null document,
/// as serde-yaml read it.
fn scan_documents(text: &str, max: usize) -> Result<Vec<bool>, DocumentsError> {
    let mut null_docs = Vec::new();
    let mut ended = 0;
    let mut want_root = false;
    for event in Parser::new_from_str(text) {
        let (event, _) = event.map_err(|e| DocumentsError::Invalid {
            index: ended + 1,
            // As serde-saphyr words its own parse errors.
            message: format!(
                "{} at line {}, column {}",
                e.info(),
                e.marker().line(),
                e.marker().col() + 1
            ),
        })?;
        match event {
            Event::DocumentEnd => ended += 1,
            Event::DocumentStart(..) => {
                if null_docs.len() >= max {
                    return Err(DocumentsError::TooMany(max));
                }
                null_docs.push(false);
                want_root = true;
            }
            Event::Scalar(value, style, _, tag) if want_root => {
                want_root = false;
                let is_null = match tag {
                    None => {
                        style == ScalarStyle::Plain
                            && matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL")
                    }
                    Some(t) => t.is_yaml_core_schema_tag("null"),
                };
                if let Some(last) = null_docs.last_mut() {
                    *last = is_null;
                }
            }
            Event::SequenceStart(..)
            | Event::MappingStart(..)
            | Event::Alias(_)
            | Event::UnresolvedAlias(_) => want_root = false,
            _ => {}
        }
    }
    if null_docs.is_empty() {
        null_docs.push(true);
    }
    Ok(null_docs)
}

/// Writes `value` as one YAML document, laid out as serde-yaml did (block
/// mappings, lists at their key's indentation), every string on one line:
/// a string with a line break is double-quoted with `\n` escapes (as
/// serde-yaml wrote the ones holding tabs), never a `|` or folded `>`
/// block, so a reader's handling of block indentation and folding never
/// matters.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, WriteError> {
    let mut o = serde_saphyr::SerializerOptions::default();
    o.prefer_block_scalars = false;
    Ok(serde_saphyr::to_string_with_options(value, o)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<Value> {
        documents(text, 10).unwrap()
    }

    #[test]
    fn null_documents_keep_their_place() {
        let docs = names("a: 1\n---\n---\n~\n--- !!null\n---\nb: 2\n");
        assert_eq!(docs.len(), 5);
        assert_eq!(docs[1], Value::Null);
        assert_eq!(docs[2], Value::Null);
        assert_eq!(docs[3], Value::Null);
        assert_eq!(docs[4].get("b"), Some(&Value::UInt(2)));
        // Not null: a quoted empty string, a string-tagged `~`.
        assert_eq!(names("--- \"\"\n"), vec![Value::String(String::new())]);
        assert_eq!(names("--- !!str ~\n"), vec![Value::String("~".into())]);
        // No document at all is one null document, as serde-yaml read it.
        assert_eq!(names(""), vec![Value::Null]);
        assert_eq!(names("# nothing\n"), vec![Value::Null]);
    }

    #[test]
    fn too_many_documents_stop_the_scan() {
        let text = "a: 1\n---\n".repeat(11);
        assert_eq!(documents(&text, 10), Err(DocumentsError::TooMany(10)));
        assert_eq!(documents(&"a: 1\n---\n".repeat(9), 10).unwrap().len(), 10);
        // The cap counts before the later syntax error is reached.
        let text = format!("{}a: [\n", "a: 1\n---\n".repeat(10));
        assert_eq!(documents(&text, 10), Err(DocumentsError::TooMany(10)));
    }

    #[test]
    fn errors_name_their_document() {
        let Err(DocumentsError::Invalid { index, message }) =
            documents("a: 1\n---\nb: [\n---\nc: 3\n", 10)
        else {
            panic!("accepted")
        };
        assert_eq!(index, 2);
        assert!(message.contains("line 3"), "{message}");
        // A duplicate key is found while reading values, not by the scan.
        let Err(DocumentsError::Invalid { index, message }) =
            documents("a: 1\n---\n---\nb: 1\nb: 2\n", 10)
        else {
            panic!("accepted")
        };
        assert_eq!(index, 3);
        assert!(message.contains("duplicate"), "{message}");
    }

    #[test]
    fn alias_bombs_are_refused_and_repeated_aliases_are_not() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = from_str::<Value>(&bomb).unwrap_err();
        assert!(err.message.contains("budget"), "{err}");
        let many = format!("base: &b x\nlist: [{}]\n", vec!["*b"; 500].join(", "));
        let v: Value = from_str(&many).unwrap();
        assert!(matches!(v.get("list"), Some(Value::Sequence(l)) if l.len() == 500));
    }

    #[test]
    fn depth_is_limited_within_a_small_stack() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        // On a 2 MiB thread, as a Tokio worker has, in a debug build too.
        let ok = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                assert!(from_str::<Value>(&deep(MAX_DEPTH - 1)).is_ok());
                let err = from_str::<Value>(&deep(MAX_DEPTH + 1)).unwrap_err();
                assert!(err.message.contains("Depth"), "{err}");
                let err = from_str::<Value>(&deep(100_000)).unwrap_err();
                assert!(!err.message.is_empty());
            })
            .unwrap()
            .join();
        assert!(ok.is_ok());
    }

    #[test]
    fn from_str_names_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            list: Vec<u8>,
        }
        let err = from_str::<T>("list: [1, 999]").unwrap_err();
        assert_eq!(err.path, "list[1]");
        let err = from_str::<T>("list: []\n---\nlist: []\n").unwrap_err();
        assert_eq!(err.path, ".");
        assert!(err.message.contains("multiple"), "{err}");
        // One line, no source snippet (documents may hold credentials).
        let err = from_str::<T>("list: [1, 999]\nsecret: hunter2\n").unwrap_err();
        assert!(
            !err.message.contains('\n') && !err.message.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn written_yaml_reads_back() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct T {
            s: Vec<String>,
            f: f64,
        }
        let t = T {
            s: vec![
                "plain".into(),
                "two\nlines".into(),
                "tab\there".into(),
                "yes".into(),
                "0755".into(),
                "~".into(),
                "#x".into(),
                "a: b".into(),
                " lead".into(),
                "x".repeat(200),
            ],
            f: 2.5,
        };
        let text = to_string(&t).unwrap();
        assert!(!text.contains('|') && !text.contains('>'), "{text}");
        assert_eq!(from_str::<T>(&text).unwrap(), t);
        let back: Value = from_str(&text).unwrap();
        assert!(
            matches!(back.get("s"), Some(Value::Sequence(l)) if l.iter().all(|v| v.as_str().is_some()))
        );
    }
}

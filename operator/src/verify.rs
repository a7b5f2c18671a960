//! Verifying a live move's copy before reads switch to the new backend.
//! Every entity key the old backend lists is looked up in the new one (the
//! counts), and a sample of keys is compared row against row: the new
//! backend must hold the same or a newer event time, and the same values at
//! an equal event time.
//!
//! The comparison, the sampling and the verdict are pure functions here;
//! [`verify_page`] and [`copy_rows`] are the only ones that talk to the
//! backends, and `migrate.rs` records the figures in the FeatureView's
//! status and decides what happens next.

use std::cmp::Ordering;
use std::time::Duration;

use api::crd::MigrationVerification;
use api::feast_config::BackendType;
use api::routing::RoutedView;
use backends::{BackendError, OnlineStore, ReadRow, Timestamp, WriteRow};
use prost::Message;

/// Keys of a page compared row against row (the rest only counted).
pub const SAMPLE_PER_PAGE: usize = 100;
/// Failed verifications in a row before a move is stuck.
pub const MAX_ATTEMPTS: i32 = 3;
/// How long a suspected mismatch waits before `to` is read again: a proxy
/// writes both backends of a move at once, so a row newer in `from` than in
/// `to` may be a write still on its way to `to`.
pub const RECHECK_DELAY: Duration = Duration::from_millis(300);
/// Mismatches described in the status.
const EXAMPLES: usize = 3;

pub const RUNNING: &str = "Running";
pub const PASSED: &str = "Passed";
pub const FAILED: &str = "Failed";

/// The step, in nanoseconds, of the event times a backend reads back (the
/// README's "Write semantics"): SQLite integer seconds, Cassandra's
/// `event_ts` milliseconds (its writes order by microseconds, but a read
/// sees milliseconds), Bigtable's `event_ts` text microseconds, Redis a
/// protobuf Timestamp.
pub fn event_time_step(t: BackendType) -> i64 {
    match t {
        BackendType::Sqlite => 1_000_000_000,
        BackendType::Cassandra => 1_000_000,
        BackendType::Bigtable => 1_000,
        BackendType::Redis => 1,
    }
}

/// The step two backends' rows are compared at: the coarser one, since a
/// row copied to the coarser backend loses the finer digits.
pub fn common_step(a: BackendType, b: BackendType) -> i64 {
    event_time_step(a).max(event_time_step(b))
}

fn ticks(ts: Timestamp, step: i64) -> i128 {
    (i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos))
        .div_euclid(i128::from(step.max(1)))
}

/// How `to`'s row for a key stands against `from`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `to` has no row.
    Missing,
    /// `to` holds an older event time.
    Older,
    /// Equal event times, other values.
    Differs,
    /// Equal event times, equal values.
    Same,
    /// `to` holds a newer event time (a write since the copy).
    Newer,
}

impl Verdict {
    /// Whether `to` is behind `from` for this key (a backfill copies it).
    pub fn behind(self) -> bool {
        matches!(self, Verdict::Missing | Verdict::Older | Verdict::Differs)
    }

    fn describe(self) -> &'static str {
        match self {
            Verdict::Missing => "missing in the new backend",
            Verdict::Older => "older event time in the new backend",
            Verdict::Differs => "other values at the same event time",
            Verdict::Same => "same",
            Verdict::Newer => "newer in the new backend",
        }
    }
}

/// Compares `to`'s row with `from`'s at `step` nanoseconds.
pub fn compare(from: &ReadRow, to: Option<&ReadRow>, step: i64) -> Verdict {
    let Some(to) = to else {
        return Verdict::Missing;
    };
    match ticks(to.event_ts, step).cmp(&ticks(from.event_ts, step)) {
        Ordering::Less => Verdict::Older,
        Ordering::Greater => Verdict::Newer,
        Ordering::Equal if same_values(from, to) => Verdict::Same,
        Ordering::Equal => Verdict::Differs,
    }
}

/// Values compared by their serialized bytes: a NaN equals itself, and two
/// backends holding the same Feast Value hold the same bytes.
fn same_values(a: &ReadRow, b: &ReadRow) -> bool {
    a.values.len() == b.values.len()
        && a.values.iter().zip(&b.values).all(|(x, y)| match (x, y) {
            (None, None) => true,
            (Some(x), Some(y)) => x.encode_to_vec() == y.encode_to_vec(),
            _ => false,
        })
}

/// The indices of a page of `len` keys compared row against row: every key
/// of a small page, else `per_page` keys spread evenly over it, shifted by
/// `salt` so that another attempt looks at other keys.
pub fn sample_indices(len: usize, per_page: usize, salt: u64) -> Vec<usize> {
    if len <= per_page {
        return (0..len).collect();
    }
    let stride = len.div_ceil(per_page.max(1));
    let offset = usize::try_from(salt % stride as u64).unwrap_or(0);
    (offset..len).step_by(stride).collect()
}

/// A sampling salt from the attempt and the keys listed so far: differs
/// from page to page and from attempt to attempt, same after a restart.
pub fn salt(attempt: i32, listed: i64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in attempt
        .to_le_bytes()
        .into_iter()
        .chain(listed.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What one page of keys showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageFigures {
    /// Keys listed in the page (whether or not `from` still had them).
    pub listed: i64,
    pub source_keys: i64,
    pub destination_keys: i64,
    pub sampled_keys: i64,
    pub verified_keys: i64,
    /// Sampled keys `to` holds but is behind on.
    pub sample_mismatches: i64,
    /// Keys `to` looked behind on at first, read from it again.
    pub rechecked_keys: i64,
    pub examples: Vec<String>,
}

/// A fresh verification, attempt `attempt`.
pub fn start(attempt: i32) -> MigrationVerification {
    MigrationVerification {
        attempt,
        max_attempts: MAX_ATTEMPTS,
        result: RUNNING.to_string(),
        ..Default::default()
    }
}

/// Adds a page's figures to the verification's.
pub fn add(v: &mut MigrationVerification, p: &PageFigures) {
    v.source_keys += p.source_keys;
    v.destination_keys += p.destination_keys;
    v.sampled_keys += p.sampled_keys;
    v.verified_keys += p.verified_keys;
    v.rechecked_keys += p.rechecked_keys;
    v.mismatches += (p.source_keys - p.destination_keys) + p.sample_mismatches;
    for e in &p.examples {
        if v.examples.len() < EXAMPLES {
            v.examples.push(e.clone());
        }
    }
}

/// What a finished verification means for the move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing missing, nothing behind: reads may switch.
    Switch,
    /// Behind: one more backfill pass, then verify again.
    Backfill,
    /// Behind for the last allowed attempt: the move waits.
    Stuck,
}

pub fn decide(v: &MigrationVerification) -> Decision {
    if v.mismatches == 0 && v.destination_keys == v.source_keys {
        Decision::Switch
    } else if v.attempt < v.max_attempts {
        Decision::Backfill
    } else {
        Decision::Stuck
    }
}

/// The figures in a sentence (events and conditions).
pub fn summary(v: &MigrationVerification) -> String {
    let mut s = format!(
        "verification {}/{}: {} of {} source keys present in the new backend, {} of {} sampled keys verified, {} mismatches",
        v.attempt,
        v.max_attempts,
        v.destination_keys,
        v.source_keys,
        v.verified_keys,
        v.sampled_keys,
        v.mismatches
    );
    if !v.examples.is_empty() {
        s.push_str(" (e.g. ");
        s.push_str(&v.examples.join("; "));
        s.push(')');
    }
    s
}

/// A verification read that failed, by side.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading the old backend: {0}")]
    Source(#[source] BackendError),
    #[error("reading the new backend: {0}")]
    Destination(#[source] BackendError),
}

/// The two backends of a move, for one view.
pub struct Pair<'a> {
    pub from: &'a dyn OnlineStore,
    pub to: &'a dyn OnlineStore,
    pub project: &'a str,
    pub view: &'a RoutedView,
    /// [`common_step`] of the two backends.
    pub step: i64,
}

impl Pair<'_> {
    fn features(&self) -> Vec<String> {
        self.view.features.iter().map(|f| f.name.clone()).collect()
    }
}

fn example(key: &[u8], verdict: Verdict, from: &ReadRow, to: Option<&ReadRow>) -> String {
    // Entity keys can be long: a prefix identifies one well enough.
    let mut hex = hex::encode(&key[..key.len().min(24)]);
    if key.len() > 24 {
        hex.push_str("..");
    }
    match to {
        Some(to) if verdict == Verdict::Older => format!(
            "key {hex}: {} ({} < {})",
            verdict.describe(),
            rfc3339(to.event_ts),
            rfc3339(from.event_ts)
        ),
        _ => format!("key {hex}: {}", verdict.describe()),
    }
}

fn rfc3339(ts: Timestamp) -> String {
    chrono::DateTime::from_timestamp(ts.seconds, ts.nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| format!("{}s", ts.seconds))
}

/// Verifies one page of keys listed in `from`: reads every key from `to`,
/// and from `from` the sampled keys and those `to` lacks; reads `to` again,
/// after [`RECHECK_DELAY`], for the keys it looked behind on.
pub async fn verify_page(
    pair: &Pair<'_>,
    keys: &[Vec<u8>],
    salt: u64,
    recheck: Duration,
) -> Result<PageFigures, VerifyError> {
    let mut fig = PageFigures {
        listed: keys.len() as i64,
        ..Default::default()
    };
    if keys.is_empty() {
        return Ok(fig);
    }
    let features = pair.features();
    let mut there = pair
        .to
        .read(pair.project, pair.view, keys, &features)
        .await
        .map_err(VerifyError::Destination)?;
    let sampled = sample_indices(keys.len(), SAMPLE_PER_PAGE, salt);
    let mut look: Vec<usize> = sampled
        .iter()
        .copied()
        .chain((0..keys.len()).filter(|&i| there.get(i).is_none_or(Option::is_none)))
        .collect();
    look.sort_unstable();
    look.dedup();
    // `from` after `to`: a write that reached both in between shows as
    // newer in `from`, which the recheck below clears; never the reverse.
    let look_keys: Vec<Vec<u8>> = look.iter().map(|&i| keys[i].clone()).collect();
    let here = pair
        .from
        .read(pair.project, pair.view, &look_keys, &features)
        .await
        .map_err(VerifyError::Source)?;
    // Key index -> `from`'s row, for the keys read from `from`.
    let source: Vec<(usize, Option<ReadRow>)> = look.into_iter().zip(here).collect();
    let suspects: Vec<usize> = source
        .iter()
        .filter_map(|(i, row)| {
            let row = row.as_ref()?;
            compare(row, there.get(*i).and_then(Option::as_ref), pair.step)
                .behind()
                .then_some(*i)
        })
        .collect();
    if !suspects.is_empty() {
        tracing::debug!(
            view = %pair.view.name,
            keys = keys.len(),
            suspects = suspects.len(),
            "verification: reading keys the new backend looked behind on again"
        );
        fig.rechecked_keys = suspects.len() as i64;
        tokio::time::sleep(recheck).await;
        let again_keys: Vec<Vec<u8>> = suspects.iter().map(|&i| keys[i].clone()).collect();
        let again = pair
            .to
            .read(pair.project, pair.view, &again_keys, &features)
            .await
            .map_err(VerifyError::Destination)?;
        for (&i, row) in suspects.iter().zip(again) {
            if let Some(slot) = there.get_mut(i) {
                *slot = row;
            }
        }
    }
    let mut read_from = source.into_iter().peekable();
    let sampled: std::collections::BTreeSet<usize> = sampled.into_iter().collect();
    for (i, key) in keys.iter().enumerate() {
        let to_row = there.get(i).and_then(Option::as_ref);
        let from_row = match read_from.peek() {
            Some((j, _)) if *j == i => read_from.next().map(|(_, r)| r),
            _ => None,
        };
        let from_row = match from_row {
            // Read from `from` and gone (expired since it was listed).
            Some(None) => continue,
            Some(Some(r)) => Some(r),
            // Not read from `from`: `to` has it, and it was listed.
            None => None,
        };
        fig.source_keys += 1;
        if to_row.is_some() {
            fig.destination_keys += 1;
        }
        let Some(from_row) = from_row else {
            continue;
        };
        let verdict = compare(&from_row, to_row, pair.step);
        let is_sampled = sampled.contains(&i);
        if is_sampled {
            fig.sampled_keys += 1;
            if !verdict.behind() {
                fig.verified_keys += 1;
            } else if verdict != Verdict::Missing {
                fig.sample_mismatches += 1;
            }
        }
        // Missing keys count whether sampled or not; other differences only
        // where the rows were compared as a sample.
        let counted = verdict == Verdict::Missing || (is_sampled && verdict.behind());
        if counted && fig.examples.len() < EXAMPLES {
            fig.examples.push(example(key, verdict, &from_row, to_row));
        }
    }
    Ok(fig)
}

/// Copies the rows of `keys` that `to` lacks or is behind on (see
/// [`compare`]); returns how many. The backends' writes keep the newest
/// event time, so a row copied here never replaces a newer one written
/// meanwhile; reading `to` first only spares rewriting rows already there.
pub async fn copy_rows(pair: &Pair<'_>, keys: &[Vec<u8>]) -> Result<i64, VerifyError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let features = pair.features();
    let have = pair
        .from
        .read(pair.project, pair.view, keys, &features)
        .await
        .map_err(VerifyError::Source)?;
    let there = pair
        .to
        .read(pair.project, pair.view, keys, &features)
        .await
        .map_err(VerifyError::Destination)?;
    let rows: Vec<WriteRow> = keys
        .iter()
        .zip(have)
        .zip(there)
        .filter_map(|((key, from), to)| {
            let from = from?;
            if !compare(&from, to.as_ref(), pair.step).behind() {
                return None;
            }
            let values = features
                .iter()
                .zip(from.values)
                .filter_map(|(f, v)| v.map(|v| (f.clone(), v)))
                .collect();
            Some(WriteRow {
                entity_key: key.clone(),
                values,
                event_ts: from.event_ts,
                created_ts: None,
            })
        })
        .collect();
    let n = rows.len() as i64;
    if n > 0 {
        pair.to
            .write(pair.project, pair.view, rows)
            .await
            .map_err(VerifyError::Destination)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Dtype;
    use api::feast_config::SqliteConf;
    use api::proto::{Val, Value};
    use api::routing::Feature;
    use backends::sqlite::SqliteStore;
    use backends::{OpenContext, Trust};

    fn int(v: i64) -> Option<Value> {
        Some(Value {
            val: Some(Val::Int64Val(v)),
        })
    }

    fn row(v: i64, seconds: i64, nanos: u32) -> ReadRow {
        ReadRow {
            values: vec![int(v)],
            event_ts: Timestamp { seconds, nanos },
        }
    }

    #[test]
    fn compare_at_the_coarser_step() {
        let ms = common_step(BackendType::Cassandra, BackendType::Bigtable);
        assert_eq!(ms, 1_000_000);
        assert_eq!(
            common_step(BackendType::Redis, BackendType::Bigtable),
            1_000
        );
        let s = common_step(BackendType::Redis, BackendType::Sqlite);
        assert_eq!(s, 1_000_000_000);
        let from = row(1, 100, 700_400_000);
        assert_eq!(compare(&from, None, ms), Verdict::Missing);
        assert_eq!(
            compare(&from, Some(&row(1, 100, 699_000_000)), ms),
            Verdict::Older
        );
        assert_eq!(compare(&from, Some(&row(1, 101, 0)), ms), Verdict::Newer);
        // Same millisecond, same value: a copy to a millisecond store.
        assert_eq!(
            compare(&from, Some(&row(1, 100, 700_000_000)), ms),
            Verdict::Same
        );
        assert_eq!(
            compare(&from, Some(&row(2, 100, 700_999_999)), ms),
            Verdict::Differs
        );
        // SQLite keeps whole seconds: .7 and .0 are one event time there.
        assert_eq!(compare(&from, Some(&row(1, 100, 0)), s), Verdict::Same);
        assert_eq!(
            compare(&from, Some(&row(1, 99, 999_999_999)), s),
            Verdict::Older
        );
        // Before 1970 floors the same way.
        assert_eq!(
            compare(&row(1, -2, 500_000_000), Some(&row(1, -2, 0)), s),
            Verdict::Same
        );
        assert!(Verdict::Missing.behind() && Verdict::Older.behind() && Verdict::Differs.behind());
        assert!(!Verdict::Same.behind() && !Verdict::Newer.behind());
    }

    #[test]
    fn values_compare_by_bytes() {
        let nan = ReadRow {
            values: vec![
                Some(Value {
                    val: Some(Val::DoubleVal(f64::NAN)),
                }),
                None,
            ],
            event_ts: Timestamp::from_seconds(5),
        };
        assert_eq!(compare(&nan, Some(&nan.clone()), 1), Verdict::Same);
        let mut other = nan.clone();
        other.values[1] = int(0);
        assert_eq!(compare(&nan, Some(&other), 1), Verdict::Differs);
    }

    #[test]
    fn samples_spread_over_the_page_and_move_with_the_salt() {
        assert_eq!(sample_indices(7, 100, 3), (0..7).collect::<Vec<_>>());
        let a = sample_indices(500, 100, 0);
        assert_eq!(a.len(), 100);
        assert_eq!(a[..3], [0, 5, 10]);
        let b = sample_indices(500, 100, 3);
        assert_eq!(b.len(), 100);
        assert_eq!(b[..3], [3, 8, 13]);
        assert!(b.iter().all(|&i| i < 500));
        // A short last page of a big view.
        assert_eq!(
            sample_indices(101, 100, 1),
            (1..101).step_by(2).collect::<Vec<_>>()
        );
        assert_ne!(salt(1, 0), salt(2, 0));
        assert_ne!(salt(1, 0), salt(1, 500));
        assert_eq!(salt(1, 500), salt(1, 500));
    }

    #[test]
    fn the_verdict_needs_every_key_and_no_mismatch() {
        let mut v = start(1);
        add(
            &mut v,
            &PageFigures {
                listed: 10,
                source_keys: 10,
                destination_keys: 10,
                sampled_keys: 4,
                verified_keys: 4,
                ..Default::default()
            },
        );
        assert_eq!(decide(&v), Decision::Switch);
        add(
            &mut v,
            &PageFigures {
                listed: 5,
                source_keys: 5,
                destination_keys: 3,
                sampled_keys: 5,
                verified_keys: 2,
                sample_mismatches: 1,
                rechecked_keys: 4,
                examples: vec!["a".into(), "b".into(), "c".into()],
            },
        );
        assert_eq!(
            (
                v.source_keys,
                v.destination_keys,
                v.sampled_keys,
                v.verified_keys,
                v.mismatches
            ),
            (15, 13, 9, 6, 3)
        );
        assert_eq!(v.examples.len(), 3);
        assert_eq!(v.rechecked_keys, 4);
        assert_eq!(decide(&v), Decision::Backfill);
        v.attempt = MAX_ATTEMPTS;
        assert_eq!(decide(&v), Decision::Stuck);
        let s = summary(&v);
        assert!(
            s.contains("13 of 15 source keys") && s.contains("3 mismatches"),
            "{s}"
        );
    }

    fn view() -> RoutedView {
        RoutedView {
            name: "v".into(),
            entities: vec![],
            features: vec![
                Feature {
                    name: "a".into(),
                    dtype: Dtype::Int64,
                },
                Feature {
                    name: "b".into(),
                    dtype: Dtype::Int64,
                },
            ],
            ttl_seconds: None,
            online: true,
            tags: Default::default(),
            backend: "s".into(),
            timestamp_field: None,
            created_timestamp_column: None,
            push_source: None,
            migration: None,
        }
    }

    fn sqlite(dir: &std::path::Path) -> SqliteStore {
        let conf = SqliteConf {
            path: "online.db".into(),
            vector_enabled: None,
            vector_len: None,
            text_search_enabled: None,
            enable_openai_compatible_store: None,
            key_ttl_seconds: None,
        };
        let ctx = OpenContext {
            base_dir: dir.to_path_buf(),
            secrets_dir: std::path::PathBuf::new(),
            trust: Trust::Confined,
        };
        SqliteStore::open(&conf, &ctx).unwrap()
    }

    fn put(key: usize, a: i64, seconds: i64) -> WriteRow {
        WriteRow {
            entity_key: format!("k{key:04}").into_bytes(),
            values: vec![
                (
                    "a".into(),
                    Value {
                        val: Some(Val::Int64Val(a)),
                    },
                ),
                (
                    "b".into(),
                    Value {
                        val: Some(Val::Int64Val(-a)),
                    },
                ),
            ],
            event_ts: Timestamp::from_seconds(seconds),
            created_ts: None,
        }
    }

    /// Two real SQLite stores: a copy with holes and stale rows fails the
    /// verification with exact figures; after `copy_rows` it passes, and a
    /// row newer in the new store is neither copied over nor a mismatch.
    #[tokio::test]
    async fn verify_then_copy_then_verify() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (sqlite(d1.path()), sqlite(d2.path()));
        let v = view();
        from.create("p", &v).await.unwrap();
        to.create("p", &v).await.unwrap();
        let n = 200;
        from.write("p", &v, (0..n).map(|i| put(i, i as i64, 100)).collect())
            .await
            .unwrap();
        // `to`: keys 0..160 copied; 10..20 stale (older), 20..25 other
        // values at the same time, 25..30 newer (dual writes); 160.. missing.
        let mut there: Vec<WriteRow> = (0..160).map(|i| put(i, i as i64, 100)).collect();
        for (i, r) in there.iter_mut().enumerate() {
            match i {
                10..20 => r.event_ts = Timestamp::from_seconds(99),
                20..25 => {
                    r.values[0].1 = Value {
                        val: Some(Val::Int64Val(-1)),
                    }
                }
                25..30 => *r = put(i, 1_000 + i as i64, 200),
                _ => {}
            }
        }
        to.write("p", &v, there).await.unwrap();
        let pair = Pair {
            from: &from,
            to: &to,
            project: "p",
            view: &v,
            step: common_step(BackendType::Sqlite, BackendType::Sqlite),
        };
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = from.scan_keys("p", &v, cursor, 1_000).await.unwrap();
            keys.extend(page.keys);
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(keys.len(), n);
        // A page of 200 samples every other key; salt 0: the even ones
        // (SQLite lists keys in order, so index i is key i).
        let fig = verify_page(&pair, &keys, 0, Duration::ZERO).await.unwrap();
        assert_eq!(fig.listed, 200);
        assert_eq!(fig.source_keys, 200);
        assert_eq!(fig.destination_keys, 160);
        assert_eq!(fig.sampled_keys, 100);
        // Sampled even keys behind: 10..20 -> 5, 20..25 -> 3; missing
        // even keys 160..200 -> 20 (counted as missing, not here).
        assert_eq!(fig.sample_mismatches, 8);
        assert_eq!(fig.verified_keys, 100 - 8 - 20);
        // Read again: the 8 sampled keys behind and all 40 missing ones.
        assert_eq!(fig.rechecked_keys, 48);
        assert_eq!(fig.examples.len(), EXAMPLES);
        assert!(
            fig.examples[0].contains("older event time in the new backend"),
            "{:?}",
            fig.examples
        );
        let mut ver = start(1);
        add(&mut ver, &fig);
        assert_eq!(ver.mismatches, 40 + 8);
        assert_eq!(decide(&ver), Decision::Backfill);

        // The copy: 40 missing, 10 older, 5 differing; the 5 newer stay.
        assert_eq!(copy_rows(&pair, &keys).await.unwrap(), 55);
        assert_eq!(copy_rows(&pair, &keys).await.unwrap(), 0);
        let newer = to
            .read("p", &v, &[b"k0027".to_vec()], &["a".into()])
            .await
            .unwrap();
        assert_eq!(newer[0].as_ref().unwrap().values[0], int(1_027));
        let mut ver = start(2);
        for salt in [0, 1] {
            let fig = verify_page(&pair, &keys, salt, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!((fig.source_keys, fig.destination_keys), (200, 200));
            assert_eq!(fig.sample_mismatches, 0, "{:?}", fig.examples);
            assert_eq!(fig.rechecked_keys, 0);
            add(&mut ver, &fig);
        }
        assert_eq!(ver.sampled_keys, 200);
        assert_eq!(ver.verified_keys, 200);
        assert_eq!(decide(&ver), Decision::Switch);
    }
}

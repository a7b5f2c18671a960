//! What the operator refuses in a store's `spec.proxy` before it writes
//! anything: the CRD's schema bounds each field, these checks bound what a
//! CR author (who may not be trusted) makes the operator's objects do.
//! Each refusal names the field and the problem, never a value.

use std::collections::{BTreeMap, BTreeSet};

use api::crd::{ProxyAuth, ProxyAutoscaling, ProxyDisruptionBudget, ProxySpec};
use api::error::ConfigError;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{SELECTOR_KEYS, proxy_desired_replicas};
use crate::plan::{is_secret_key, is_secret_name};

/// The operator's own label and annotation domain.
const OWN_DOMAIN: &str = "hybrid-online-store.io";

/// Annotations that would loosen the Pod's sandbox (AppArmor profile,
/// the pre-1.19 seccomp fields); the operator sets a restricted
/// securityContext and a CR may not undo it.
const SANDBOX_ANNOTATIONS: [&str; 3] = [
    "container.apparmor.security.beta.kubernetes.io/",
    "seccomp.security.alpha.kubernetes.io/",
    "container.seccomp.security.alpha.kubernetes.io/",
];

/// Every check of `spec.proxy`, first failure first.
pub(super) fn check(file: &str, spec: &ProxySpec) -> Result<(), ConfigError> {
    let err = |field: &str, message: String| {
        ConfigError::new(file, format!("spec.proxy.{field}"), message)
    };
    if spec.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
        return Err(err(
            "image",
            "empty; leave it unset for the operator's image".into(),
        ));
    }
    if spec.grpc_port == Some(spec.port) {
        return Err(err(
            "grpcPort",
            "is the HTTP port; the gRPC listener needs a port of its own".into(),
        ));
    }
    if let Some(a) = &spec.autoscaling {
        check_autoscaling(a).map_err(|m| err("autoscaling", m))?;
    }
    if let Some(b) = &spec.pod_disruption_budget
        && let Some((field, m)) = check_budget(b, proxy_desired_replicas(spec))
    {
        return Err(err(&format!("podDisruptionBudget.{field}"), m));
    }
    check_names(spec).map_err(|(f, m)| err(&f, m))?;
    check_metadata(spec).map_err(|(f, m)| err(&f, m))?;
    check_env(spec).map_err(|(f, m)| err(&f, m))?;
    if let Some(a) = &spec.auth {
        check_auth(a).map_err(|(f, m)| err(&format!("auth.{f}"), m))?;
    }
    Ok(())
}

fn check_autoscaling(a: &ProxyAutoscaling) -> Result<(), String> {
    if a.min_replicas < 1 || a.max_replicas < 1 {
        return Err("minReplicas and maxReplicas must be at least 1".into());
    }
    if a.min_replicas > a.max_replicas {
        return Err(format!(
            "minReplicas ({}) exceeds maxReplicas ({})",
            a.min_replicas, a.max_replicas
        ));
    }
    if !(1..=1000).contains(&a.target_cpu_utilization_percentage) {
        return Err("targetCPUUtilizationPercentage must be 1 to 1000".into());
    }
    Ok(())
}

/// A budget value: a count, or a percentage of the desired Pods.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Budget {
    Count(i32),
    Percent(i32),
}

fn budget(v: &IntOrString) -> Result<Budget, String> {
    match v {
        IntOrString::Int(n) if *n >= 0 => Ok(Budget::Count(*n)),
        IntOrString::Int(_) => Err("must not be negative".into()),
        IntOrString::String(s) => s
            .strip_suffix('%')
            .filter(|d| !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<i32>().ok())
            .filter(|p| *p <= 100)
            .map(Budget::Percent)
            .ok_or_else(|| "must be a number or a percentage from `0%` to `100%`".into()),
    }
}

/// Checks a disruption budget against the proxy's smallest replica count:
/// a budget that lets no Pod be evicted then would block node drains (a
/// tenant could hold up the cluster's maintenance). Returns the field at
/// fault and the problem.
fn check_budget(b: &ProxyDisruptionBudget, pods: i32) -> Option<(&'static str, String)> {
    let blocked = |what: String| {
        format!(
            "{what} would let no proxy Pod be evicted at {pods} replicas (`replicas`, or \
             `autoscaling.minReplicas`), which blocks node drains; allow at least one"
        )
    };
    match (&b.min_available, &b.max_unavailable) {
        (Some(_), Some(_)) => Some((
            "minAvailable",
            "give minAvailable or maxUnavailable, not both".into(),
        )),
        (Some(v), None) => {
            let problem = match budget(v) {
                Err(m) => Some(m),
                Ok(_) if pods == 0 => None,
                Ok(Budget::Count(n)) if n >= pods => Some(blocked(format!("minAvailable {n}"))),
                // Kubernetes rounds a percentage of minAvailable up.
                Ok(Budget::Percent(p)) if (p * pods + 99) / 100 >= pods => {
                    Some(blocked(format!("minAvailable {p}%")))
                }
                Ok(_) => None,
            };
            problem.map(|m| ("minAvailable", m))
        }
        (None, Some(v)) => {
            let problem = match budget(v) {
                Err(m) => Some(m),
                Ok(_) if pods == 0 => None,
                Ok(Budget::Count(0)) | Ok(Budget::Percent(0)) => {
                    Some(blocked("maxUnavailable 0".into()))
                }
                Ok(_) => None,
            };
            problem.map(|m| ("maxUnavailable", m))
        }
        (None, None) => None,
    }
}

/// Names of other objects in the namespace: DNS-1123 subdomains (so none
/// climbs out of a mount path or an API path).
fn check_names(spec: &ProxySpec) -> Result<(), (String, String)> {
    const NOT_A_NAME: &str = "not an object name (lowercase letters, digits, `-` and `.`, at most 253 characters, starting and ending with a letter or digit)";
    if let Some(sa) = &spec.service_account_name
        && !is_secret_name(sa)
    {
        return Err(("serviceAccountName".into(), NOT_A_NAME.into()));
    }
    for (i, s) in spec.image_pull_secrets.iter().enumerate() {
        if !is_secret_name(s) {
            return Err((format!("imagePullSecrets[{i}]"), NOT_A_NAME.into()));
        }
    }
    if let Some(t) = &spec.tls
        && !is_secret_name(&t.secret_name)
    {
        return Err(("tls.secretName".into(), NOT_A_NAME.into()));
    }
    if let Some(a) = &spec.auth
        && !is_secret_name(&a.secret_name)
    {
        return Err(("auth.secretName".into(), NOT_A_NAME.into()));
    }
    Ok(())
}

fn check_auth(a: &ProxyAuth) -> Result<(), (String, String)> {
    if !is_secret_key(&a.key) {
        return Err((
            "key".into(),
            "not a Secret key (letters, digits, `-`, `_` and `.`, at most 253 characters, not starting with `..`)".into(),
        ));
    }
    let audiences = a.token_review.iter().flat_map(|t| t.audiences.iter());
    for (i, aud) in audiences.enumerate() {
        let ok = !aud.is_empty()
            && aud.len() <= 253
            && !aud
                .chars()
                .any(|c| c == ',' || c.is_whitespace() || c.is_control());
        if !ok {
            return Err((
                format!("tokenReview.audiences[{i}]"),
                "an audience is 1 to 253 characters without commas or spaces".into(),
            ));
        }
    }
    Ok(())
}

/// The name part of a label key, or a label value: at most 63 letters,
/// digits, `-`, `_`, `.`, starting and ending with a letter or digit.
fn is_label_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain.
fn is_qualified_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => is_secret_name(prefix) && is_label_name(name),
        None => is_label_name(k),
    }
}

fn in_own_domain(key: &str) -> bool {
    key.split_once('/').is_some_and(|(prefix, _)| {
        prefix == OWN_DOMAIN || prefix.ends_with(&format!(".{OWN_DOMAIN}"))
    })
}

/// Pod labels, annotations and the node selector: valid keys and values;
/// the selector labels and the operator's domain stay the operator's.
fn check_metadata(spec: &ProxySpec) -> Result<(), (String, String)> {
    let labels = |field: &str, m: &BTreeMap<String, String>| -> Result<(), (String, String)> {
        for (k, v) in m {
            if !is_qualified_key(k) {
                return Err((field.into(), format!("`{}` is not a label key", shown(k))));
            }
            if !v.is_empty() && !is_label_name(v) {
                return Err((
                    format!("{field}.{k}"),
                    "not a label value (at most 63 letters, digits, `-`, `_`, `.`)".into(),
                ));
            }
        }
        Ok(())
    };
    labels("nodeSelector", &spec.node_selector)?;
    labels("podLabels", &spec.pod_labels)?;
    for k in spec.pod_labels.keys() {
        if SELECTOR_KEYS.contains(&k.as_str()) || in_own_domain(k) {
            return Err((
                format!("podLabels.{k}"),
                "is one of the operator's selector labels (they tie the Pods to their Deployment, Service and policies) and cannot be set".into(),
            ));
        }
    }
    for k in spec.pod_annotations.keys() {
        if !is_qualified_key(k) {
            return Err((
                "podAnnotations".into(),
                format!("`{}` is not an annotation key", shown(k)),
            ));
        }
        if in_own_domain(k) {
            return Err((
                format!("podAnnotations.{k}"),
                format!("keys under `{OWN_DOMAIN}/` are the operator's"),
            ));
        }
        if SANDBOX_ANNOTATIONS.iter().any(|p| k.starts_with(p)) {
            return Err((
                format!("podAnnotations.{k}"),
                "AppArmor and seccomp annotations are refused: the proxy runs with the operator's restricted security context".into(),
            ));
        }
    }
    Ok(())
}

/// A key as shown in a message: at most 64 printable characters.
fn shown(k: &str) -> String {
    k.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Extra environment variables: valid, unique names, none of the proxy's
/// `HOS_` settings (the operator passes those as flags from the spec; an
/// environment variable would change a setting behind the CRD's bounds, or
/// conflict with the operator's flags and stop the proxy).
fn check_env(spec: &ProxySpec) -> Result<(), (String, String)> {
    let mut seen = BTreeSet::new();
    for (i, e) in spec.env.iter().enumerate() {
        let n = &e.name;
        let valid = !n.is_empty()
            && n.len() <= 253
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err((
                format!("env[{i}].name"),
                "not an environment variable name (letters, digits, `_`, `-`, `.`, not starting with a digit)".into(),
            ));
        }
        if n.to_ascii_uppercase().starts_with("HOS_") {
            return Err((
                format!("env[{i}].name"),
                format!(
                    "`{n}` is a setting of the proxy, which the operator passes from spec.proxy; set the matching field instead"
                ),
            ));
        }
        if !seen.insert(n.as_str()) {
            return Err((format!("env[{i}].name"), format!("`{n}` is set twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_syntax() {
        for ok in ["a", "team", "example.com/team", "a.b-c_d", "A1"] {
            assert!(is_qualified_key(ok), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "-a",
            "a-",
            "Ex.com/a",
            "a/b/c",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(!is_qualified_key(bad), "{bad}");
        }
        assert!(in_own_domain("hybrid-online-store.io/store"));
        assert!(in_own_domain("x.hybrid-online-store.io/y"));
        assert!(!in_own_domain("hybrid-online-store.io"));
        assert!(!in_own_domain("nothybrid-online-store.io/y"));
    }

    #[test]
    fn budgets() {
        let b = |min: Option<IntOrString>, max: Option<IntOrString>| ProxyDisruptionBudget {
            min_available: min,
            max_unavailable: max,
        };
        let int = IntOrString::Int;
        let pct = |s: &str| IntOrString::String(s.into());
        let fault = |x: ProxyDisruptionBudget, pods| check_budget(&x, pods).map(|f| f.1);
        assert_eq!(fault(b(None, None), 1), None);
        assert_eq!(fault(b(None, Some(int(1))), 1), None);
        assert_eq!(fault(b(None, Some(pct("1%"))), 1), None);
        assert_eq!(fault(b(Some(int(1)), None), 2), None);
        assert_eq!(fault(b(Some(pct("50%")), None), 3), None);
        assert_eq!(fault(b(Some(int(5)), None), 0), None);
        for (x, pods) in [
            (b(None, Some(int(0))), 3),
            (b(None, Some(pct("0%"))), 3),
            (b(Some(int(1)), None), 1),
            (b(Some(int(3)), None), 2),
            (b(Some(pct("100%")), None), 4),
            (b(Some(pct("50%")), None), 1),
        ] {
            let m = fault(x.clone(), pods).unwrap_or_else(|| panic!("{x:?} at {pods}"));
            assert!(m.contains("blocks node drains"), "{m}");
        }
        for x in [
            b(None, Some(int(-1))),
            b(None, Some(pct("101%"))),
            b(None, Some(pct("5"))),
            b(None, Some(pct("%"))),
            b(None, Some(pct("-5%"))),
            b(Some(pct("9999999999%")), None),
            b(Some(int(1)), Some(int(1))),
        ] {
            assert!(fault(x.clone(), 3).is_some(), "{x:?}");
        }
    }
}

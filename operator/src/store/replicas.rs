//! Which routing table each ready proxy Pod serves: the operator GETs
//! `/ready` on every ready Pod of the proxy Deployment (the client
//! listener, where `routing_digest` is answered with or without auth) and
//! compares its `routing_digest` with the digest of the table it last
//! wrote to the routing ConfigMap.

use std::time::Duration;

use api::crd::{ProxyReplica, ProxySpec};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::Error;
use crate::plan;

/// Entries kept in `status.proxy.replicas` (the counts cover every Pod).
pub const MAX_LISTED: usize = 50;
/// Pods asked at once.
const CONCURRENCY: usize = 8;
/// Bound on connecting to and reading one Pod's `/ready`.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Largest `/ready` body read (the proxy's is well under 1 KiB; a detailed
/// one lists backends).
const MAX_BODY: usize = 64 * 1024;

/// The proxy's Pods as last asked.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replicas {
    /// Ready Pods asked.
    pub ready: i32,
    /// Of those, the ones serving the expected digest.
    pub up_to_date: i32,
    /// The first [`MAX_LISTED`] by name.
    pub listed: Vec<ProxyReplica>,
}

/// Asks every ready proxy Pod of `store` (in `ns`) which routing table it
/// serves. The Pods are listed (label-selected, one namespace) rather than
/// watched: only stores with a proxy ask, at most every 15 s while a Pod is
/// behind, and a Pod watch over every namespace would cost the operator
/// memory for every Pod of the cluster's proxies between asks.
pub async fn read(
    ctx: &Context,
    ns: &str,
    store: &str,
    spec: &ProxySpec,
    expected: Option<&str>,
) -> Result<Replicas, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = plan::proxy_pod_selector(store);
    let mut ready: Vec<(String, String)> = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            Some((p.name_any(), ip))
        })
        .collect();
    ready.sort();
    let (client, scheme) = http_client(ctx, ns, spec).await?;
    let port = spec.port;
    let answers: Vec<ProxyReplica> = futures::stream::iter(ready)
        .map(|(pod, ip)| {
            let client = client.clone();
            async move {
                let url = format!("{scheme}://{}:{port}/ready", host(&ip));
                match digest_of(&client, &url).await {
                    Ok(d) => ProxyReplica {
                        pod,
                        routing_digest: Some(d),
                        error: None,
                    },
                    Err(e) => ProxyReplica {
                        pod,
                        routing_digest: None,
                        error: Some(e),
                    },
                }
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok(summarize(answers, expected))
}

/// Counts and truncates the answers (sorted by Pod name).
pub fn summarize(answers: Vec<ProxyReplica>, expected: Option<&str>) -> Replicas {
    let up_to_date = answers
        .iter()
        .filter(|r| expected.is_some() && r.routing_digest.as_deref() == expected)
        .count();
    Replicas {
        ready: i32::try_from(answers.len()).unwrap_or(i32::MAX),
        up_to_date: i32::try_from(up_to_date).unwrap_or(i32::MAX),
        listed: answers.into_iter().take(MAX_LISTED).collect(),
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// An IPv6 address in brackets, as a URL host.
fn host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// The client for the proxy's HTTP port and its scheme. With
/// `spec.proxy.tls` the Pods serve HTTPS: when the TLS Secret has a
/// `ca.crt` (cert-manager writes one), the chain must lead to it; the
/// host name is not checked, since the Pods are asked by IP, which a
/// certificate for the Service's name does not list. Without a `ca.crt`
/// the certificate is not verified: the read is of a non-secret digest,
/// no credential is sent, and a forged answer can only make the status
/// report a Pod as behind or current (it routes nothing).
async fn http_client(
    ctx: &Context,
    ns: &str,
    spec: &ProxySpec,
) -> Result<(reqwest::Client, &'static str), Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    let scheme = match &spec.tls {
        None => "http",
        Some(tls) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            let ca = secrets
                .get_opt(&tls.secret_name)
                .await?
                .and_then(|s| s.data?.remove("ca.crt"))
                .and_then(|pem| reqwest::Certificate::from_pem(&pem.0).ok());
            builder = match ca {
                Some(ca) => builder
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(ca)
                    .danger_accept_invalid_hostnames(true),
                None => builder.danger_accept_invalid_certs(true),
            };
            "https"
        }
    };
    let client = builder.build().map_err(|e| Error::Http(e.to_string()))?;
    Ok((client, scheme))
}

/// `routing_digest` of the JSON at `url` (a 503 answer counts too: a proxy
/// whose backends are down still says which table it serves).
async fn digest_of(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let mut resp = client.get(url).send().await.map_err(|e| brief(&e))?;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| brief(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("/ready answered more than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    parse_digest(&body)
}

/// The digest of a `/ready` body.
pub fn parse_digest(body: &[u8]) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "/ready did not answer JSON".to_string())?;
    match v.get("routing_digest").and_then(|d| d.as_str()) {
        Some(d) if !d.is_empty() && d.len() <= 64 => Ok(d.to_string()),
        _ => Err(match v.get("reason").and_then(|r| r.as_str()) {
            Some(r) => format!(
                "no routing digest: {}",
                r.chars().take(200).collect::<String>()
            ),
            None => "no routing digest in /ready".to_string(),
        }),
    }
}

fn brief(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer within 1 s"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("/ready: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(pod: &str, digest: Option<&str>) -> ProxyReplica {
        ProxyReplica {
            pod: pod.into(),
            routing_digest: digest.map(str::to_string),
            error: digest
                .is_none()
                .then(|| "/ready: cannot connect".to_string()),
        }
    }

    #[test]
    fn replicas_are_counted_against_the_expected_digest() {
        let answers = vec![
            replica("a", Some("aaaa")),
            replica("b", Some("bbbb")),
            replica("c", None),
            replica("d", Some("aaaa")),
        ];
        let r = summarize(answers.clone(), Some("aaaa"));
        assert_eq!((r.ready, r.up_to_date), (4, 2));
        assert_eq!(r.listed, answers);
        // Nothing published yet: nothing is up to date.
        assert_eq!(summarize(answers, None).up_to_date, 0);
        // Bounded list, full counts.
        let many: Vec<ProxyReplica> = (0..120)
            .map(|i| replica(&format!("p{i:03}"), Some("aaaa")))
            .collect();
        let r = summarize(many, Some("aaaa"));
        assert_eq!(
            (r.ready, r.up_to_date, r.listed.len()),
            (120, 120, MAX_LISTED)
        );
        assert_eq!(r.listed[49].pod, "p049");
    }

    #[test]
    fn ready_bodies() {
        assert_eq!(
            parse_digest(br#"{"ready":true,"routing_digest":"0123456789abcdef"}"#).unwrap(),
            "0123456789abcdef"
        );
        assert_eq!(
            parse_digest(br#"{"ready":false,"reason":"no routing configuration loaded yet"}"#)
                .unwrap_err(),
            "no routing digest: no routing configuration loaded yet"
        );
        assert_eq!(
            parse_digest(b"<html>").unwrap_err(),
            "/ready did not answer JSON"
        );
        assert_eq!(host("10.0.0.7"), "10.0.0.7");
        assert_eq!(host("fd00::7"), "[fd00::7]");
    }
}

//! TLS for PostgreSQL registries, as libpq reads it from the URL: Feast's
//! SQL registry connects through SQLAlchemy and psycopg (libpq), so the
//! `sslmode` and `sslrootcert` of a `registry.path` mean here what they
//! mean to Feast.
//!
//! | `sslmode`            | TLS                  | server certificate checked          |
//! |----------------------|----------------------|-------------------------------------|
//! | `disable`            | never                | -                                   |
//! | `allow`, `prefer` (default) | when the server offers it | no                       |
//! | `require`            | always               | no; with `sslrootcert`: its chain   |
//! | `verify-ca`          | always               | its chain to `sslrootcert`          |
//! | `verify-full`        | always               | its chain and the URL's host name   |
//!
//! `sslrootcert` is a PEM file (relative to the configuration's directory)
//! or `system` (the Mozilla roots). `verify-ca` and `verify-full` without
//! one are refused, as libpq refuses them without `~/.postgresql/root.crt`.
//! A CA given directly (the operator's `caSecretRef`) takes its place.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode, String> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    /// The mode tokio-postgres knows (it checks no certificate itself).
    fn driver_mode(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow | SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// Where the CA of `verify-ca` / `verify-full` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file (`sslrootcert=path`).
    File(String),
    /// `sslrootcert=system`: the Mozilla roots.
    System,
}

/// A PostgreSQL URL split into what the driver reads and the TLS settings
/// it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// The URL for tokio-postgres: `sslrootcert` removed, `sslmode` one it
    /// knows.
    pub url: String,
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
}

/// Reads `sslmode` and `sslrootcert` off `url`. Messages never hold the
/// URL (it has the password).
pub fn parse(url: &str) -> Result<PgTarget, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("the URL's {key} is not UTF-8"))
        };
        match key {
            "sslmode" => mode = SslMode::parse(&decoded()?)?,
            "sslrootcert" => {
                let v = decoded()?;
                root_cert = Some(match v.as_str() {
                    "" => return Err("sslrootcert is empty".into()),
                    "system" => RootCert::System,
                    _ => RootCert::File(v),
                });
            }
            // Client certificates are not sent by this reader: refused by
            // name rather than ignored (the server would refuse the login
            // with a less helpful message).
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(format!(
                    "the URL's {key} is not supported (client certificates are not sent to a PostgreSQL registry)"
                ));
            }
            _ => kept.push(pair),
        }
    }
    let sslmode = format!("sslmode={}", mode.driver_mode());
    kept.push(&sslmode);
    Ok(PgTarget {
        url: format!("{base}?{}", kept.join("&")),
        mode,
        root_cert,
    })
}

/// The rustls configuration for `mode`; `roots` are the CAs given by
/// `sslrootcert` or directly, if any.
pub fn client_config(mode: SslMode, roots: Option<RootCertStore>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let chain = |roots: RootCertStore| -> Result<Arc<WebPkiServerVerifier>, String> {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| format!("TLS: {e}"))
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => chain(roots)?,
        (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(Libpq {
            chain: Some(chain(roots)?),
            provider,
        }),
        (SslMode::VerifyCa, None) => {
            return Err(
                "sslmode=verify-ca needs sslrootcert (a CA file, or `system` for the public roots)"
                    .into(),
            );
        }
        (SslMode::VerifyFull, None) => {
            return Err("sslmode=verify-full needs sslrootcert (a CA file, or `system` for the public roots)".into());
        }
        (_, _) => Arc::new(Libpq {
            chain: None,
            provider,
        }),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The CAs of a PEM bundle.
pub fn pem_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert: {e}"))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("sslrootcert holds no usable PEM CA certificate".into());
    }
    Ok(roots)
}

/// The Mozilla roots (`sslrootcert=system`).
pub fn system_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// libpq's weaker checks: `chain` set (`verify-ca`, or `require` with a
/// CA): the chain must lead to the CA, whatever host name the certificate
/// has; `chain` unset (`prefer`, `require` without a CA): encrypted, the
/// server not authenticated. Either way the handshake's signatures are
/// checked against the certificate the server sent.
#[derive(Debug)]
struct Libpq {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Libpq {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // The chain is checked before the name: a name error means the
        // chain was accepted.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_are_read_and_the_rest_kept() {
        let t = parse("postgresql://u:p@h:5432/db").unwrap();
        assert_eq!(t.url, "postgresql://u:p@h:5432/db?sslmode=prefer");
        assert_eq!((t.mode, t.root_cert), (SslMode::Prefer, None));
        let t = parse(
            "postgresql://u:p@h/db?application_name=feast&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            t.url,
            "postgresql://u:p@h/db?application_name=feast&sslmode=require"
        );
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
        let t = parse("postgresql://h/db?sslmode=disable&sslrootcert=system").unwrap();
        assert_eq!(t.url, "postgresql://h/db?sslmode=disable");
        assert_eq!(t.root_cert, Some(RootCert::System));
    }

    #[test]
    fn bad_parameters_are_refused_by_name_without_the_url() {
        let e = parse("postgresql://u:secret@h/db?sslmode=verify").unwrap_err();
        assert!(e.contains("sslmode `verify`"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = parse("postgresql://u:secret@h/db?sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        assert!(parse("postgresql://h/db?sslrootcert=").is_err());
    }

    #[test]
    fn verifying_modes_need_a_ca() {
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let e = client_config(mode, None).unwrap_err();
            assert!(e.contains("needs sslrootcert"), "{e}");
        }
        for mode in [SslMode::Allow, SslMode::Prefer, SslMode::Require] {
            client_config(mode, None).unwrap();
        }
        let e = pem_roots(b"not a certificate").unwrap_err();
        assert!(e.contains("no usable PEM CA"), "{e}");
        client_config(SslMode::VerifyFull, Some(system_roots())).unwrap();
    }
}

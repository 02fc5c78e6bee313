//! Where the operator is and how to trust it: the URL, checked once at start, and a tonic
//! [`Endpoint`] built per connect (the CA bundle is read fresh, so a rotated bundle is
//! picked up by the next reconnect).

use std::time::Duration;

use http::Uri;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::{CaBundle, OperatorOptions};
use crate::error::describe;

/// For the TCP connect and, separately, the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings find an operator that vanished without closing the connection (a node
/// lost, a network partition), so the sidecar reconnects instead of waiting forever.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The operator's address and, for `https`, what its certificate must chain to.
#[derive(Clone, Debug)]
pub(super) struct OperatorAddr {
    uri: Uri,
    tls: Option<Trust>,
}

#[derive(Clone, Debug)]
struct Trust {
    ca: CaBundle,
    server_name: String,
}

// === impl OperatorAddr ===

impl OperatorAddr {
    /// Checks the URL and the CA bundle; errors say what to fix.
    pub(super) fn new(options: &OperatorOptions) -> Result<Self, String> {
        let url = &options.url;
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--operator {url}: not a URL: {e}"))?;
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            return Err(format!(
                "--operator {url}: no host (want https://host:port)"
            ));
        };
        let tls = match uri.scheme_str() {
            Some("https") => {
                let Some(ca) = options.ca.clone() else {
                    return Err(format!(
                        "--operator {url}: https needs --operator-ca (or --operator-ca-pem), the \
                         CA bundle that signed the operator's certificate"
                    ));
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let server_name = options.server_name.clone().unwrap_or(host.to_string());
                Some(Trust { ca, server_name })
            }
            Some("http") => {
                if options.ca.is_some() {
                    return Err(format!(
                        "--operator {url}: a CA bundle is given but the URL is http; use https"
                    ));
                }
                None
            }
            _ => {
                return Err(format!(
                    "--operator {url}: the scheme must be https (or http)"
                ));
            }
        };
        let addr = Self { uri, tls };
        addr.endpoint()?;
        Ok(addr)
    }

    pub(super) fn is_plaintext(&self) -> bool {
        self.tls.is_none()
    }

    /// A fresh endpoint: the CA bundle is read now.
    pub(super) fn endpoint(&self) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from(self.uri.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let Some(trust) = &self.tls else {
            return Ok(endpoint);
        };
        let (ca, pem) = match &trust.ca {
            CaBundle::File(path) => {
                let ca = format!("--operator-ca {}", path.display());
                let pem = std::fs::read(path).map_err(|e| format!("{ca}: cannot read: {e}"))?;
                (ca, pem)
            }
            CaBundle::Pem(pem) => ("--operator-ca-pem".to_string(), pem.as_bytes().to_vec()),
        };
        // tonic skips what it cannot parse; an empty trust store would only fail later,
        // at every handshake, with a less helpful message.
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{ca}: not a PEM certificate bundle: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{ca}: no certificate in it"));
        }
        // Only this bundle is trusted: no system roots.
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem))
            .domain_name(trust.server_name.clone())
            .timeout(CONNECT_TIMEOUT);
        endpoint
            .tls_config(config)
            .map_err(|e| format!("{ca}: {}", describe(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> OperatorOptions {
        OperatorOptions::new(url.to_string())
    }

    #[test]
    fn urls_are_checked_with_the_fix_named() {
        assert!(OperatorAddr::new(&options("http://127.0.0.1:8443")).is_ok());
        let err = OperatorAddr::new(&options("https://op:8443")).unwrap_err();
        assert!(err.contains("needs --operator-ca"), "{err}");
        let err = OperatorAddr::new(&options("ftp://op:8443")).unwrap_err();
        assert!(err.contains("scheme must be https"), "{err}");
        let err = OperatorAddr::new(&options("op:8443")).unwrap_err();
        assert!(err.contains("--operator op:8443"), "{err}");
    }

    #[test]
    fn the_ca_bundle_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let mut o = options("https://op:8443");
        o.ca = Some(CaBundle::File(ca.clone()));
        let err = OperatorAddr::new(&o).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        std::fs::write(&ca, "not pem").unwrap();
        let err = OperatorAddr::new(&o).unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
    }
}

//! The certificate being served, swappable under running servers.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::TlsError;

/// A serving certificate chain and key, PEM, and the CA clients should trust.
#[derive(Clone, PartialEq, Eq)]
pub struct Serving {
    pub cert_pem: String,
    pub key_pem: String,
    /// Needed to inject sidecars (they must trust it); unknown for some file setups.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Serving(***)")
    }
}

/// What servers present right now. Handshakes read it; rotation replaces it.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<Current>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    pem: Serving,
}

// A handshake that has not finished by then is a stuck or hostile client.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl CertStore {
    pub fn new(serving: Serving) -> Result<Arc<Self>, TlsError> {
        let current = Current::parse(serving)?;
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(current),
        }))
    }

    /// Serves `serving` from the next handshake on. False when it is what is served already.
    pub fn replace(&self, serving: Serving) -> Result<bool, TlsError> {
        if self.current.load().pem == serving {
            return Ok(false);
        }
        self.current.store(Arc::new(Current::parse(serving)?));
        Ok(true)
    }

    /// The CA sidecars must trust, PEM.
    pub fn ca_pem(&self) -> Option<String> {
        self.current.load().pem.ca_pem.clone()
    }

    /// The PEM being served.
    pub fn serving(&self) -> Serving {
        self.current.load().pem.clone()
    }

    /// A TLS acceptor presenting the current certificate, offering `alpn` protocols.
    pub fn acceptor(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl Current {
    fn parse(pem: Serving) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(pem.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(pem.key_pem.as_bytes())?;
        let key = CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())?;
        Ok(Self {
            key: Arc::new(key),
            pem,
        })
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().key.clone())
    }
}

/// TLS connections accepted on `listener`. Handshakes run concurrently (one slow client
/// delays nobody) and failed ones are dropped with a debug log; the stream ends when its
/// consumer drops it.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::generate;

    fn serving() -> Serving {
        generate(&["localhost".into()]).unwrap().serving
    }

    #[test]
    fn replace_reports_only_real_changes_and_refuses_garbage() {
        let first = serving();
        let store = CertStore::new(first.clone()).unwrap();
        assert!(!store.replace(first.clone()).unwrap());
        let second = serving();
        assert!(store.replace(second.clone()).unwrap());
        assert_eq!(store.ca_pem(), second.ca_pem);

        let mut mismatched = serving();
        mismatched.key_pem = first.key_pem.clone();
        assert!(store.replace(mismatched).is_err());
        let mut empty = serving();
        empty.cert_pem = String::new();
        assert!(matches!(store.replace(empty), Err(TlsError::NoCertificate)));
        // A refused replacement leaves the last good certificate serving.
        assert_eq!(store.serving(), second);
    }
}

//! The operator's certificates: one serving certificate for the discovery server and the
//! admission webhook, and the CA that sidecars and the API server trust.
//!
//! Three sources: generated into a directory (laptops, tests), files that cert-manager or
//! the user keeps current ([`files`], re-read when they change), or a Secret the operator
//! manages and rotates itself ([`secret`]). Whatever the source, both servers take the
//! current certificate from a [`CertStore`] at each handshake, so rotation needs no
//! restart.

pub mod authority;
pub mod files;
pub mod secret;
pub mod store;

use std::path::{Path, PathBuf};

pub use authority::{Authority, Issued, Lifetimes};
pub use store::{CertStore, Serving};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("no certificate in the PEM")]
    NoCertificate,
    #[error("bad PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("unusable certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads a certificate chain, its key and (optionally) the CA from files.
pub fn load(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<Serving, TlsError> {
    Ok(Serving {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
        ca_pem: ca.map(read).transpose()?,
    })
}

/// Reuses `dir/{ca.crt,tls.crt,tls.key}` when all three exist; otherwise creates a CA
/// and a certificate for `sans` (DNS names or IPs) there.
pub fn generate_or_reuse(dir: &Path, sans: &[String]) -> Result<Serving, TlsError> {
    let (ca, cert, key) = (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"));
    if ca.exists() && cert.exists() && key.exists() {
        return load(&cert, &key, Some(&ca));
    }
    let issued = Issued::new(sans, &Lifetimes::default(), std::time::SystemTime::now())?;
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    write(&ca, issued.authority.cert_pem.as_bytes(), 0o644)?;
    write(&key, issued.serving.key_pem.as_bytes(), 0o600)?;
    write(&cert, issued.serving.cert_pem.as_bytes(), 0o644)?;
    Ok(issued.serving)
}

/// A fresh CA and a serving certificate for `sans`, for tests and one-off tools.
pub fn generate(sans: &[String]) -> Result<Issued, rcgen::Error> {
    Issued::new(sans, &Lifetimes::default(), std::time::SystemTime::now())
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| io(path, source))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io(path, source))?;
    file.write_all(bytes).map_err(|source| io(path, source))
}

fn io(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

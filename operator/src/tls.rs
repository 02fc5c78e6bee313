//! The discovery server's certificate: given as files, or generated and kept in a
//! directory so a restart reuses it (sidecars keep trusting the same CA).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A serving certificate chain and its key, PEM.
#[derive(Clone)]
pub struct ServingCertPem {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl std::fmt::Debug for ServingCertPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServingCertPem(***)")
    }
}

/// Reads a certificate and key from files.
pub fn load(cert: &Path, key: &Path) -> Result<ServingCertPem, TlsError> {
    Ok(ServingCertPem {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    })
}

/// Reuses `dir/{ca.crt,tls.crt,tls.key}` when all three exist; otherwise creates a CA
/// and a certificate for `sans` (DNS names or IPs) there.
pub fn generate_or_reuse(dir: &Path, sans: &[String]) -> Result<ServingCertPem, TlsError> {
    let (ca, cert, key) = (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"));
    if ca.exists() && cert.exists() && key.exists() {
        return load(&cert, &key);
    }
    let generated = generate(sans)?;
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    write(&ca, generated.ca_pem.as_bytes(), 0o644)?;
    write(&key, generated.key_pem.as_bytes(), 0o600)?;
    write(&cert, generated.cert_pem.as_bytes(), 0o644)?;
    Ok(ServingCertPem {
        cert_pem: generated.cert_pem.into_bytes(),
        key_pem: generated.key_pem.into_bytes(),
    })
}

/// A fresh CA and a serving certificate it signed.
pub struct Generated {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn generate(sans: &[String]) -> Result<Generated, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "modelroute CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "modelroute-operator");
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| io(path, source))
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

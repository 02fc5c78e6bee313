//! The operator's own CA: issuing, inspecting and deciding when to renew.
//!
//! Certificate times are wall-clock (`SystemTime`): they are compared with the peers'
//! clocks, not with a monotonic one.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::Serving;

/// How long what the operator issues is valid. Anything is renewed once two thirds of
/// its life have passed, so a certificate never comes near expiry while the operator runs.
#[derive(Clone, Debug)]
pub struct Lifetimes {
    pub ca: Duration,
    pub serving: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        const DAY: u64 = 24 * 60 * 60;
        Self {
            ca: Duration::from_secs(10 * 365 * DAY),
            serving: Duration::from_secs(365 * DAY),
        }
    }
}

/// A CA certificate and its key, PEM.
#[derive(Clone)]
pub struct Authority {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority(***)")
    }
}

/// A CA and the serving certificate it signed.
#[derive(Clone, Debug)]
pub struct Issued {
    pub authority: Authority,
    pub serving: Serving,
}

/// What to do with certificates found in storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    Keep,
    /// A new serving certificate from the same CA (sidecars keep trusting it).
    Serving,
    /// A new CA and serving certificate.
    Everything,
}

// Clients accept certificates a little before their start: clocks differ.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

impl Issued {
    /// A fresh CA and a serving certificate for `sans`.
    pub fn new(
        sans: &[String],
        lifetimes: &Lifetimes,
        now: SystemTime,
    ) -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "modelroute CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut ca, now, lifetimes.ca);
        let ca_cert = ca.self_signed(&ca_key)?;
        let authority = Authority {
            cert_pem: ca_cert.pem(),
            key_pem: ca_key.serialize_pem(),
        };
        Self::renew(authority, sans, lifetimes, now)
    }

    /// A new serving certificate for `sans` from `authority`.
    pub fn renew(
        authority: Authority,
        sans: &[String],
        lifetimes: &Lifetimes,
        now: SystemTime,
    ) -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::from_pem(&authority.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&authority.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "modelroute-operator");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, now, lifetimes.serving);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Self {
            serving: Serving {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                ca_pem: Some(authority.cert_pem.clone()),
            },
            authority,
        })
    }

    /// Decides whether stored certificates can go on serving `sans` at `now`: the CA and
    /// the serving certificate each must be in the first two thirds of their life, the
    /// serving certificate signed by this CA and naming every SAN.
    pub fn renewal(&self, sans: &[String], now: SystemTime) -> Renewal {
        let Some(ca_der) = der(&self.authority.cert_pem) else {
            return Renewal::Everything;
        };
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(&ca_der) else {
            return Renewal::Everything;
        };
        if KeyPair::from_pem(&self.authority.key_pem).is_err() || due(&ca, now) {
            return Renewal::Everything;
        }
        let Some(leaf_der) = der(&self.serving.cert_pem) else {
            return Renewal::Serving;
        };
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(&leaf_der) else {
            return Renewal::Serving;
        };
        let signed_by_ca = leaf.verify_signature(Some(ca.public_key())).is_ok();
        if !signed_by_ca || due(&leaf, now) || !names_all(&leaf, sans) {
            return Renewal::Serving;
        }
        Renewal::Keep
    }

    /// When [`Issued::renewal`] will stop saying `Keep` (if nothing else changes).
    pub fn renew_at(&self) -> Option<SystemTime> {
        [&self.authority.cert_pem, &self.serving.cert_pem]
            .into_iter()
            .filter_map(|pem| {
                let der = der(pem)?;
                let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
                Some(two_thirds(&cert))
            })
            .min()
    }
}

fn validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) {
    let start = now.checked_sub(BACKDATE).unwrap_or(now);
    params.not_before = start.into();
    params.not_after = (now + lifetime).into();
}

fn der(pem: &str) -> Option<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    Some(pem.contents)
}

fn two_thirds(cert: &X509Certificate<'_>) -> SystemTime {
    let start = cert.validity().not_before.timestamp();
    let end = cert.validity().not_after.timestamp();
    let at = start.saturating_add(end.saturating_sub(start) * 2 / 3);
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0))
}

fn due(cert: &X509Certificate<'_>, now: SystemTime) -> bool {
    now >= two_thirds(cert)
}

fn names_all(cert: &X509Certificate<'_>, sans: &[String]) -> bool {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return sans.is_empty();
    };
    let names = &ext.value.general_names;
    sans.iter().all(|want| {
        let ip: Option<std::net::IpAddr> = want.parse().ok();
        names.iter().any(|name| match (name, ip) {
            (GeneralName::DNSName(dns), None) => dns.eq_ignore_ascii_case(want),
            (GeneralName::IPAddress(bytes), Some(ip)) => match ip {
                std::net::IpAddr::V4(v4) => *bytes == v4.octets(),
                std::net::IpAddr::V6(v6) => *bytes == v6.octets(),
            },
            _ => false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn sans() -> Vec<String> {
        vec!["modelroute-webhook.system.svc".into(), "127.0.0.1".into()]
    }

    fn short() -> Lifetimes {
        Lifetimes {
            ca: 30 * DAY,
            serving: 3 * DAY,
        }
    }

    #[test]
    fn fresh_certificates_are_kept_until_two_thirds_of_their_life() {
        let now = SystemTime::now();
        let issued = Issued::new(&sans(), &short(), now).unwrap();
        assert_eq!(issued.renewal(&sans(), now), Renewal::Keep);
        assert_eq!(issued.renewal(&sans(), now + DAY), Renewal::Keep);
        // Serving: 3 days from an hour before `now`; two thirds = 2 days minus 20 min.
        assert_eq!(issued.renewal(&sans(), now + 2 * DAY), Renewal::Serving);
        assert_eq!(issued.renewal(&sans(), now + 25 * DAY), Renewal::Everything);
        let at = issued.renew_at().unwrap();
        assert!(at > now + DAY && at < now + 2 * DAY, "{at:?}");
    }

    #[test]
    fn renewed_serving_certificate_keeps_the_ca() {
        let now = SystemTime::now();
        let issued = Issued::new(&sans(), &short(), now).unwrap();
        let later = now + 2 * DAY;
        let renewed = Issued::renew(issued.authority.clone(), &sans(), &short(), later).unwrap();
        assert_eq!(renewed.authority.cert_pem, issued.authority.cert_pem);
        assert_ne!(renewed.serving.cert_pem, issued.serving.cert_pem);
        assert_eq!(renewed.renewal(&sans(), later), Renewal::Keep);
    }

    #[test]
    fn a_missing_name_or_a_foreign_signer_means_a_new_serving_certificate() {
        let now = SystemTime::now();
        let issued = Issued::new(&sans(), &short(), now).unwrap();
        let mut more = sans();
        more.push("modelroute-operator.system.svc".into());
        assert_eq!(issued.renewal(&more, now), Renewal::Serving);

        let other = Issued::new(&sans(), &short(), now).unwrap();
        let mixed = Issued {
            authority: issued.authority.clone(),
            serving: other.serving,
        };
        assert_eq!(mixed.renewal(&sans(), now), Renewal::Serving);
    }

    #[test]
    fn garbage_in_storage_means_everything_new() {
        let now = SystemTime::now();
        let mut issued = Issued::new(&sans(), &short(), now).unwrap();
        issued.authority.key_pem = "not a key".into();
        assert_eq!(issued.renewal(&sans(), now), Renewal::Everything);
        issued.authority.cert_pem = String::new();
        assert_eq!(issued.renewal(&sans(), now), Renewal::Everything);
    }
}

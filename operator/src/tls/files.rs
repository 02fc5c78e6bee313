//! Certificates from files that someone else renews (cert-manager, a mounted Secret):
//! re-read periodically and served once they change and parse.
//!
//! Polling, not inotify: Secret volumes are updated by swapping a symlink, which file
//! watches see unreliably, and a minute of delay is nothing next to a renewal that
//! happens weeks before expiry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CertStore, load};

/// Where the certificate files are.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
}

pub async fn run(
    files: CertFiles,
    store: Arc<CertStore>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let loaded = load(&files.cert, &files.key, files.ca.as_deref())
            .and_then(|serving| store.replace(serving));
        match loaded {
            Ok(true) => {
                tracing::info!(cert = %files.cert.display(), "serving the renewed certificate")
            }
            Ok(false) => {}
            // Mid-update (cert written, key not yet) or broken: keep the last good one.
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the certificate; keeping the current one")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::generate;

    #[tokio::test(start_paused = true)]
    async fn a_renewed_certificate_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            ca: Some(dir.path().join("ca.crt")),
        };
        let write = |issued: &crate::tls::Issued| {
            std::fs::write(&files.cert, &issued.serving.cert_pem).unwrap();
            std::fs::write(&files.key, &issued.serving.key_pem).unwrap();
            std::fs::write(files.ca.as_ref().unwrap(), &issued.authority.cert_pem).unwrap();
        };
        let first = generate(&["localhost".into()]).unwrap();
        write(&first);
        let store = CertStore::new(first.serving.clone()).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            files.clone(),
            store.clone(),
            Duration::from_secs(60),
            stop.clone(),
        ));

        let second = generate(&["localhost".into()]).unwrap();
        write(&second);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(store.serving(), second.serving);

        std::fs::write(&files.key, "garbage").unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            store.serving(),
            second.serving,
            "the last good certificate stays"
        );
        stop.cancel();
        task.await.unwrap();
    }
}

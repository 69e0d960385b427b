//! TLS for the gRPC port: a certificate given by the operator (`--tls-cert/--tls-key`) or a self-signed one made
//! into the data dir on first start (`--tls`), whose SHA-256 fingerprint clients pin (`--tls-pin`, or pinned on
//! first contact like the node id).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// File names of the self-signed certificate and its key in the data dir.
pub const CERT_FILE: &str = "tls.crt";
/// See [`CERT_FILE`].
pub const KEY_FILE: &str = "tls.key";

/// Where the node's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP/2 (loopback only, unless `--insecure`).
    Off,
    /// A self-signed certificate kept in the data dir (made on first start).
    SelfSigned,
    /// PEM files given by the operator.
    Files {
        /// Certificate chain (PEM).
        cert: PathBuf,
        /// Private key (PEM).
        key: PathBuf,
    },
}

/// Why the certificate could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// I/O on a certificate or key file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate could not be generated or parsed.
    #[error("certificate: {0}")]
    Cert(String),
}

/// A loaded certificate: what the server presents and what clients pin.
pub struct LoadedCert {
    /// Certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM.
    pub key_pem: Vec<u8>,
    /// SHA-256 of the end-entity certificate's DER bytes, hex: the value clients pin.
    pub fingerprint: String,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// SHA-256 of a DER certificate, hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn first_cert_der(pem: &[u8]) -> Result<Vec<u8>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| TlsError::Cert("no certificate in the PEM file".into()))?
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    Ok(der.as_ref().to_vec())
}

/// Loads the certificate for `mode`, making the self-signed one if it is missing. `None` when TLS is off.
pub fn load(mode: &TlsMode, data_dir: &Path) -> Result<Option<LoadedCert>, TlsError> {
    let (cert_pem, key_pem) = match mode {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => (read(cert)?, read(key)?),
        TlsMode::SelfSigned => {
            let (cp, kp) = (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE));
            if !(cp.exists() && kp.exists()) {
                let ck = rcgen::generate_simple_self_signed(vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                    "::1".to_owned(),
                ])
                .map_err(|e| TlsError::Cert(e.to_string()))?;
                std::fs::create_dir_all(data_dir).map_err(|source| TlsError::Io {
                    path: data_dir.display().to_string(),
                    source,
                })?;
                let io = |p: &Path| {
                    let p = p.display().to_string();
                    move |source| TlsError::Io { path: p, source }
                };
                crate::identity::write_private(&kp, ck.signing_key.serialize_pem().as_bytes())
                    .map_err(io(&kp))?;
                crate::identity::write_private(&cp, ck.cert.pem().as_bytes()).map_err(io(&cp))?;
                tracing::info!(path = %cp.display(), "made a self-signed TLS certificate");
            }
            (read(&cp)?, read(&kp)?)
        }
    };
    let fingerprint = fingerprint(&first_cert_der(&cert_pem)?);
    Ok(Some(LoadedCert {
        cert_pem,
        key_pem,
        fingerprint,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_and_keeps_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let a = load(&TlsMode::SelfSigned, dir.path()).unwrap().unwrap();
        let b = load(&TlsMode::SelfSigned, dir.path()).unwrap().unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        assert!(load(&TlsMode::Off, dir.path()).unwrap().is_none());
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        assert!(load(
            &TlsMode::Files {
                cert: bad.clone(),
                key: bad
            },
            dir.path()
        )
        .is_err());
    }
}

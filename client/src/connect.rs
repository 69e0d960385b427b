//! Connecting to a node: the URL, the capability token sent with every call, and TLS with a pinned
//! certificate (the node's self-signed certificate, or any certificate, named by its SHA-256 fingerprint).

use std::sync::{Arc, Mutex};

use cairn_proto::v1 as pb;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::Error;

/// Reset HTTP/2 streams the client remembers for a second (h2's default is 50): a message the node sends on a
/// stream the client already dropped is then ignored instead of counted towards h2's limit of 1,024 protocol
/// errors per connection.
const RESET_STREAMS_REMEMBERED: usize = 10_000;

/// The generated gRPC client with the token interceptor: what every SDK call goes through.
pub type Raw = pb::cairn_client::CairnClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call (nothing when there is no token).
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// An interceptor sending `token`; fails if the token is not printable ASCII.
    pub fn new(token: Option<&str>) -> Result<Bearer, Error> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Bearer(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| Error::InvalidToken("not printable ASCII".into())),
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Accepts the server certificate whose SHA-256 matches the pin (or, with no pin, any certificate, recording
/// its fingerprint for the caller to pin on first contact). Handshake signatures are still checked.
#[derive(Debug)]
struct PinnedCert {
    pin: Option<[u8; 32]>,
    seen: Arc<Mutex<Option<[u8; 32]>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(got);
        }
        match self.pin {
            Some(p) if p != got => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// How to reach a node: built by [`crate::CairnClient::builder`], finished with [`Connect::connect`].
#[derive(Debug, Clone)]
pub struct Connect {
    url: String,
    token: Option<String>,
    pin: Option<[u8; 32]>,
    first_use: bool,
}

/// What a connection learned: the certificate fingerprint the node presented (TLS only).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// SHA-256 of the node's certificate, hex.
    pub tls_fingerprint: Option<String>,
}

impl Connect {
    pub(crate) fn new(url: impl Into<String>) -> Connect {
        Connect {
            url: url.into(),
            token: None,
            pin: None,
            first_use: false,
        }
    }

    /// The capability token sent with every call.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the token if there is one.
    pub fn maybe_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// For `https://` URLs: the SHA-256 fingerprint (hex) the node's certificate must have.
    pub fn tls_pin(mut self, fingerprint_hex: &str) -> Result<Self, Error> {
        let mut fp = [0u8; 32];
        hex::decode_to_slice(fingerprint_hex.trim().replace(':', ""), &mut fp).map_err(|_| {
            Error::InvalidUrl {
                url: self.url.clone(),
                reason: "TLS pin: expected a SHA-256 fingerprint of 64 hex digits".into(),
            }
        })?;
        self.pin = Some(fp);
        Ok(self)
    }

    /// For `https://` URLs without a pin: accept the certificate the node presents and report its fingerprint
    /// (in [`Seen`]) so the caller can pin it from then on. Without this or a pin, `https://` is refused.
    pub fn trust_on_first_use(mut self) -> Self {
        self.first_use = true;
        self
    }

    /// Connects.
    pub async fn connect(self) -> Result<crate::CairnClient, Error> {
        Ok(self.connect_seen().await?.0)
    }

    /// Connects, and says which certificate the node presented.
    pub async fn connect_seen(self) -> Result<(crate::CairnClient, Seen), Error> {
        let url = self.url.clone();
        let bad = |reason: String| Error::InvalidUrl {
            url: url.clone(),
            reason,
        };
        // A dropped WatchRoots stream is reset; the node's next message for it can arrive after that. h2 remembers
        // only 50 reset streams by default and counts a message for a forgotten one as a protocol error; after
        // 1,024 of those it closes the connection and the call waiting on it fails with CANCELLED (seen once per
        // 10,000 opened and dropped streams under load). Remembering more makes such late messages harmless.
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| bad(e.to_string()))?
            .http2_max_concurrent_reset_streams(RESET_STREAMS_REMEMBERED);
        let seen = Arc::new(Mutex::new(None));
        if url.starts_with("https://") {
            if self.pin.is_none() && !self.first_use {
                return Err(bad(
                    "https needs the node's certificate fingerprint (--tls-pin / CAIRN_TLS_PIN)"
                        .into(),
                ));
            }
            let verifier = PinnedCert {
                pin: self.pin,
                seen: seen.clone(),
                algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
            };
            endpoint = endpoint
                .tls_config_with_verifier(ClientTlsConfig::new(), Arc::new(verifier))
                .map_err(|e| bad(e.to_string()))?;
        }
        let channel = endpoint.connect().await.map_err(|e| Error::Connect {
            url: url.clone(),
            source: e,
        })?;
        let bearer = Bearer::new(self.token.as_deref())?;
        let fp = seen.lock().ok().and_then(|s| *s).map(hex::encode);
        Ok((
            crate::CairnClient::from_parts(channel, bearer),
            Seen {
                tls_fingerprint: fp,
            },
        ))
    }
}

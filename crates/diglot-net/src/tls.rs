//! TLS for the `wss`, `mqtts` and `stomps` listeners (rustls, with the aws-lc-rs provider).
//!
//! Certificates and keys are PEM files named in `broker.toml`. A listener's server config sits
//! behind a lock so that SIGHUP can load new files without dropping connections: a handshake
//! uses the config current at accept time, and a reload that fails keeps the old one (logged).
//! With `client_ca_file`, client certificates are verified against that CA (required when
//! `require_client_cert`, optional otherwise).

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

/// Where a TLS listener's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The listener's name, for errors (`listeners.wss`).
    pub name: String,
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to; `None`: no client certs.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs `client_ca_file`).
    pub require_client_cert: bool,
    /// A verified client certificate's subject CN is the connection's username: the client is
    /// authenticated as that user without a password.
    pub cert_cn_as_username: bool,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {what}")]
pub struct TlsError {
    name: String,
    what: String,
}

fn err(settings: &TlsSettings, what: impl Into<String>) -> TlsError {
    TlsError { name: settings.name.clone(), what: what.into() }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds a server config from the files.
pub fn load(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |key: &str, path: &PathBuf| {
        std::fs::read(path).map_err(|e| err(settings, format!("cannot read {key} {}: {e}", path.display())))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read("cert_file", &settings.cert_file)?)
        .collect::<Result<_, _>>()
        .map_err(|e| err(settings, format!("cert_file {}: {e}", settings.cert_file.display())))?;
    if certs.is_empty() {
        return Err(err(settings, format!("cert_file {} holds no certificate", settings.cert_file.display())));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("key_file", &settings.key_file)?)
        .map_err(|e| err(settings, format!("key_file {}: {e}", settings.key_file.display())))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(settings, e.to_string()))?;
    let builder = match &settings.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read("client_ca_file", ca)?) {
                let c = c.map_err(|e| err(settings, format!("client_ca_file {}: {e}", ca.display())))?;
                roots.add(c).map_err(|e| err(settings, format!("client_ca_file {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if settings.require_client_cert { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| err(settings, e.to_string()))?)
        }
        None if settings.require_client_cert => {
            return Err(err(settings, "require_client_cert needs client_ca_file"));
        }
        None if settings.cert_cn_as_username => {
            return Err(err(settings, "cert_cn_as_username needs client_ca_file"));
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| err(settings, format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener's current TLS config, replaceable at run time.
pub(crate) struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Loads the files.
    pub(crate) fn new(settings: TlsSettings) -> Result<Tls, TlsError> {
        let config = load(&settings)?;
        Ok(Tls { settings, current: RwLock::new(config) })
    }

    /// Whether a client certificate's CN is the username.
    pub(crate) fn cert_cn_as_username(&self) -> bool {
        self.settings.cert_cn_as_username
    }

    /// An acceptor with the current config.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Whether the files load now (for a reload that must be all or nothing).
    pub(crate) fn check(&self) -> Result<(), TlsError> {
        load(&self.settings).map(|_| ())
    }

    /// Loads the files again; on failure the current config stays.
    pub(crate) fn reload(&self) {
        match load(&self.settings) {
            Ok(config) => {
                *self.current.write() = config;
                tracing::info!(listener = %self.settings.name, "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the current certificate"),
        }
    }
}

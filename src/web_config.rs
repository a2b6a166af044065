//! `--web.config.file`: TLS and basic auth in the format of the Prometheus exporter-toolkit,
//! so the file a user has for node_exporter works here too.
//!
//! Supported: `tls_server_config` (`cert_file`, `key_file`, `client_auth_type` of
//! `NoClientCert`, `VerifyClientCertIfGiven` or `RequireAndVerifyClientCert`,
//! `client_ca_file`, `min_version`, `max_version`), `http_server_config.headers`, and
//! `basic_auth_users` (bcrypt hashes). `cipher_suites`, `curve_preferences`,
//! `prefer_server_cipher_suites` and `http_server_config.http2` are accepted and ignored:
//! rustls chooses among safe suites itself, and the exporter speaks HTTP/1.1. Relative paths
//! are read from the folder of the config file, as the exporter-toolkit does.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::{
    self, RootCertStore, ServerConfig, crypto::ring, pki_types::CertificateDer,
    pki_types::PrivateKeyDer, pki_types::pem::PemObject, server::WebPkiClientVerifier,
};

/// The loaded web configuration.
#[derive(Default)]
pub struct WebConfig {
    /// TLS settings, if the read side is served over TLS.
    pub tls: Option<Arc<ServerConfig>>,
    /// Users and their bcrypt hashes; empty means no basic auth.
    pub users: BTreeMap<String, String>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Digests of credentials that passed bcrypt, so a scraper pays bcrypt once, not on
    /// every scrape. Cleared when full; replaced with the config on reload.
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// Most remembered credentials.
const MAX_VERIFIED: usize = 256;

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers.len())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    curve_preferences: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl WebConfig {
    /// Reads and checks a web config file. Errors name the file and the setting.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let fail = |reason: String| format!("web config file {}: {reason}", path.display());
        let text = crate::config_file::read_text(path).map_err(fail)?;
        let file: File = if text.trim().is_empty() {
            File {
                tls_server_config: None,
                http_server_config: None,
                basic_auth_users: BTreeMap::new(),
            }
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| fail(e.to_string()))?
        };
        let folder = path.parent().unwrap_or(Path::new("."));

        let tls = match file.tls_server_config {
            Some(tls) => Some(Arc::new(tls_config(&tls, folder).map_err(fail)?)),
            None => None,
        };
        for (user, hash) in &file.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(fail(format!(
                    "basic_auth_users: {user:?} has no valid bcrypt hash"
                )));
            }
        }
        let headers = match file.http_server_config {
            Some(http) => parse_headers(&http.headers).map_err(fail)?,
            None => Vec::new(),
        };
        Ok(WebConfig {
            tls,
            users: file.basic_auth_users,
            headers,
            verified: Mutex::default(),
        })
    }

    /// True when these credentials passed [`WebConfig::check_password`] before. Fast.
    pub fn already_verified(&self, user: &str, password: &str) -> bool {
        self.verified.lock().contains(&self.digest(user, password))
    }

    /// Checks a user name and password against `basic_auth_users`. Slow on purpose (bcrypt):
    /// call it off the async threads, and not many at once.
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        let ok = match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                // Spend the same time for unknown users, so they cannot be told apart.
                if let Some(hash) = self.users.values().next() {
                    let _ = bcrypt::verify(password, hash);
                }
                false
            }
        };
        if ok {
            let mut verified = self.verified.lock();
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
            verified.insert(self.digest(user, password));
        }
        ok
    }

    /// Digest of credentials together with the user's current hash.
    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let hash = self.users.get(user).map_or("", String::as_str);
        let mut hasher = Sha256::new();
        for part in [user, password, hash] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize().into()
    }
}

fn tls_config(tls: &TlsFile, folder: &Path) -> Result<ServerConfig, String> {
    let read = |p: &Path| {
        let full = folder.join(p);
        crate::config_file::read(&full).map_err(|e| format!("{}: {e}", full.display()))
    };
    let certs = CertificateDer::pem_slice_iter(&read(&tls.cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cert_file: {e}"))?;
    if certs.is_empty() {
        return Err("cert_file: no certificate found".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&tls.key_file)?)
        .map_err(|e| format!("key_file: {e}"))?;
    if !tls.client_allowed_sans.is_empty() {
        return Err("tls_server_config.client_allowed_sans is not supported".into());
    }

    let versions = versions(tls.min_version.as_deref(), tls.max_version.as_deref())?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;

    let auth = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
            let ca = tls
                .client_ca_file
                .as_ref()
                .ok_or_else(|| format!("client_auth_type {auth} needs client_ca_file"))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
                let cert = cert.map_err(|e| format!("client_ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        other => {
            return Err(format!(
                "client_auth_type {other:?} is not supported (use NoClientCert, \
                 VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            ));
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let rank = |name: Option<&str>, default: u8| match name {
        None => Ok(default),
        Some("TLS10" | "TLS11" | "TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(format!(
            "unknown TLS version {other:?} (use TLS12 or TLS13)"
        )),
    };
    let (min, max) = (rank(min, 12)?, rank(max, 13)?);
    if min > max {
        return Err("min_version is above max_version".into());
    }
    let mut versions = Vec::new();
    if min <= 12 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        versions.push(&rustls::version::TLS13);
    }
    Ok(versions)
}

fn parse_headers(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("http_server_config.headers: bad header name {name:?}"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("http_server_config.headers: bad value for {name}"))?;
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn basic_auth_users_are_checked_with_bcrypt() {
        let dir = tempfile::tempdir().expect("dir");
        let hash = bcrypt::hash("pass", 4).expect("hash");
        let path = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
        );
        let config = WebConfig::load(&path).expect("valid");
        assert!(!config.already_verified("alice", "pass"));
        assert!(config.check_password("alice", "pass"));
        assert!(config.already_verified("alice", "pass"));
        assert!(!config.already_verified("alice", "pas"));
        assert!(!config.check_password("alice", "wrong"));
        assert!(!config.check_password("bob", "pass"));
        assert!(config.tls.is_none());
    }

    #[test]
    fn tls_files_are_read_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("dir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        write(dir.path(), "cert.pem", &cert.cert.pem());
        write(dir.path(), "key.pem", &cert.signing_key.serialize_pem());
        let path = write(
            dir.path(),
            "web.yml",
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  \
             min_version: TLS13\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
        );
        let config = WebConfig::load(&path).expect("valid");
        assert!(config.tls.is_some());
    }

    #[test]
    fn mistakes_are_reported_with_the_file_name() {
        let dir = tempfile::tempdir().expect("dir");
        for (text, expected) in [
            (
                "basic_auth_users:\n  alice: plain\n",
                "no valid bcrypt hash",
            ),
            (
                "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n",
                "missing.pem",
            ),
            ("tls_sever_config: {}\n", "unknown field"),
            (
                "http_server_config:\n  headers:\n    'bad name': x\n",
                "bad header name",
            ),
        ] {
            let path = write(dir.path(), "web.yml", text);
            let err = WebConfig::load(&path).expect_err(text);
            assert!(err.contains("web.yml") && err.contains(expected), "{err}");
        }
    }

    #[test]
    fn tls_versions_follow_min_and_max() {
        assert_eq!(versions(None, None).map(|v| v.len()), Ok(2));
        assert_eq!(versions(Some("TLS13"), None).map(|v| v.len()), Ok(1));
        assert!(versions(Some("TLS13"), Some("TLS12")).is_err());
        assert!(versions(Some("SSL3"), None).is_err());
    }
}

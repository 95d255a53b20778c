//! The way to the ACME server: one HTTPS client that instant-acme sends every request
//! through.
//!
//! [`AcmeDirectory`] is the small trait over the server that the rest of the module
//! uses: where the directory is and how to reach it. [`HttpsDirectory`] is the real one:
//! rustls with the system's roots plus an optional extra CA file (a private ACME
//! server; Pebble in the tests), a per-request timeout, a count of requests sent, and
//! the last `Retry-After` a server sent with an error (instant-acme's problem documents
//! do not carry headers, and a rate limit needs it). It never logs bodies: they hold
//! signed requests and, for a certificate download, nothing secret, but still nothing an
//! operator needs on stderr.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use super::AcmeError;

/// The ACME server as the rest of the module sees it.
pub trait AcmeDirectory: Send + Sync {
    /// The directory URL.
    fn url(&self) -> &str;
    /// A client for instant-acme's account builder.
    fn http_client(&self) -> Box<dyn HttpClient>;
    /// Requests sent so far through [`Self::http_client`].
    fn requests(&self) -> usize;
    /// The `Retry-After` of the last error response (429/503), if any.
    fn last_retry_after(&self) -> Option<SystemTime>;
    /// The HTTP status of the last response (instant-acme does not always keep it).
    fn last_status(&self) -> Option<u16>;
}

type Inner = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    BodyWrapper<Bytes>,
>;

struct Shared {
    client: Inner,
    timeout: Duration,
    requests: AtomicUsize,
    retry_after: Mutex<Option<SystemTime>>,
    last_status: Mutex<Option<u16>>,
}

/// The real directory, over HTTPS.
#[derive(Clone)]
pub struct HttpsDirectory {
    url: String,
    shared: Arc<Shared>,
}

impl HttpsDirectory {
    /// A client for `url`, trusting the system's roots and those in `ca_file`.
    pub fn new(url: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<Self, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A broken system root is not ours to fix; the others still count.
            let _ = roots.add(cert);
        }
        if let Some(path) = ca_file {
            add_pem_roots(&mut roots, path)?;
        }
        if roots.is_empty() {
            return Err(AcmeError::Tls {
                detail:
                    "no trusted root certificates: install ca-certificates, or set acme.ca_file"
                        .into(),
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AcmeError::Tls { detail: e.to_string() })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(HttpsDirectory {
            url: url.to_string(),
            shared: Arc::new(Shared {
                client,
                timeout,
                requests: AtomicUsize::new(0),
                retry_after: Mutex::new(None),
                last_status: Mutex::new(None),
            }),
        })
    }
}

fn add_pem_roots(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), AcmeError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |detail: String| AcmeError::CaFile { path: path.to_path_buf(), detail };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    for c in certs {
        roots.add(c).map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

impl AcmeDirectory for HttpsDirectory {
    fn url(&self) -> &str {
        &self.url
    }

    fn http_client(&self) -> Box<dyn HttpClient> {
        Box::new(Client(self.shared.clone()))
    }

    fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    fn last_retry_after(&self) -> Option<SystemTime> {
        *self.shared.retry_after.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last_status(&self) -> Option<u16> {
        *self.shared.last_status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Client(Arc<Shared>);

/// A request that took longer than the configured timeout.
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0}s")]
pub struct TimedOut(pub u64);

/// The server could not be reached at all (DNS, connection, TLS).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

impl HttpClient for Client {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let shared = self.0.clone();
        shared.requests.fetch_add(1, Ordering::Relaxed);
        crate::debug!("acme: {} {}", req.method(), req.uri());
        Box::pin(async move {
            let fut = shared.client.request(req);
            let rsp = match tokio::time::timeout(shared.timeout, fut).await {
                Err(_) => {
                    return Err(instant_acme::Error::Other(Box::new(TimedOut(
                        shared.timeout.as_secs(),
                    ))));
                }
                Ok(Err(e)) => {
                    return Err(instant_acme::Error::Other(Box::new(Unreachable(error_chain(&e)))));
                }
                Ok(Ok(rsp)) => rsp,
            };
            let status = rsp.status();
            *shared.last_status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status.as_u16());
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                let after = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                *shared.retry_after.lock().unwrap_or_else(|p| p.into_inner()) = after;
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<SystemTime> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(SystemTime::now() + Duration::from_secs(secs));
    }
    chrono::DateTime::parse_from_rfc2822(v)
        .ok()
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
}

/// The error and its sources on one line ("client error (Connect): tcp connect error: …").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let t = parse_retry_after("120").unwrap();
        let d = t.duration_since(SystemTime::now()).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120));
        let t = parse_retry_after("Wed, 21 Oct 2037 07:28:00 GMT").unwrap();
        assert!(t > SystemTime::now());
        assert!(parse_retry_after("soon").is_none());
    }
}

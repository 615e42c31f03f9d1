//! instant-acme's HTTP client: ureq, blocking, on the control-plane thread.
//!
//! The CA's own HTTPS is verified with our crypto provider against `acme.ca_bundle` or the
//! system's roots (never ureq's bundled ones). Problem documents come back as responses
//! (`http_status_as_error(false)`), redirects are not followed, and each request is bounded
//! by a global timeout. The `Retry-After` of a refused request is kept for the caller
//! ([`Http::take_retry_after`]): instant-acme does not expose it on errors.

use std::future::{Future, ready};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body as _;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

/// A response body is at most this long (a certificate chain is a few KiB).
const MAX_BODY: u64 = 1 << 20;
/// One request, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A `Retry-After` beyond this is taken as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// See the [module docs](self).
#[derive(Clone)]
pub(crate) struct Http {
    agent: ureq::Agent,
    retry_after: Arc<Mutex<Option<Duration>>>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").finish_non_exhaustive()
    }
}

impl Http {
    /// A client trusting `ca_bundle` (PEM) or, without one, the system's roots.
    pub(crate) fn new(ca_bundle: Option<&Path>) -> Result<Self, String> {
        let roots = match ca_bundle {
            Some(p) => anygate_tls::pem_certificates(p)?,
            None => anygate_tls::pem_certificates(&anygate_tls::system_ca_bundle()?)?,
        };
        let roots: Vec<ureq::tls::Certificate<'static>> = roots
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
            .collect();
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(anygate_tls::provider())
            .root_certs(RootCerts::new_with_certs(&roots))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .https_only(true)
            .max_redirects(0)
            .timeout_global(Some(TIMEOUT))
            .user_agent(concat!("anygate/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Self {
            agent,
            retry_after: Arc::default(),
        })
    }

    /// The `Retry-After` of the last refused request (429 or 503), once.
    pub(crate) fn take_retry_after(&self) -> Option<Duration> {
        self.retry_after.lock().ok()?.take()
    }

    fn run(&self, req: http::Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, Error> {
        let (parts, mut body) = req.into_parts();
        let mut payload = Vec::new();
        // `BodyWrapper<Bytes>` yields its one frame at once.
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            if let Ok(data) = frame.into_data() {
                payload.extend_from_slice(&data);
            }
        }
        let req = http::Request::from_parts(parts, payload);
        let rsp = self.agent.run(req).map_err(|e| Error::Other(Box::new(e)))?;
        if let Some(after) = retry_after(rsp.status().as_u16(), rsp.headers())
            && let Ok(mut slot) = self.retry_after.lock()
        {
            *slot = Some(after);
        }
        let (parts, body) = rsp.into_parts();
        let bytes = body
            .into_with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| Error::Other(Box::new(e)))?;
        Ok(BytesResponse {
            parts,
            body: Box::new(Bytes::from(bytes)),
        })
    }
}

/// The wait a refusal (429 rate limited, 503 unavailable) asks for: `Retry-After` in
/// seconds (an HTTP date is not read: the backoff applies then), at most a day.
fn retry_after(status: u16, headers: &http::HeaderMap) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    let secs = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        Box::pin(ready(self.run(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::retry_after;
    use std::time::Duration;

    #[test]
    fn a_refusal_s_retry_after_is_read_in_seconds_and_capped() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("120"),
        );
        assert_eq!(retry_after(429, &h), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(503, &h), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(200, &h), None, "only on a refusal");
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("9999999"),
        );
        assert_eq!(retry_after(429, &h), Some(Duration::from_secs(86_400)));
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(429, &h), None);
        assert_eq!(retry_after(429, &http::HeaderMap::new()), None);
    }
}

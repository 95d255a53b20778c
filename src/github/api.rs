//! The small slice of GitHub's REST API that the sync needs, behind the
//! [`SecretsApi`] trait so tests can point the engine at any faithful server, and its
//! implementation on octocrab.
//!
//! Every request goes through [`OctocrabApi::send`], which applies the rate-limit
//! policy (serial mutative requests with a pause, `retry-after`, reset waits,
//! backoff, bounded 5xx retries, timeouts) and counts requests. Requests use
//! octocrab's raw methods (`_get`, `_put`, `_delete`) with octocrab's client, base
//! URL, authentication and App token refresh: its typed secrets handlers return only
//! bodies, and the policy needs the status and headers (`retry-after`,
//! `x-ratelimit-*`, `x-accepted-github-permissions`, `Date`); and its
//! environment-secrets handler builds the older `/repositories/{id}/environments/…`
//! form, where keyward calls the current
//! `/repos/{owner}/{repo}/environments/{name}/secrets…` paths. Request and response
//! bodies may hold sealed values, never plaintext; nothing here logs a body.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use octocrab::Octocrab;
use serde::{Deserialize, Serialize};

use super::auth::AuthKind;
use super::ratelimit::{Pacer, Policy, Verdict};
use super::scope::{Target, Visibility, enc};

/// A secret as GitHub lists it (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteSecret {
    pub name: String,
    pub updated_at: DateTime<Utc>,
    /// Organisation secrets only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
}

/// A scope's public key, as GitHub returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PublicKey {
    pub key_id: String,
    pub key: String,
}

/// A sealed value ready to send.
#[derive(Debug, Clone, Serialize)]
pub struct Sealed {
    pub encrypted_value: String,
    pub key_id: String,
}

/// Who may read an organisation secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccess {
    pub visibility: Visibility,
    pub selected_repository_ids: Vec<u64>,
}

/// What a PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// 201: the secret did not exist.
    Created,
    /// 204: an existing secret was replaced.
    Updated,
}

/// The answer to a PUT: what it did, and GitHub's clock when it did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutReply {
    pub written: Written,
    pub date: Option<DateTime<Utc>>,
}

/// The requests the sync makes. One implementation talks to GitHub through
/// octocrab; tests may implement it over anything else.
pub trait SecretsApi {
    /// Every secret of the scope (all pages).
    fn list(&self, target: &Target) -> Result<Vec<RemoteSecret>, ApiError>;
    /// The scope's public key, for sealing.
    fn public_key(&self, target: &Target) -> Result<PublicKey, ApiError>;
    /// Creates or replaces one secret.
    fn put(
        &self,
        target: &Target,
        name: &str,
        sealed: &Sealed,
        access: Option<&OrgAccess>,
    ) -> Result<PutReply, ApiError>;
    /// Deletes one secret.
    fn delete(&self, target: &Target, name: &str) -> Result<(), ApiError>;
    /// A repository's numeric id, `None` when GitHub does not know it.
    fn repository_id(&self, owner: &str, repo: &str) -> Result<Option<u64>, ApiError>;
    /// HTTP requests sent so far (retries included).
    fn requests(&self) -> u64;
}

/// What went wrong with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 401.
    Unauthorized { message: String },
    /// 403 that is not a rate limit; `accepted` is GitHub's
    /// `x-accepted-github-permissions` header when it sent one.
    Forbidden { message: String, accepted: Option<String> },
    /// 404.
    NotFound { message: String },
    /// 422.
    Unprocessable { message: String },
    /// Still rate limited after the waits allowed.
    RateLimited { why: String },
    /// 5xx after the retries allowed.
    Server { status: u16 },
    /// No answer within `github.timeout_seconds`.
    Timeout { seconds: u64 },
    /// Could not connect or the connection broke.
    Transport { detail: String },
    /// Any other status, or a body that is not what the API describes.
    Unexpected { status: u16, message: String },
}

/// A failed request (boxed: errors stay small on the happy path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError(pub Box<ApiErrorDetail>);

impl std::ops::Deref for ApiError {
    type Target = ApiErrorDetail;
    fn deref(&self) -> &ApiErrorDetail {
        &self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What keyward was doing, to which scope, and what GitHub answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiErrorDetail {
    /// What keyward was doing (`list the secrets`, `write SECRET_KEY`).
    pub op: String,
    /// The scope, as a person reads it.
    pub target: String,
    /// Read (`GET`) or write.
    pub write: bool,
    /// The fine-grained permission of the scope (`Secrets`, `Environments`, …).
    pub permission: &'static str,
    pub organization: bool,
    pub auth: AuthKind,
    pub kind: ApiErrorKind,
}

impl ApiErrorDetail {
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ApiErrorKind::Unauthorized { .. } => Some(401),
            ApiErrorKind::Forbidden { .. } => Some(403),
            ApiErrorKind::NotFound { .. } => Some(404),
            ApiErrorKind::Unprocessable { .. } => Some(422),
            ApiErrorKind::Server { status } | ApiErrorKind::Unexpected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The permission to grant, as GitHub's settings pages name it.
    pub fn missing_permission(&self) -> String {
        let level = if self.write { "read and write" } else { "read" };
        let mut p = format!("\"{}\" ({level})", self.permission);
        if self.permission == "Environments" {
            p.push_str(&format!(" and \"Secrets\" ({level})"));
        }
        p
    }
}

impl std::fmt::Display for ApiErrorDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = self.auth.describe();
        let (op, target) = (&self.op, &self.target);
        match &self.kind {
            ApiErrorKind::Unauthorized { message } => write!(
                f,
                "GitHub rejected {who} (401 {message}) trying to {op} in {target}: {}",
                self.auth.renew_hint()
            ),
            ApiErrorKind::Forbidden { message, accepted } => {
                let classic = if self.organization {
                    "the \"admin:org\" scope (and \"repo\" for private repositories)"
                } else {
                    "the \"repo\" scope"
                };
                write!(
                    f,
                    "GitHub refused to let {who} {op} in {target} (403 {message}): it lacks the {} permission{}; grant it to the fine-grained token or GitHub App (a classic token needs {classic}), then run again",
                    self.missing_permission(),
                    accepted
                        .as_deref()
                        .map(|a| format!(" (GitHub asks for: {a})"))
                        .unwrap_or_default()
                )
            }
            ApiErrorKind::NotFound { message } => write!(
                f,
                "GitHub has no {target} (404 {message}) when trying to {op}: check github.owner, github.repository and github.organization in keyward.toml, and that {who} can see it"
            ),
            ApiErrorKind::Unprocessable { message } if message.contains("key_id") => write!(
                f,
                "GitHub refused to {op} in {target} (422 {message}): the scope's public key changed during the sync; run 'keyward github sync' again"
            ),
            ApiErrorKind::Unprocessable { message } => write!(
                f,
                "GitHub refused to {op} in {target} (422 {message}): secret names may hold only letters, digits and underscores, must not start with a digit or GITHUB_, and values must be at most 48 KB; fix the policy"
            ),
            ApiErrorKind::RateLimited { why } => write!(
                f,
                "GitHub kept rate-limiting keyward trying to {op} in {target} ({why}); nothing else was lost: run 'keyward github sync' again later"
            ),
            ApiErrorKind::Server { status } => write!(
                f,
                "GitHub answered {status} trying to {op} in {target}, also after the retries (github.retries); check https://www.githubstatus.com and run 'keyward github sync' again"
            ),
            ApiErrorKind::Timeout { seconds } => write!(
                f,
                "GitHub did not answer within {seconds}s trying to {op} in {target}; check the network and github.api_url, or raise github.timeout_seconds"
            ),
            ApiErrorKind::Transport { detail } => write!(
                f,
                "cannot reach GitHub trying to {op} in {target} ({detail}); check the network and github.api_url"
            ),
            ApiErrorKind::Unexpected { status, message } => write!(
                f,
                "GitHub answered {status} ({message}) trying to {op} in {target}, which keyward does not expect; run again with -v and report it"
            ),
        }
    }
}

impl std::error::Error for ApiError {}

/// One HTTP exchange's result, after the rate-limit policy.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Put,
    Delete,
}

/// [`SecretsApi`] on octocrab, run on its own single-threaded runtime so the
/// engine stays synchronous. Must be used from synchronous code (not from inside
/// another tokio runtime).
pub struct OctocrabApi {
    crab: Octocrab,
    auth: AuthKind,
    policy: Policy,
    timeout: Duration,
    rt: tokio::runtime::Runtime,
    pacer: RefCell<Pacer>,
    requests: AtomicU64,
}

#[derive(Deserialize)]
struct Page<T> {
    total_count: u64,
    #[serde(alias = "repositories")]
    secrets: Vec<T>,
}

#[derive(Deserialize)]
struct WireSecret {
    name: String,
    updated_at: DateTime<Utc>,
    #[serde(default)]
    visibility: Option<Visibility>,
}

#[derive(Deserialize)]
struct WireRepo {
    id: u64,
}

#[derive(Serialize)]
struct PutBody<'a> {
    encrypted_value: &'a str,
    key_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    selected_repository_ids: Option<&'a [u64]>,
}

impl OctocrabApi {
    /// Builds the client with `make` inside the API's own runtime (octocrab spawns
    /// its service worker on the runtime that builds it).
    pub fn new<E>(
        make: impl FnOnce() -> Result<(Octocrab, AuthKind), E>,
        policy: Policy,
        timeout: Duration,
    ) -> Result<OctocrabApi, E>
    where
        E: From<std::io::Error>,
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (crab, auth) = {
            let _guard = rt.enter();
            make()?
        };
        Ok(OctocrabApi {
            crab,
            auth,
            policy,
            timeout,
            rt,
            pacer: RefCell::new(Pacer::default()),
            requests: AtomicU64::new(0),
        })
    }

    fn err(&self, target: &Target, op: &str, write: bool, kind: ApiErrorKind) -> ApiError {
        ApiError(Box::new(ApiErrorDetail {
            op: op.to_string(),
            target: target.to_string(),
            write,
            permission: target.permission(),
            organization: target.is_organization(),
            auth: self.auth.clone(),
            kind,
        }))
    }

    /// Sends one request under the rate-limit policy and returns the final answer
    /// (any status); transport failures and timeouts are errors.
    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ApiErrorKind> {
        let mutative = method != Method::Get;
        self.rt.block_on(async {
            let mut attempt = 0u32;
            let mut limited = 0u32;
            loop {
                // A RefCell borrow across an await is fine: this runtime is
                // single-threaded and `send` is never re-entered.
                let pause = self.policy.pause;
                {
                    let mut pacer = std::mem::take(&mut *self.pacer.borrow_mut());
                    pacer.before(mutative, pause).await;
                    *self.pacer.borrow_mut() = pacer;
                }
                self.requests.fetch_add(1, Ordering::Relaxed);
                let fut = async {
                    let resp = match method {
                        Method::Get => self.crab._get(path).await,
                        Method::Put => self.crab._put(path, body).await,
                        Method::Delete => self.crab._delete(path, None::<&()>).await,
                    }?;
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = self.crab.body_to_string(resp).await?;
                    Ok::<_, octocrab::Error>((status, headers, body))
                };
                let result = tokio::time::timeout(self.timeout, fut).await;
                let now = Utc::now().timestamp();
                // Timeouts and broken connections are retried a bounded number of
                // times, writes included: a PUT of the same sealed value is idempotent.
                let outcome = match result {
                    Err(_) => Err(ApiErrorKind::Timeout { seconds: self.timeout.as_secs() }),
                    Ok(Err(octocrab::Error::GitHub { source, .. })) => {
                        // octocrab itself asked GitHub (the App's installation-token
                        // exchange) and GitHub said no.
                        self.pacer.borrow_mut().after(mutative, None);
                        return Ok(Answer {
                            status: source.status_code,
                            headers: source.headers.clone().unwrap_or_default(),
                            body: serde_json::json!({ "message": source.message }).to_string(),
                        });
                    }
                    Ok(Err(e)) => {
                        let detail = transport_detail(&e);
                        let lower = detail.to_ascii_lowercase();
                        if lower.contains("timed out") || lower.contains("timeout") {
                            Err(ApiErrorKind::Timeout { seconds: self.timeout.as_secs() })
                        } else {
                            Err(ApiErrorKind::Transport { detail })
                        }
                    }
                    Ok(Ok(r)) => Ok(r),
                };
                let (status, headers, text) = match outcome {
                    Ok(r) => r,
                    Err(kind) => {
                        self.pacer.borrow_mut().after(mutative, None);
                        if attempt < self.policy.retries {
                            attempt += 1;
                            tokio::time::sleep(self.policy.pause.min(Duration::from_secs(1))).await;
                            continue;
                        }
                        return Err(kind);
                    }
                };

                self.pacer.borrow_mut().after(mutative, self.policy.exhausted_wait(&headers, now));
                let message = message_of(&text);
                match self.policy.judge(status, &headers, &message, attempt, limited, now) {
                    Verdict::Final => return Ok(Answer { status, headers, body: text }),
                    Verdict::Retry { wait, why } => {
                        crate::debug!("GitHub: {why}; waiting {}ms", wait.as_millis());
                        if super::ratelimit::is_rate_limit(status, &headers, &message) {
                            limited += 1;
                        } else {
                            attempt += 1;
                        }
                        tokio::time::sleep(wait).await;
                    }
                    Verdict::GiveUp { why } => return Err(ApiErrorKind::RateLimited { why }),
                }
            }
        })
    }

    /// Maps a non-success answer to an error kind.
    fn failure(a: &Answer) -> ApiErrorKind {
        let message = message_of(&a.body);
        match a.status.as_u16() {
            401 => ApiErrorKind::Unauthorized { message },
            403 => ApiErrorKind::Forbidden {
                message,
                accepted: a
                    .headers
                    .get("x-accepted-github-permissions")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from),
            },
            404 => ApiErrorKind::NotFound { message },
            422 => ApiErrorKind::Unprocessable { message },
            s if s >= 500 => ApiErrorKind::Server { status: s },
            s => ApiErrorKind::Unexpected { status: s, message },
        }
    }

    fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        target: &Target,
        op: &str,
        path: &str,
    ) -> Result<(T, HeaderMap), ApiError> {
        let a = self.send(Method::Get, path, None).map_err(|k| self.err(target, op, false, k))?;
        if a.status != StatusCode::OK {
            return Err(self.err(target, op, false, Self::failure(&a)));
        }
        let v = serde_json::from_str(&a.body).map_err(|e| {
            self.err(
                target,
                op,
                false,
                ApiErrorKind::Unexpected {
                    status: 200,
                    message: format!("the answer is not what the API describes: {e}"),
                },
            )
        })?;
        Ok((v, a.headers))
    }
}

fn transport_detail(e: &octocrab::Error) -> String {
    // octocrab's Display is terse ("Service error"); the source chain says why.
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// GitHub's error `message`, or the start of a body that has none. Error bodies never
/// hold secret values (they describe the request, not its content).
fn message_of(body: &str) -> String {
    #[derive(Deserialize)]
    struct E {
        message: String,
    }
    match serde_json::from_str::<E>(body) {
        Ok(e) => e.message,
        Err(_) => body.chars().take(120).collect::<String>().trim().to_string(),
    }
}

/// Whether a `Link` header names a next page.
fn has_next(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|part| part.contains("rel=\"next\"")))
}

fn http_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let v = headers.get(http::header::DATE)?.to_str().ok()?;
    DateTime::parse_from_rfc2822(v).ok().map(|d| d.with_timezone(&Utc))
}

impl SecretsApi for OctocrabApi {
    fn list(&self, target: &Target) -> Result<Vec<RemoteSecret>, ApiError> {
        let op = "list the secrets";
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let path = format!("{}?per_page=100&page={page}", target.secrets_path());
            let (p, headers): (Page<WireSecret>, _) = self.get_json(target, op, &path)?;
            let empty = p.secrets.is_empty();
            out.extend(p.secrets.into_iter().map(|s| RemoteSecret {
                name: s.name,
                updated_at: s.updated_at,
                visibility: s.visibility,
            }));
            if empty || !has_next(&headers) || out.len() as u64 >= p.total_count || page >= 100 {
                return Ok(out);
            }
            page += 1;
        }
    }

    fn public_key(&self, target: &Target) -> Result<PublicKey, ApiError> {
        let path = format!("{}/public-key", target.secrets_path());
        self.get_json(target, "get the public key", &path).map(|(k, _)| k)
    }

    fn put(
        &self,
        target: &Target,
        name: &str,
        sealed: &Sealed,
        access: Option<&OrgAccess>,
    ) -> Result<PutReply, ApiError> {
        let op = format!("write {name}");
        let body = PutBody {
            encrypted_value: &sealed.encrypted_value,
            key_id: &sealed.key_id,
            visibility: access.map(|a| a.visibility.as_str()),
            selected_repository_ids: access
                .filter(|a| a.visibility == Visibility::Selected)
                .map(|a| a.selected_repository_ids.as_slice()),
        };
        let body = serde_json::to_value(&body).map_err(|e| {
            self.err(
                target,
                &op,
                true,
                ApiErrorKind::Unexpected { status: 0, message: e.to_string() },
            )
        })?;
        let a = self
            .send(Method::Put, &target.secret_path(name), Some(&body))
            .map_err(|k| self.err(target, &op, true, k))?;
        let written = match a.status {
            StatusCode::CREATED => Written::Created,
            StatusCode::NO_CONTENT | StatusCode::OK => Written::Updated,
            _ => return Err(self.err(target, &op, true, Self::failure(&a))),
        };
        Ok(PutReply { written, date: http_date(&a.headers) })
    }

    fn delete(&self, target: &Target, name: &str) -> Result<(), ApiError> {
        let op = format!("delete {name}");
        let a = self
            .send(Method::Delete, &target.secret_path(name), None)
            .map_err(|k| self.err(target, &op, true, k))?;
        match a.status {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.err(target, &op, true, Self::failure(&a))),
        }
    }

    fn repository_id(&self, owner: &str, repo: &str) -> Result<Option<u64>, ApiError> {
        let target = Target::Repository { owner: owner.to_string(), repo: repo.to_string() };
        let path = format!("/repos/{}/{}", enc(owner), enc(repo));
        let op = "look up the repository";
        let a = self.send(Method::Get, &path, None).map_err(|k| self.err(&target, op, false, k))?;
        match a.status {
            StatusCode::OK => {
                serde_json::from_str::<WireRepo>(&a.body).map(|r| Some(r.id)).map_err(|e| {
                    self.err(
                        &target,
                        op,
                        false,
                        ApiErrorKind::Unexpected { status: 200, message: e.to_string() },
                    )
                })
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.err(&target, op, false, Self::failure(&a))),
        }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next_is_found() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::LINK,
            "<https://api.github.com/x?page=2>; rel=\"next\", <https://api.github.com/x?page=3>; rel=\"last\""
                .parse()
                .unwrap(),
        );
        assert!(has_next(&h));
        h.insert(
            http::header::LINK,
            "<https://api.github.com/x?page=1>; rel=\"prev\"".parse().unwrap(),
        );
        assert!(!has_next(&h));
    }

    #[test]
    fn error_messages_name_the_fix() {
        let e = ApiErrorDetail {
            op: "write A".into(),
            target: "environment \"production\" of o/r".into(),
            write: true,
            permission: "Environments",
            organization: false,
            auth: AuthKind::Token { var: "GITHUB_TOKEN".into() },
            kind: ApiErrorKind::Forbidden {
                message: "Resource not accessible by personal access token".into(),
                accepted: None,
            },
        };
        let m = e.to_string();
        assert!(m.contains("\"Environments\" (read and write)"), "{m}");
        assert!(m.contains("$GITHUB_TOKEN"), "{m}");
    }
}

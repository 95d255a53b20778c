//! A faithful local GitHub REST API for the Actions-secrets endpoints, for tests and
//! the benchmark.
//!
//! It implements the operations of GitHub's official OpenAPI description
//! (`tests/data/github-actions-secrets-openapi.json`, a subset): repository,
//! environment and organisation secrets, their public keys, the selected
//! repositories of organisation secrets, plus `GET /repos/{owner}/{repo}` and the
//! GitHub App installation-token exchange. It checks every request body and every
//! JSON response it sends against that description, holds one X25519 key pair per
//! scope, opens every sealed box it receives and records the plaintext, paginates
//! lists (`per_page`/`page` + `Link`), sends GitHub's rate-limit headers, and can
//! inject faults (401, 403, 404, 422, 429, 5xx, secondary/primary rate limits, slow
//! answers). It accepts origin-form (`/api/v3/…`, `/…`) and absolute-form request
//! targets, so it also works as the plain-HTTP forward-proxy target of the real
//! `gh` CLI. It is test code: it runs on 127.0.0.1 only and is stopped on drop.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use crypto_box::aead::OsRng;
use serde_json::{Value, json};

/// The OpenAPI description, kept with the tests.
pub fn openapi_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/github-actions-secrets-openapi.json")
}

fn load_openapi() -> Value {
    let path = openapi_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the local GitHub server needs GitHub's OpenAPI description at {} ({e}): it is part of the repository: restore it with git checkout",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("the OpenAPI description is JSON")
}

/// A fault to inject into matching requests.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// 401 Bad credentials.
    Unauthorized,
    /// 403 "Resource not accessible…" with `x-accepted-github-permissions`.
    Forbidden { accepted: &'static str },
    /// 403 secondary rate limit, with or without `retry-after`.
    SecondaryLimit { retry_after: Option<u64> },
    /// 403 primary limit: `x-ratelimit-remaining: 0`, reset in N seconds.
    PrimaryLimit { reset_in: u64 },
    /// 429 with `retry-after`.
    TooMany { retry_after: u64 },
    /// 404 Not Found.
    NotFound,
    /// 422 with a message.
    Unprocessable(&'static str),
    /// A 5xx status.
    Server(u16),
    /// Answer normally, but only after this long.
    Slow(Duration),
    /// Answer normally, saying the primary limit is now used up until N seconds on.
    Exhausted { reset_in: u64 },
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<&'static str>,
    /// Matches when the decoded path contains this.
    pub path: String,
    pub kind: FaultKind,
    /// How many matching requests get it.
    pub times: usize,
}

impl Fault {
    pub fn new(method: Option<&'static str>, path: &str, kind: FaultKind, times: usize) -> Fault {
        Fault { method, path: path.to_string(), kind, times }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub time: DateTime<Utc>,
}

/// One sealed value the server opened.
#[derive(Debug, Clone)]
pub struct Received {
    pub scope: String,
    pub name: String,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Stored {
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub value: Vec<u8>,
    pub visibility: Option<String>,
    pub selected: Vec<u64>,
}

struct Scope {
    key_id: String,
    secret: crypto_box::SecretKey,
    secrets: BTreeMap<String, Stored>,
}

impl Scope {
    fn new(n: u64) -> Scope {
        Scope {
            key_id: format!("{}", 3380204578043523366u64 + n),
            secret: crypto_box::SecretKey::generate(&mut OsRng),
            secrets: BTreeMap::new(),
        }
    }
}

struct Repo {
    id: u64,
    owner: String,
    name: String,
    environments: Vec<String>,
}

struct App {
    app_id: u64,
    installation_id: u64,
    public_pem: String,
}

struct World {
    openapi: Value,
    tokens: Vec<String>,
    repos: Vec<Repo>,
    orgs: Vec<String>,
    scopes: BTreeMap<String, Scope>,
    apps: Vec<App>,
    faults: Vec<Fault>,
    log: Vec<Logged>,
    received: Vec<Received>,
    request_violations: Vec<String>,
    response_violations: Vec<String>,
    remaining: u64,
    next_id: u64,
}

/// The running server.
pub struct GithubServer {
    pub port: u16,
    world: Arc<Mutex<World>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

pub const TOKEN: &str = "ghp_localTestToken0000000000000000000000";

pub fn repo_key(owner: &str, repo: &str) -> String {
    format!("repository:{owner}/{repo}")
}
pub fn env_key(owner: &str, repo: &str, env: &str) -> String {
    format!("environment:{owner}/{repo}:{env}")
}
pub fn org_key(org: &str) -> String {
    format!("organization:{org}")
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl GithubServer {
    /// Starts on a free loopback port with one valid token ([`TOKEN`]).
    pub fn start() -> GithubServer {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind the local GitHub server");
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let server = Arc::new(server);
        let world = Arc::new(Mutex::new(World {
            openapi: load_openapi(),
            tokens: vec![TOKEN.to_string()],
            repos: Vec::new(),
            orgs: Vec::new(),
            scopes: BTreeMap::new(),
            apps: Vec::new(),
            faults: Vec::new(),
            log: Vec::new(),
            received: Vec::new(),
            request_violations: Vec::new(),
            response_violations: Vec::new(),
            remaining: 5000,
            next_id: 1,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..6 {
            let (server, world, stop) = (server.clone(), world.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(50)) {
                        Ok(Some(rq)) => handle(&world, rq),
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            }));
        }
        GithubServer { port, world, stop, threads }
    }

    /// The API base as GitHub Enterprise Server spells it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v3", self.port)
    }

    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_token(&self, t: &str) {
        self.w().tokens.push(t.to_string());
    }

    pub fn revoke_tokens(&self) {
        self.w().tokens.clear();
    }

    /// A repository (with its secrets scope); returns its id.
    pub fn add_repo(&self, owner: &str, name: &str) -> u64 {
        let mut w = self.w();
        let id = 100_000 + w.next_id;
        w.next_id += 1;
        let n = w.next_id;
        w.repos.push(Repo { id, owner: owner.into(), name: name.into(), environments: Vec::new() });
        w.scopes.insert(repo_key(owner, name), Scope::new(n));
        id
    }

    pub fn add_environment(&self, owner: &str, repo: &str, env: &str) {
        let mut w = self.w();
        w.next_id += 1;
        let n = w.next_id;
        let r = w
            .repos
            .iter_mut()
            .find(|r| r.owner == owner && r.name == repo)
            .expect("add the repository first");
        r.environments.push(env.into());
        w.scopes.insert(env_key(owner, repo, env), Scope::new(n));
    }

    pub fn add_org(&self, org: &str) {
        let mut w = self.w();
        w.next_id += 1;
        let n = w.next_id;
        w.orgs.push(org.into());
        w.scopes.insert(org_key(org), Scope::new(n));
    }

    /// A GitHub App whose JWTs are checked with `public_pem`.
    pub fn add_app(&self, app_id: u64, installation_id: u64, public_pem: &str) {
        self.w().apps.push(App { app_id, installation_id, public_pem: public_pem.into() });
    }

    pub fn inject(&self, f: Fault) {
        self.w().faults.push(f);
    }

    pub fn clear_faults(&self) {
        self.w().faults.clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.w().log.clone()
    }

    pub fn clear_log(&self) {
        self.w().log.clear();
    }

    /// Requests whose method matches and whose path contains `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.w().log.iter().filter(|l| l.method == method && l.path.contains(path)).count()
    }

    pub fn total(&self) -> usize {
        self.w().log.len()
    }

    pub fn received(&self) -> Vec<Received> {
        self.w().received.clone()
    }

    /// The plaintext GitHub now holds for a secret.
    pub fn value(&self, scope: &str, name: &str) -> Option<Vec<u8>> {
        self.w().scopes.get(scope)?.secrets.get(name).map(|s| s.value.clone())
    }

    pub fn stored(&self, scope: &str, name: &str) -> Option<Stored> {
        self.w().scopes.get(scope)?.secrets.get(name).cloned()
    }

    pub fn names(&self, scope: &str) -> Vec<String> {
        self.w().scopes.get(scope).map(|s| s.secrets.keys().cloned().collect()).unwrap_or_default()
    }

    /// A secret set by someone else (a person with `gh secret set`).
    pub fn set_behind_the_back(&self, scope: &str, name: &str, value: &[u8]) {
        let mut w = self.w();
        let s = w.scopes.get_mut(scope).expect("known scope");
        // Someone else's change comes later than keyward's: a second on.
        let now = Utc::now() + chrono::Duration::seconds(2);
        let e = s.secrets.entry(name.to_string()).or_insert(Stored {
            created_at: now,
            updated_at: now,
            value: Vec::new(),
            visibility: scope.starts_with("organization:").then(|| "private".to_string()),
            selected: Vec::new(),
        });
        e.updated_at = now;
        e.value = value.to_vec();
    }

    pub fn delete_behind_the_back(&self, scope: &str, name: &str) {
        self.w().scopes.get_mut(scope).expect("known scope").secrets.remove(name);
    }

    /// Schema violations in requests received (a client bug).
    pub fn request_violations(&self) -> Vec<String> {
        self.w().request_violations.clone()
    }

    /// Schema violations in the server's own responses (a server bug).
    pub fn response_violations(&self) -> Vec<String> {
        self.w().response_violations.clone()
    }

    /// Panics when any request or response broke the API description.
    pub fn assert_faithful(&self) {
        let w = self.w();
        assert!(
            w.request_violations.is_empty(),
            "requests broke the API description: {:?}",
            w.request_violations
        );
        assert!(
            w.response_violations.is_empty(),
            "responses broke the API description: {:?}",
            w.response_violations
        );
    }

    /// The public key of a scope (for tests that seal by hand).
    pub fn public_key(&self, scope: &str) -> (String, String) {
        let w = self.w();
        let s = w.scopes.get(scope).expect("known scope");
        (s.key_id.clone(), STANDARD.encode(s.secret.public_key().as_bytes()))
    }
}

impl Drop for GithubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A response before it is sent.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply { status, body: Some(body), headers: Vec::new() }
    }
    fn empty(status: u16) -> Reply {
        Reply { status, body: None, headers: Vec::new() }
    }
    fn error(status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": status.to_string()}),
        )
    }
    fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn handle(world: &Arc<Mutex<World>>, mut rq: tiny_http::Request) {
    let method = rq.method().to_string();
    let raw = rq.url().to_string();
    let host = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let auth = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let mut body = Vec::new();
    let _ = rq.as_reader().read_to_end(&mut body);

    // Absolute form (a forward proxy's request target) and origin form.
    let target = match raw.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/".to_string(), |i| rest[i..].to_string()),
        None => raw.clone(),
    };
    let (path, query) = target
        .split_once('?')
        .map_or((target.clone(), String::new()), |(p, q)| (p.to_string(), q.to_string()));
    let (prefix, path) = match path.strip_prefix("/api/v3") {
        Some(p) => ("/api/v3", if p.is_empty() { "/".to_string() } else { p.to_string() }),
        None => ("", path),
    };
    let segments: Vec<String> = path.trim_matches('/').split('/').map(percent_decode).collect();
    let decoded_path = format!("/{}", segments.join("/"));
    let query: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();

    let (fault, slow, exhausted) = {
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        let mut slow = None;
        let mut exhausted = None;
        for f in w.faults.iter_mut() {
            if f.times == 0
                || !decoded_path.contains(&f.path)
                || f.method.is_some_and(|m| m != method)
            {
                continue;
            }
            f.times -= 1;
            match &f.kind {
                FaultKind::Slow(d) => slow = Some(*d),
                FaultKind::Exhausted { reset_in } => exhausted = Some(*reset_in),
                k => found = Some(k.clone()),
            }
            break;
        }
        (found, slow, exhausted)
    };
    if let Some(d) = slow {
        std::thread::sleep(d);
    }

    let reply = {
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        let base = format!("http://{host}{prefix}");
        let mut r = match fault {
            Some(k) => fault_reply(&k),
            None => route(&mut w, &method, &segments, &query, &body, auth.as_deref(), &base, &path),
        };
        if let Some(secs) = exhausted {
            let reset = Utc::now().timestamp() + secs as i64;
            r = r
                .header("X-RateLimit-Remaining", "0")
                .header("X-RateLimit-Reset", &reset.to_string());
        }
        w.remaining = w.remaining.saturating_sub(1);
        w.log.push(Logged {
            method: method.clone(),
            path: decoded_path.clone(),
            status: r.status,
            time: Utc::now(),
        });
        if let Some(b) = &r.body
            && let Some(v) = check_response(&w.openapi, &method, &segments, r.status, b)
        {
            w.response_violations.push(format!("{method} {decoded_path} {}: {v}", r.status));
        }
        let remaining = w.remaining;
        (r, remaining)
    };
    let (r, remaining) = reply;
    let data =
        r.body.as_ref().map(|b| serde_json::to_vec(b).unwrap_or_default()).unwrap_or_default();
    let mut resp = tiny_http::Response::from_data(data).with_status_code(r.status);
    let now = Utc::now();
    let mut headers: Vec<(String, String)> = vec![
        ("Date".into(), http_date(now)),
        ("X-GitHub-Media-Type".into(), "github.v3; format=json".into()),
        ("X-GitHub-Api-Version-Selected".into(), "2022-11-28".into()),
        ("X-RateLimit-Limit".into(), "5000".into()),
        ("X-RateLimit-Used".into(), (5000 - remaining).to_string()),
        ("X-RateLimit-Resource".into(), "core".into()),
    ];
    if !r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-ratelimit-remaining")) {
        headers.push(("X-RateLimit-Remaining".into(), remaining.to_string()));
        headers.push(("X-RateLimit-Reset".into(), (now.timestamp() + 3600).to_string()));
    }
    if r.body.is_some() {
        headers.push(("Content-Type".into(), "application/json; charset=utf-8".into()));
    }
    headers.extend(r.headers);
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    }
    let _ = rq.respond(resp);
}

fn fault_reply(k: &FaultKind) -> Reply {
    let now = Utc::now().timestamp();
    match k {
        FaultKind::Unauthorized => Reply::error(401, "Bad credentials"),
        FaultKind::Forbidden { accepted } => {
            Reply::error(403, "Resource not accessible by personal access token")
                .header("X-Accepted-GitHub-Permissions", accepted)
        }
        FaultKind::SecondaryLimit { retry_after } => {
            let r = Reply::error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            match retry_after {
                Some(s) => r.header("Retry-After", &s.to_string()),
                None => r,
            }
        }
        FaultKind::PrimaryLimit { reset_in } => {
            Reply::error(403, "API rate limit exceeded for user ID 1.")
                .header("X-RateLimit-Remaining", "0")
                .header("X-RateLimit-Reset", &(now + *reset_in as i64).to_string())
        }
        FaultKind::TooMany { retry_after } => {
            Reply::error(429, "Too Many Requests").header("Retry-After", &retry_after.to_string())
        }
        FaultKind::NotFound => Reply::error(404, "Not Found"),
        FaultKind::Unprocessable(m) => Reply::error(422, m),
        FaultKind::Server(s) => Reply::error(*s, "Server Error"),
        FaultKind::Slow(_) | FaultKind::Exhausted { .. } => Reply::error(500, "not a reply fault"),
    }
}

fn authorized(w: &World, auth: Option<&str>) -> bool {
    let Some(a) = auth else { return false };
    let token = a
        .strip_prefix("token ")
        .or_else(|| a.strip_prefix("Bearer "))
        .or_else(|| a.strip_prefix("bearer "));
    token.is_some_and(|t| w.tokens.iter().any(|k| k == t.trim()))
}

fn name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

#[allow(clippy::too_many_arguments)]
fn route(
    w: &mut World,
    method: &str,
    seg: &[String],
    query: &BTreeMap<String, String>,
    body: &[u8],
    auth: Option<&str>,
    base: &str,
    raw_path: &str,
) -> Reply {
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    // The App token exchange authenticates with the app's JWT, not a token.
    if let ["app", "installations", id, "access_tokens"] = s.as_slice() {
        if method != "POST" {
            return Reply::error(404, "Not Found");
        }
        return app_token(w, id, auth);
    }
    if !authorized(w, auth) {
        return Reply::error(401, "Bad credentials");
    }
    let repo_exists =
        |w: &World, o: &str, r: &str| w.repos.iter().any(|x| x.owner == o && x.name == r);
    match (method, s.as_slice()) {
        ("GET", ["repos", o, r]) => match w.repos.iter().find(|x| x.owner == *o && x.name == *r) {
            Some(repo) => Reply::json(200, repo_json(repo, base)),
            None => Reply::error(404, "Not Found"),
        },
        (_, ["repos", o, r, "actions", "organization-secrets"]) => {
            if !repo_exists(w, o, r) {
                return Reply::error(404, "Not Found");
            }
            let org = o.to_string();
            let secrets: Vec<Value> = w
                .scopes
                .get(&org_key(&org))
                .map(|s| s.secrets.iter().map(|(n, st)| secret_json(n, st, false)).collect())
                .unwrap_or_default();
            list_reply(secrets, "secrets", query, base, raw_path)
        }
        (_, ["repos", o, r, "actions", "secrets", rest @ ..]) => {
            if !repo_exists(w, o, r) {
                return Reply::error(404, "Not Found");
            }
            scope_route(w, method, &repo_key(o, r), rest, query, body, base, raw_path, false)
        }
        (_, ["repos", o, r, "environments", env, "secrets", rest @ ..]) => {
            let Some(repo) = w.repos.iter().find(|x| x.owner == *o && x.name == *r) else {
                return Reply::error(404, "Not Found");
            };
            if !repo.environments.iter().any(|e| e == env) {
                return Reply::error(404, "Not Found");
            }
            scope_route(w, method, &env_key(o, r, env), rest, query, body, base, raw_path, false)
        }
        (_, ["orgs", org, "actions", "secrets", rest @ ..]) => {
            if !w.orgs.iter().any(|x| x == org) {
                return Reply::error(404, "Not Found");
            }
            let org = org.to_string();
            match rest {
                [name, "repositories"] => {
                    selected_repos(w, method, &org, name, body, query, base, raw_path)
                }
                [name, "repositories", id] => {
                    let id: u64 = match id.parse() {
                        Ok(i) => i,
                        Err(_) => return Reply::error(404, "Not Found"),
                    };
                    let Some(st) =
                        w.scopes.get_mut(&org_key(&org)).and_then(|s| s.secrets.get_mut(*name))
                    else {
                        return Reply::error(404, "Not Found");
                    };
                    if st.visibility.as_deref() != Some("selected") {
                        return Reply::error(
                            409,
                            "Conflict when visibility type is not set to selected",
                        );
                    }
                    match method {
                        "PUT" => {
                            if !st.selected.contains(&id) {
                                st.selected.push(id);
                            }
                            Reply::empty(204)
                        }
                        "DELETE" => {
                            st.selected.retain(|x| *x != id);
                            Reply::empty(204)
                        }
                        _ => Reply::error(404, "Not Found"),
                    }
                }
                _ => {
                    scope_route(w, method, &org_key(&org), rest, query, body, base, raw_path, true)
                }
            }
        }
        _ => Reply::error(404, "Not Found"),
    }
}

fn repo_json(r: &Repo, base: &str) -> Value {
    let full = format!("{}/{}", r.owner, r.name);
    let api = format!("{base}/repos/{full}");
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("node_id".into(), json!(format!("R_{}", r.id)));
    m.insert("name".into(), json!(r.name));
    m.insert("full_name".into(), json!(full));
    m.insert("private".into(), json!(true));
    m.insert("fork".into(), json!(false));
    m.insert("description".into(), Value::Null);
    m.insert("html_url".into(), json!(format!("https://github.localhost/{full}")));
    m.insert("url".into(), json!(api));
    for k in [
        "archive",
        "assignees",
        "blobs",
        "branches",
        "collaborators",
        "comments",
        "commits",
        "compare",
        "contents",
        "contributors",
        "deployments",
        "downloads",
        "events",
        "forks",
        "git_commits",
        "git_refs",
        "git_tags",
        "hooks",
        "issue_comment",
        "issue_events",
        "issues",
        "keys",
        "labels",
        "languages",
        "merges",
        "milestones",
        "notifications",
        "pulls",
        "releases",
        "stargazers",
        "statuses",
        "subscribers",
        "subscription",
        "tags",
        "teams",
        "trees",
    ] {
        m.insert(format!("{k}_url"), json!(format!("{api}/{k}")));
    }
    let owner = &r.owner;
    let user = format!("{base}/users/{owner}");
    m.insert(
        "owner".into(),
        json!({
            "login": owner, "id": 1, "node_id": "O_1", "type": "Organization", "site_admin": false,
            "avatar_url": "https://github.localhost/avatar.png", "gravatar_id": "",
            "url": user, "html_url": format!("https://github.localhost/{owner}"),
            "events_url": format!("{user}/events{{/privacy}}"), "followers_url": format!("{user}/followers"),
            "following_url": format!("{user}/following{{/other_user}}"), "gists_url": format!("{user}/gists{{/gist_id}}"),
            "organizations_url": format!("{user}/orgs"), "received_events_url": format!("{user}/received_events"),
            "repos_url": format!("{user}/repos"), "starred_url": format!("{user}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{user}/subscriptions"),
        }),
    );
    Value::Object(m)
}

fn secret_json(name: &str, s: &Stored, org: bool) -> Value {
    let mut v =
        json!({"name": name, "created_at": iso(s.created_at), "updated_at": iso(s.updated_at)});
    if org {
        v["visibility"] = json!(s.visibility.clone().unwrap_or_else(|| "private".into()));
        if s.visibility.as_deref() == Some("selected") {
            v["selected_repositories_url"] =
                json!(format!("https://api.github.localhost/orgs/secrets/{name}/repositories"));
        }
    }
    v
}

/// `per_page` (default 30, at most 100) and `page` (from 1), with GitHub's `Link`.
fn list_reply(
    all: Vec<Value>,
    field: &str,
    query: &BTreeMap<String, String>,
    base: &str,
    raw_path: &str,
) -> Reply {
    let per_page: usize =
        query.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30).clamp(1, 100);
    let page: usize = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let total = all.len();
    let last = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = all.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut r = Reply::json(200, json!({"total_count": total, field: items}));
    let link = |p: usize, rel: &str| {
        format!("<{base}{raw_path}?per_page={per_page}&page={p}>; rel=\"{rel}\"")
    };
    let mut links = Vec::new();
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    if !links.is_empty() {
        r = r.header("Link", &links.join(", "));
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn scope_route(
    w: &mut World,
    method: &str,
    key: &str,
    rest: &[&str],
    query: &BTreeMap<String, String>,
    body: &[u8],
    base: &str,
    raw_path: &str,
    org: bool,
) -> Reply {
    let kind = if key.starts_with("environment:") {
        "environments"
    } else if org {
        "organization_secrets"
    } else {
        "secrets"
    };
    match (method, rest) {
        ("GET", []) => {
            let secrets: Vec<Value> =
                w.scopes[key].secrets.iter().map(|(n, s)| secret_json(n, s, org)).collect();
            list_reply(secrets, "secrets", query, base, raw_path)
        }
        ("GET", ["public-key"]) => {
            let s = &w.scopes[key];
            Reply::json(
                200,
                json!({"key_id": s.key_id, "key": STANDARD.encode(s.secret.public_key().as_bytes())}),
            )
        }
        ("GET", [name]) => match w.scopes[key].secrets.get(*name) {
            Some(s) => Reply::json(200, secret_json(name, s, org)),
            None => Reply::error(404, "Not Found"),
        },
        ("PUT", [name]) => put_secret(w, key, name, body, org, kind),
        ("DELETE", [name]) => match w.scopes.get_mut(key).and_then(|s| s.secrets.remove(*name)) {
            Some(_) => Reply::empty(204),
            None => Reply::error(404, "Not Found"),
        },
        _ => Reply::error(404, "Not Found"),
    }
}

fn put_secret(w: &mut World, key: &str, name: &str, body: &[u8], org: bool, _kind: &str) -> Reply {
    let tpl = if org {
        "/orgs/{org}/actions/secrets/{secret_name}"
    } else if key.starts_with("environment:") {
        "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"
    } else {
        "/repos/{owner}/{repo}/actions/secrets/{secret_name}"
    };
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            w.request_violations.push(format!("PUT {key}/{name}: body is not JSON ({e})"));
            return Reply::error(400, "Problems parsing JSON");
        }
    };
    let schema =
        w.openapi["paths"][tpl]["put"]["requestBody"]["content"]["application/json"]["schema"]
            .clone();
    if let Err(e) = validate(&w.openapi, &schema, &v, "body") {
        w.request_violations.push(format!("PUT {key}/{name}: {e}"));
        return Reply::error(422, &format!("Invalid request.\n\n{e}"));
    }
    if !name_ok(name) {
        return Reply::error(
            422,
            "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_). Spaces are not allowed. Must start with a letter ([a-z], [A-Z]) or underscores (_).",
        );
    }
    let scope = w.scopes.get_mut(key).expect("scope checked by the router");
    if v["key_id"].as_str() != Some(scope.key_id.as_str()) {
        return Reply::error(422, "Bad request - key_id does not match the current public key");
    }
    let sealed = match STANDARD.decode(v["encrypted_value"].as_str().unwrap_or_default()) {
        Ok(b) => b,
        Err(_) => return Reply::error(422, "encrypted_value is not base64"),
    };
    let value = match scope.secret.unseal(&sealed) {
        Ok(p) => p,
        Err(_) => {
            return Reply::error(
                422,
                "Bad request - the encrypted value cannot be decrypted with this key",
            );
        }
    };
    if value.len() > 48 * 1024 {
        return Reply::error(422, "Secret value is too large (48 KB at most)");
    }
    let existed = scope.secrets.contains_key(name);
    if !existed && scope.secrets.len() >= if org { 1000 } else { 100 } {
        return Reply::error(422, "Secrets count limit exceeded");
    }
    let now = Utc::now();
    let e = scope.secrets.entry(name.to_string()).or_insert(Stored {
        created_at: now,
        updated_at: now,
        value: Vec::new(),
        visibility: None,
        selected: Vec::new(),
    });
    e.updated_at = now;
    e.value = value.clone();
    if org {
        e.visibility = v["visibility"].as_str().map(String::from);
        e.selected = v["selected_repository_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
    }
    w.received.push(Received { scope: key.to_string(), name: name.to_string(), value });
    if existed { Reply::empty(204) } else { Reply::json(201, json!({})) }
}

#[allow(clippy::too_many_arguments)]
fn selected_repos(
    w: &mut World,
    method: &str,
    org: &str,
    name: &str,
    body: &[u8],
    query: &BTreeMap<String, String>,
    base: &str,
    raw_path: &str,
) -> Reply {
    let key = org_key(org);
    let Some(st) = w.scopes.get(&key).and_then(|s| s.secrets.get(name)).cloned() else {
        return Reply::error(404, "Not Found");
    };
    if st.visibility.as_deref() != Some("selected") {
        return Reply::error(409, "Conflict when visibility type is not set to selected");
    }
    match method {
        "GET" => {
            let repos: Vec<Value> = w
                .repos
                .iter()
                .filter(|r| st.selected.contains(&r.id))
                .map(|r| repo_json(r, base))
                .collect();
            list_reply(repos, "repositories", query, base, raw_path)
        }
        "PUT" => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let schema =
                w.openapi["paths"]["/orgs/{org}/actions/secrets/{secret_name}/repositories"]["put"]
                    ["requestBody"]["content"]["application/json"]["schema"]
                    .clone();
            if let Err(e) = validate(&w.openapi, &schema, &v, "body") {
                w.request_violations.push(format!("PUT selected repositories of {name}: {e}"));
                return Reply::error(422, &format!("Invalid request.\n\n{e}"));
            }
            let ids = v["selected_repository_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            if let Some(s) = w.scopes.get_mut(&key).and_then(|s| s.secrets.get_mut(name)) {
                s.selected = ids;
            }
            Reply::empty(204)
        }
        _ => Reply::error(404, "Not Found"),
    }
}

fn app_token(w: &mut World, id: &str, auth: Option<&str>) -> Reply {
    let Some(jwt) = auth.and_then(|a| a.strip_prefix("Bearer ")) else {
        return Reply::error(401, "A JSON web token could not be decoded");
    };
    let Some(app) = w.apps.iter().find(|a| a.installation_id.to_string() == id) else {
        return Reply::error(404, "Not Found");
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_pem.as_bytes()) else {
        return Reply::error(500, "bad test key");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat"]);
    let claims = match jsonwebtoken::decode::<Value>(jwt.trim(), &key, &validation) {
        Ok(d) => d.claims,
        Err(e) => {
            return Reply::error(401, &format!("A JSON web token could not be decoded ({e})"));
        }
    };
    let iss_ok = claims["iss"].as_u64() == Some(app.app_id)
        || claims["iss"].as_str() == Some(app.app_id.to_string().as_str());
    if !iss_ok {
        return Reply::error(401, "'Issuer' claim ('iss') must be an Integer");
    }
    let token = format!("ghs_installation{}{}", app.installation_id, w.tokens.len());
    w.tokens.push(token.clone());
    let expires = iso(Utc::now() + chrono::Duration::hours(1));
    Reply::json(
        201,
        json!({"token": token, "expires_at": expires, "permissions": {"secrets": "write", "environments": "write"}, "repository_selection": "all"}),
    )
}

/// Checks a JSON response against the description of the operation it answers.
fn check_response(
    api: &Value,
    method: &str,
    seg: &[String],
    status: u16,
    body: &Value,
) -> Option<String> {
    let tpl = template_of(seg)?;
    let op = &api["paths"][tpl.as_str()][method.to_ascii_lowercase()];
    if op.is_null() {
        return None;
    }
    let resp = &op["responses"][status.to_string()];
    if resp.is_null() {
        // Error statuses are not described per operation; GitHub's basic-error shape.
        if status >= 400 && body.get("message").and_then(Value::as_str).is_none() {
            return Some("error body without a message".into());
        }
        return None;
    }
    let schema = &resp["content"]["application/json"]["schema"];
    if schema.is_null() {
        return Some(format!("status {status} has no body in the description, but one was sent"));
    }
    validate(api, schema, body, "response").err()
}

/// The OpenAPI path template a request's segments match.
fn template_of(seg: &[String]) -> Option<String> {
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    let t = match s.as_slice() {
        ["repos", _, _, "actions", "secrets"] => "/repos/{owner}/{repo}/actions/secrets",
        ["repos", _, _, "actions", "secrets", "public-key"] => {
            "/repos/{owner}/{repo}/actions/secrets/public-key"
        }
        ["repos", _, _, "actions", "secrets", _] => {
            "/repos/{owner}/{repo}/actions/secrets/{secret_name}"
        }
        ["repos", _, _, "actions", "organization-secrets"] => {
            "/repos/{owner}/{repo}/actions/organization-secrets"
        }
        ["repos", _, _, "environments", _, "secrets"] => {
            "/repos/{owner}/{repo}/environments/{environment_name}/secrets"
        }
        ["repos", _, _, "environments", _, "secrets", "public-key"] => {
            "/repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key"
        }
        ["repos", _, _, "environments", _, "secrets", _] => {
            "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"
        }
        ["orgs", _, "actions", "secrets"] => "/orgs/{org}/actions/secrets",
        ["orgs", _, "actions", "secrets", "public-key"] => "/orgs/{org}/actions/secrets/public-key",
        ["orgs", _, "actions", "secrets", _] => "/orgs/{org}/actions/secrets/{secret_name}",
        ["orgs", _, "actions", "secrets", _, "repositories"] => {
            "/orgs/{org}/actions/secrets/{secret_name}/repositories"
        }
        ["orgs", _, "actions", "secrets", _, "repositories", _] => {
            "/orgs/{org}/actions/secrets/{secret_name}/repositories/{repository_id}"
        }
        _ => return None,
    };
    Some(t.to_string())
}

fn resolve<'a>(api: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.trim_start_matches('#');
            resolve(api, api.pointer(ptr).unwrap_or(&Value::Null))
        }
        None => schema,
    }
}

/// A JSON Schema check of the keywords GitHub's description uses here: `$ref`,
/// `type`, `required`, `properties`, `items`, `enum`, `pattern`, `format: date-time`,
/// `nullable`.
pub fn validate(api: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(api, schema);
    if schema.is_null() {
        return Ok(());
    }
    if v.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => true,
        };
        if !ok {
            return Err(format!("{at}: expected {t}, got {v}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {}", Value::Array(e.clone())));
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str()) {
        let re = regex::Regex::new(p).map_err(|e| format!("{at}: bad pattern {p}: {e}"))?;
        if !re.is_match(s) {
            return Err(format!("{at}: does not match the pattern {p}"));
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && let Some(s) = v.as_str()
        && DateTime::parse_from_rfc3339(s).is_err()
    {
        return Err(format!("{at}: {s:?} is not a date-time"));
    }
    if let Some(obj) = v.as_object() {
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    return Err(format!("{at}: \"{r}\" wasn't supplied"));
                }
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, sub) in props {
                if let Some(val) = obj.get(k) {
                    validate(api, sub, val, &format!("{at}.{k}"))?;
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate(api, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

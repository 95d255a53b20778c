//! Helpers shared by the GitHub tests: a local server with a repository, an
//! environment and an organisation; the octocrab-backed API pointed at it; items
//! and a state store in a temp folder.
#![allow(dead_code)]

use std::collections::BTreeMap;

use keyward::github::auth::Credential;
use keyward::github::{
    GithubConfig, GithubScope, OctocrabApi, SyncOptions, SyncReport, SyncState, Target, Visibility,
};
use keyward::secret::{SecretBytes, SecretString};
use keyward::secrets::GithubItem;
use keyward::store::Store;

use super::github_server::{GithubServer, TOKEN};

pub const OWNER: &str = "pazpaz";
pub const REPO: &str = "app";
pub const ENV: &str = "production";
pub const ORG: &str = "pazpaz";

/// A server with `pazpaz/app`, its `production` environment, the `pazpaz`
/// organisation and a second repository `pazpaz/infra`.
pub fn server() -> GithubServer {
    let s = GithubServer::start();
    s.add_repo(OWNER, REPO);
    s.add_repo(OWNER, "infra");
    s.add_environment(OWNER, REPO, ENV);
    s.add_org(ORG);
    s
}

/// Settings for tests: the local server, no pause, short backoff.
pub fn config(server: &GithubServer) -> GithubConfig {
    GithubConfig {
        api_url: server.url(),
        owner: Some(OWNER.into()),
        repository: Some(REPO.into()),
        organization: Some(ORG.into()),
        pause_ms: 0,
        backoff_ms: 20,
        timeout_seconds: 5,
        ..GithubConfig::default()
    }
}

pub fn token() -> Credential {
    Credential::Token { var: "GITHUB_TOKEN".into(), token: SecretString::new(TOKEN.into()) }
}

pub fn api(config: &GithubConfig) -> OctocrabApi {
    keyward::github::connect_with(config, &token()).expect("client")
}

pub fn repo() -> GithubScope {
    GithubScope::Repository
}
pub fn env() -> GithubScope {
    GithubScope::Environment { environment: ENV.into() }
}
pub fn org(visibility: Visibility, repos: &[&str]) -> GithubScope {
    GithubScope::Organization {
        visibility,
        selected_repositories: repos.iter().map(|r| r.to_string()).collect(),
    }
}

pub fn item(name: &str, version: u64, value: &[u8], scopes: Vec<GithubScope>) -> GithubItem {
    GithubItem { name: name.into(), version, scopes, value: SecretBytes::from_slice(value) }
}

pub fn repo_target() -> Target {
    Target::Repository { owner: OWNER.into(), repo: REPO.into() }
}

/// A state store in a temp folder.
pub struct States {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

impl States {
    pub fn new() -> States {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        States { dir, store }
    }

    pub fn load(&self) -> SyncState {
        SyncState::load(&self.store).unwrap()
    }
}

/// One sync as the command does it: load the state, sync, save.
pub fn run_sync(
    api: &OctocrabApi,
    config: &GithubConfig,
    items: &[GithubItem],
    states: &States,
    opts: SyncOptions,
) -> SyncReport {
    let opts = SyncOptions { drift_check: config.drift_check, ..opts };
    let mut state = states.load();
    let (targets, errors) = keyward::github::sync::plan_targets(items, config);
    assert!(errors.is_empty(), "{errors:?}");
    let report = keyward::github::sync::sync(api, &targets, &mut state, opts);
    if !opts.dry_run {
        state.save(&states.store).unwrap();
    }
    report
}

pub fn sync(
    api: &OctocrabApi,
    config: &GithubConfig,
    items: &[GithubItem],
    states: &States,
) -> SyncReport {
    run_sync(api, config, items, states, SyncOptions::default())
}

/// `(scope key, name) -> (change, outcome)` of a report, for assertions.
pub fn outcomes(r: &SyncReport) -> BTreeMap<(String, String), (String, String)> {
    let mut out = BTreeMap::new();
    for s in &r.scopes {
        for x in &s.secrets {
            let v = serde_json::to_value(x).unwrap();
            out.insert(
                (s.key.clone(), x.name.clone()),
                (
                    v["change"].as_str().unwrap().to_string(),
                    v["outcome"].as_str().unwrap().to_string(),
                ),
            );
        }
    }
    out
}

pub fn errors(r: &SyncReport) -> Vec<String> {
    let mut out = Vec::new();
    for s in &r.scopes {
        out.extend(s.error.clone());
        out.extend(s.secrets.iter().filter_map(|x| x.error.clone()));
    }
    out
}

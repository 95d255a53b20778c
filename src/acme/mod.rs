//! ACME certificates (Let's Encrypt or any RFC 8555 server) in certbot's layout.
//!
//! Owns the `[acme]` section, the ACME account (key encrypted at rest), the decision
//! when to renew (RFC 9773 renewal information, else a third of the lifetime left), the
//! order itself, the `live/`/`archive/` lineage, deploy hooks, `keyward acme …`, the
//! ACME step of `keyward run` and the ACME lines of `keyward status`.
//!
//! Rules it keeps: a run with nothing due sends no request; a failed renewal never
//! touches the live certificate; a failed renewal or hook is never silent (exit 1, an
//! audit record, the failure kept in state for `status` until a later success); deploy
//! hooks run only after a real renewal. It must not print or log a private key, the
//! account key or the EAB HMAC key.

pub mod account;
pub mod ari;
pub mod challenge;
pub mod config;
pub mod directory;
pub mod fault;
pub mod lineage;
pub mod order;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use config::AcmeConfig;

use crate::audit::{Object, Outcome};
use crate::hooks::{self, HookError, Input};
use crate::output::{Human, Table};
use crate::run::{Action, ActionResult, Step};
use crate::status::{Health, Item};
use crate::store::{FileMode, StoreError};
use crate::util::{days_until, fmt_time};
use crate::{Context, Error, Exit};
use ari::{CertState, Decision, DirectoryInfo, Failure};
use config::CertificateConfig;
use directory::{AcmeDirectory, HttpsDirectory};
use lineage::{CertInfo, Lineage};

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(
        "keyward.toml has no [acme] section: add one with [[acme.certificate]] entries (docs/cli.md, 'ACME')"
    )]
    NotConfigured,
    #[error("no ACME certificate named {name:?} in keyward.toml (configured: {known})")]
    UnknownCertificate { name: String, known: String },
    #[error(
        "cannot reach the ACME server {url} to {op}: {detail}; check the network, DNS and acme.directory (keyward tries again on the next run)"
    )]
    Unreachable { url: String, op: String, detail: String },
    #[error(
        "the ACME server {url} did not answer within {secs}s while trying to {op}; it may be overloaded (keyward tries again on the next run) — raise acme.timeout_seconds if it is always slow"
    )]
    Timeout { url: String, op: String, secs: u64 },
    #[error(
        "the ACME server {url} did not finish in time ({op}) within acme.validation_timeout_seconds; check the server's status page, or raise the timeout"
    )]
    ValidationTimeout { url: String, op: String },
    #[error(
        "the ACME server {url} rate-limited the request to {op}: {detail}; keyward will not ask again before {until} (https://letsencrypt.org/docs/rate-limits/)"
    )]
    RateLimited { url: String, op: String, detail: String, until: String },
    #[error(
        "the ACME server {url} kept rejecting nonces (badNonce) while trying to {op}, even after retries; try again later"
    )]
    BadNonce { url: String, op: String },
    #[error("the ACME server {url} refused to {op}: {detail} ({kind})")]
    Problem { url: String, op: String, kind: String, detail: String },
    #[error("unexpected answer from the ACME server {url} while trying to {op}: {detail}")]
    Protocol { url: String, op: String, detail: String },
    #[error("the ACME server {url} does not support {what}")]
    Unsupported { url: String, what: &'static str },
    #[error(
        "{kind} validation of {domain} for certificate {name:?} failed: the server says: {detail}; {fix}"
    )]
    Challenge { name: String, domain: String, kind: &'static str, detail: String, fix: String },
    #[error(
        "webroot {path} of certificate {name:?} {detail}: create it and serve it, or fix challenge.webroot"
    )]
    Webroot { name: String, path: PathBuf, detail: String },
    #[error(
        "certificate {name:?}: cannot listen on {addr} for http-01 ({detail}); is another server using the port? use the webroot challenge when nginx owns port 80"
    )]
    Listen { name: String, addr: String, detail: String },
    #[error(
        "certificate {name:?} asks for the ACME profile {profile:?}, which the server does not offer (offered: {offered}); fix or remove 'profile'"
    )]
    Profile { name: String, profile: String, offered: String },
    #[error("certificate {name:?}: {detail}")]
    Certificate { name: String, detail: String },
    #[error("certificate {name:?}: {stage} hook failed: {source}")]
    Hook { name: String, stage: &'static str, source: Box<HookError> },
    #[error(
        "acme.ca_file {path}: {detail}; it must hold the PEM certificate(s) of the CA that signed the ACME server's TLS certificate"
    )]
    CaFile { path: PathBuf, detail: String },
    #[error("TLS setup for the ACME server failed: {detail}")]
    Tls { detail: String },
    #[error(
        "EAB HMAC key file {path}: {detail}; it must hold the base64url key your CA gave you, mode 0600"
    )]
    Eab { path: PathBuf, detail: String },
    #[error(
        "the machine key {path} cannot be read ({detail}); restore it from the DR export ('keyward restore state')"
    )]
    MachineKey { path: PathBuf, detail: String },
    #[error(
        "the ACME account key {path} cannot be decrypted ({detail}); restore the state from the DR export, or move the account folder away and run 'keyward acme register' for a new account"
    )]
    AccountKey { path: PathBuf, detail: String },
    #[error("cannot import the certbot lineage {path}: {detail}")]
    Import { path: PathBuf, detail: String },
    #[error("cannot {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Internal(String),
}

impl AcmeError {
    pub fn exit(&self) -> Exit {
        match self {
            AcmeError::NotConfigured
            | AcmeError::UnknownCertificate { .. }
            | AcmeError::CaFile { .. }
            | AcmeError::Eab { .. }
            | AcmeError::Profile { .. } => Exit::Usage,
            AcmeError::Store(e) => e.exit(),
            AcmeError::Audit(e) => e.exit(),
            _ => Exit::Failed,
        }
    }
}

const CERT_STATE: &str = "acme/certificates";
const DIRECTORIES: &str = "acme/directories.json";

fn section(ctx: &Context) -> Result<&AcmeConfig, AcmeError> {
    ctx.config.file.acme.as_ref().ok_or(AcmeError::NotConfigured)
}

fn state_rel(name: &str) -> String {
    format!("{CERT_STATE}/{name}.json")
}

pub fn load_state(ctx: &Context, name: &str) -> Result<CertState, AcmeError> {
    Ok(ctx.store.read_json(state_rel(name))?.unwrap_or_default())
}

fn save_state(ctx: &Context, name: &str, s: &CertState) -> Result<(), AcmeError> {
    crate::store::ensure_private_dir(&ctx.store.path("acme"))?;
    Ok(ctx.store.write_json(state_rel(name), s)?)
}

fn load_dirs(ctx: &Context) -> Result<BTreeMap<String, DirectoryInfo>, AcmeError> {
    Ok(ctx.store.read_json(DIRECTORIES)?.unwrap_or_default())
}

fn save_dirs(ctx: &Context, d: &BTreeMap<String, DirectoryInfo>) -> Result<(), AcmeError> {
    crate::store::ensure_private_dir(&ctx.store.path("acme"))?;
    Ok(ctx.store.write_json(DIRECTORIES, d)?)
}

/// Everything about one configured certificate that needs no network.
struct View<'a> {
    cert: &'a CertificateConfig,
    lineage: Lineage,
    info: Option<CertInfo>,
    state: CertState,
}

fn view<'a>(
    ctx: &Context,
    acme: &AcmeConfig,
    cert: &'a CertificateConfig,
) -> Result<View<'a>, AcmeError> {
    let lineage = Lineage::new(cert.output_base(acme, &ctx.config), &cert.name);
    let info = lineage.read_cert().and_then(|p| lineage::parse_cert(&p).ok());
    let mut state = load_state(ctx, &cert.name)?;
    if state.ari_directory.as_deref() != Some(acme.directory_url()) {
        state.ari = None;
        state.no_ari_serial = None;
    }
    Ok(View { cert, lineage, info, state })
}

/// The network side, made only when a request is needed.
struct Session {
    rt: tokio::runtime::Runtime,
    dir: HttpsDirectory,
    account: Option<account::Loaded>,
}

impl Session {
    fn new(ctx: &Context, acme: &AcmeConfig) -> Result<Session, AcmeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AcmeError::Internal(format!("cannot start the async runtime: {e}")))?;
        let ca = acme.ca_file.as_ref().map(|p| ctx.config.resolve(p));
        // Building the rustls client needs no runtime, but hyper's pool does.
        let dir = {
            let _guard = rt.enter();
            HttpsDirectory::new(
                acme.directory_url(),
                ca.as_deref(),
                Duration::from_secs(acme.timeout_seconds.max(1)),
            )?
        };
        Ok(Session { rt, dir, account: None })
    }

    fn account(
        &mut self,
        ctx: &Context,
        acme: &AcmeConfig,
        contact: &[String],
        eab: Option<&account::Eab>,
    ) -> Result<&account::Loaded, AcmeError> {
        if self.account.is_none() {
            let loaded = self.rt.block_on(account::load_or_create(ctx, &self.dir, contact, eab))?;
            if loaded.created {
                let _ = ctx.audit.append(
                    "acme register",
                    Object::new("acme-account", &loaded.meta.url),
                    Outcome::Ok,
                    Some(&format!("directory {}", acme.directory_url())),
                );
                crate::info!("acme: registered account {}", loaded.meta.url);
            }
            self.account = Some(loaded);
        }
        // Just set when it was None.
        self.account.as_ref().ok_or_else(|| AcmeError::Internal("no account".into()))
    }
}

fn config_eab(ctx: &Context, acme: &AcmeConfig) -> Option<account::Eab> {
    match (&acme.eab_kid, &acme.eab_hmac_file) {
        (Some(kid), Some(f)) => {
            Some(account::Eab { kid: kid.clone(), hmac_file: ctx.config.resolve(f) })
        }
        _ => None,
    }
}

/// The run-wide context of renewing: the session made on first need, and what is known
/// of the directory.
struct Renewer<'c> {
    ctx: &'c Context,
    acme: &'c AcmeConfig,
    session: Option<Result<Session, String>>,
    dirs: BTreeMap<String, DirectoryInfo>,
}

impl<'c> Renewer<'c> {
    fn new(ctx: &'c Context, acme: &'c AcmeConfig) -> Result<Self, AcmeError> {
        Ok(Renewer { ctx, acme, session: None, dirs: load_dirs(ctx)? })
    }

    fn ari_known(&self) -> Option<bool> {
        self.dirs.get(self.acme.directory_url()).map(|d| d.renewal_info)
    }

    fn session(&mut self) -> Result<&mut Session, AcmeError> {
        if self.session.is_none() {
            self.session = Some(Session::new(self.ctx, self.acme).map_err(|e| e.to_string()));
        }
        match self.session.as_mut() {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(AcmeError::Internal(e.clone())),
            None => Err(AcmeError::Internal("no session".into())),
        }
    }

    fn account(&mut self) -> Result<(&mut Session, String), AcmeError> {
        let (ctx, acme) = (self.ctx, self.acme);
        let eab = config_eab(ctx, acme);
        let s = self.session()?;
        let url = s.account(ctx, acme, &acme.contact, eab.as_ref())?.meta.url.clone();
        Ok((s, url))
    }

    /// Asks the server for the renewal window of the live certificate and remembers it.
    fn fetch_ari(&mut self, info: &CertInfo, state: &mut CertState) -> Result<(), AcmeError> {
        let Some(id) = info.ari_id.clone() else {
            self.remember_ari(false)?;
            return Ok(());
        };
        let (s, _) = self.account()?;
        let Some(loaded) = s.account.as_ref() else {
            return Err(AcmeError::Internal("no account".into()));
        };
        let (aki, serial) = id.split_once('.').unwrap_or((&id, ""));
        let cid = instant_acme::CertificateIdentifier {
            authority_key_identifier: aki.to_string().into(),
            serial: serial.to_string().into(),
        };
        let profiles: Vec<String> = loaded.account.profiles().map(|p| p.name.to_string()).collect();
        let res = s.rt.block_on(async { fault::retry_nonce!(loaded.account.renewal_info(&cid)) });
        // 404 (Boulder) or 400 (Pebble): the server has no such certificate.
        let status = s.dir.last_status();
        let not_found = matches!(status, Some(400 | 404));
        let dir_url = s.dir.url().to_string();
        let res = match res {
            Ok(x) => Ok(Some(x)),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(_) if not_found => Err(None),
            Err(e) => Err(Some(fault::from_acme(&s.dir, "fetch renewal information", e))),
        };
        let now = self.ctx.now;
        match res {
            Ok(Some((ri, retry))) => {
                let at = |t: time::OffsetDateTime| {
                    chrono::DateTime::from_timestamp(t.unix_timestamp(), 0).unwrap_or(now)
                };
                let (start, end) = (at(ri.suggested_window.start), at(ri.suggested_window.end));
                ari::record_window(state, &info.serial, start, end, retry, ri.explanation_url, now);
                state.ari_directory = Some(dir_url);
                self.remember(true, profiles)
            }
            Ok(None) => self.remember(false, profiles),
            // The server does not know this certificate (issued elsewhere, or by a test
            // server since restarted): the lifetime rule decides for it.
            Err(None) => {
                crate::info!(
                    "acme: the server has no renewal information for serial {} (HTTP {}); renewing it when a third of its lifetime is left",
                    info.serial,
                    status.unwrap_or_default()
                );
                state.serial = Some(info.serial.clone());
                state.ari = None;
                state.no_ari_serial = Some(info.serial.clone());
                state.ari_directory = Some(dir_url);
                Ok(())
            }
            Err(Some(e)) => Err(e),
        }
    }

    fn remember_ari(&mut self, ari: bool) -> Result<(), AcmeError> {
        let profiles = self
            .dirs
            .get(self.acme.directory_url())
            .map(|d| d.profiles.clone())
            .unwrap_or_default();
        self.remember(ari, profiles)
    }

    fn remember(&mut self, ari: bool, profiles: Vec<String>) -> Result<(), AcmeError> {
        let info = DirectoryInfo { renewal_info: ari, profiles, checked: fmt_time(self.ctx.now) };
        if self.dirs.get(self.acme.directory_url()) != Some(&info) {
            self.dirs.insert(self.acme.directory_url().to_string(), info);
            save_dirs(self.ctx, &self.dirs)?;
        }
        Ok(())
    }

    /// One certificate's part of a run: nothing, a renewal, or a retried deploy.
    fn process(&mut self, cert: &CertificateConfig, force: bool, dry_run: bool) -> Option<Action> {
        let ctx = self.ctx;
        let mut v = match view(ctx, self.acme, cert) {
            Ok(v) => v,
            Err(e) => return Some(failed(cert, "renew", "cannot read its state", &e.to_string())),
        };
        let mut decision =
            ari::decide(ctx.now, v.info.as_ref(), &cert.domains, &v.state, self.ari_known(), force);
        if decision == Decision::AskAri {
            if dry_run {
                return Some(Action {
                    object: cert.name.clone(),
                    action: "check".into(),
                    reason: "ask the server for renewal information (RFC 9773)".into(),
                    result: ActionResult::Planned,
                });
            }
            let info = v.info.clone();
            if let Some(info) = info {
                if let Err(e) = self.fetch_ari(&info, &mut v.state) {
                    let msg = e.to_string();
                    self.record_failure(cert, &mut v.state, "renewal-info", &e);
                    // The lifetime rule still protects the certificate when ARI is down.
                    let fallback = ari::decide(
                        ctx.now,
                        Some(&info),
                        &cert.domains,
                        &v.state,
                        Some(false),
                        false,
                    );
                    if !matches!(fallback, Decision::Due(_)) {
                        return Some(failed(cert, "check", "renewal information", &msg));
                    }
                    decision = fallback;
                } else {
                    if v.state.last_failure.as_ref().is_some_and(|f| f.stage == "renewal-info") {
                        v.state.last_failure = None;
                    }
                    let _ = save_state(ctx, &cert.name, &v.state);
                    decision = ari::decide(
                        ctx.now,
                        Some(&info),
                        &cert.domains,
                        &v.state,
                        self.ari_known(),
                        false,
                    );
                    if decision == Decision::AskAri {
                        decision = ari::decide(
                            ctx.now,
                            Some(&info),
                            &cert.domains,
                            &v.state,
                            Some(false),
                            false,
                        );
                    }
                }
            }
        }
        match decision {
            Decision::Due(reason) => {
                let verb = if v.info.is_some() { "renew" } else { "issue" };
                if dry_run {
                    return Some(Action {
                        object: cert.name.clone(),
                        action: verb.into(),
                        reason,
                        result: ActionResult::Planned,
                    });
                }
                Some(self.renew(&mut v, verb, reason))
            }
            Decision::Backoff(until) => Some(failed(
                cert,
                "renew",
                "due, but the server rate-limited it",
                &format!(
                    "not asking the server again before {} (rate limited); 'keyward acme renew --force {}' overrides",
                    fmt_time(until),
                    cert.name
                ),
            )),
            Decision::NotDue { .. } | Decision::AskAri if v.state.deploy_pending => {
                if dry_run {
                    return Some(Action {
                        object: cert.name.clone(),
                        action: "deploy".into(),
                        reason: "the deploy hooks failed after the last renewal".into(),
                        result: ActionResult::Planned,
                    });
                }
                Some(self.deploy(&mut v, "the deploy hooks failed after the last renewal".into()))
            }
            _ => None,
        }
    }

    fn record_failure(
        &self,
        cert: &CertificateConfig,
        state: &mut CertState,
        stage: &str,
        e: &AcmeError,
    ) {
        if let AcmeError::RateLimited { until, .. } = e {
            state.backoff_until = Some(until.clone());
        }
        state.last_failure = Some(Failure {
            time: fmt_time(self.ctx.now),
            stage: stage.into(),
            error: e.to_string(),
        });
        if let Err(se) = save_state(self.ctx, &cert.name, state) {
            crate::warn!("acme {}: cannot record the failure: {se}", cert.name);
        }
        let action = if stage == "renewal-info" { "acme check" } else { "acme renew" };
        if let Err(ae) = self.ctx.audit.append(
            action,
            Object::new("acme-certificate", &cert.name),
            Outcome::Failed,
            Some(&e.to_string()),
        ) {
            crate::warn!("acme {}: cannot write the audit record: {ae}", cert.name);
        }
    }

    fn renew(&mut self, v: &mut View<'_>, verb: &str, reason: String) -> Action {
        let cert = v.cert;
        match self.try_renew(v) {
            Ok(version) => {
                let deploy = self.deploy(v, reason.clone());
                match deploy.result {
                    ActionResult::Failed { error } => Action {
                        object: cert.name.clone(),
                        action: verb.into(),
                        reason,
                        result: ActionResult::Failed {
                            error: format!("renewed (version {version}), but {error}"),
                        },
                    },
                    _ => Action {
                        object: cert.name.clone(),
                        action: verb.into(),
                        reason,
                        result: ActionResult::Done,
                    },
                }
            }
            Err(e) => {
                self.record_failure(cert, &mut v.state, "renew", &e);
                Action {
                    object: cert.name.clone(),
                    action: verb.into(),
                    reason,
                    result: ActionResult::Failed { error: e.to_string() },
                }
            }
        }
    }

    fn try_renew(&mut self, v: &mut View<'_>) -> Result<u32, AcmeError> {
        let (ctx, acme, cert) = (self.ctx, self.acme, v.cert);
        let ari = self.ari_known();
        let (s, account_url) = self.account()?;
        let replaces = match &v.info {
            Some(i)
                if ari == Some(true)
                    && v.state.account.as_deref() == Some(account_url.as_str()) =>
            {
                i.ari_id.clone()
            }
            _ => None,
        };
        let reuse =
            if cert.reuse_key && v.info.is_some() { v.lineage.read_key().ok() } else { None };
        let Some(loaded) = s.account.as_ref() else {
            return Err(AcmeError::Internal("no account".into()));
        };
        let issued = s.rt.block_on(order::issue(
            &s.dir,
            &loaded.account,
            cert,
            replaces.as_deref(),
            reuse,
            Duration::from_secs(acme.validation_timeout_seconds.max(1)),
        ))?;
        let key_mode = match &cert.key_group {
            Some(g) => {
                let group = nix::unistd::Group::from_name(g).ok().flatten().ok_or_else(|| {
                    AcmeError::Certificate {
                        name: cert.name.clone(),
                        detail: format!("there is no group {g:?}"),
                    }
                })?;
                FileMode { mode: 0o640, uid: None, gid: Some(group.gid.as_raw()) }
            }
            None => FileMode::PRIVATE,
        };
        let version = v.lineage.install(
            &lineage::Version {
                cert: &issued.cert,
                chain: &issued.chain,
                fullchain: &issued.fullchain,
                privkey: &issued.key,
            },
            key_mode,
            cert.keep(acme),
        )?;
        let old = v.info.replace(issued.info.clone());
        v.state = CertState {
            account: Some(account_url),
            serial: Some(issued.info.serial.clone()),
            ari: None,
            backoff_until: None,
            last_failure: None,
            deploy_pending: !cert.deploy_hooks.is_empty(),
            last_renewed: Some(fmt_time(ctx.now)),
            imported_from: None,
            no_ari_serial: None,
            ari_directory: None,
        };
        save_state(ctx, &cert.name, &v.state)?;
        let detail = match (&old, &issued.replaced) {
            (Some(o), Some(_)) => format!("replaces serial {} (ARI replaces)", o.serial),
            (Some(o), None) => format!("replaces serial {}", o.serial),
            (None, _) => "first certificate".into(),
        };
        ctx.audit.append(
            if old.is_some() { "acme renew" } else { "acme issue" },
            Object::new("acme-certificate", &cert.name)
                .version(u64::from(version))
                .serial(&issued.info.serial)
                .fingerprint(&issued.info.fingerprint),
            Outcome::Ok,
            Some(&detail),
        )?;
        crate::info!(
            "acme {}: version {version}, serial {}, valid until {}",
            cert.name,
            issued.info.serial,
            fmt_time(issued.info.not_after)
        );
        // Learn the new certificate's window now, so the next run needs no request.
        if ari != Some(false) {
            let info = issued.info.clone();
            let mut st = v.state.clone();
            match self.fetch_ari(&info, &mut st) {
                Ok(()) => {
                    v.state = st;
                    save_state(ctx, &cert.name, &v.state)?;
                }
                Err(e) => crate::warn!(
                    "acme {}: renewal information not available yet ({e}); asking on the next run",
                    cert.name
                ),
            }
        }
        Ok(version)
    }

    /// Runs the deploy hooks of a renewed certificate; a failure stays pending.
    fn deploy(&mut self, v: &mut View<'_>, reason: String) -> Action {
        let (ctx, cert) = (self.ctx, v.cert);
        let env = vec![
            ("RENEWED_LINEAGE".to_string(), v.lineage.live().display().to_string()),
            ("RENEWED_DOMAINS".to_string(), cert.domains.join(" ")),
            ("KEYWARD_CERTIFICATE".to_string(), cert.name.clone()),
        ];
        let mut error = None;
        for (i, hook) in cert.deploy_hooks.iter().enumerate() {
            let name = format!("{} deploy[{i}]", cert.name);
            if let Err(e) = hooks::run(&name, hook, Input { stdin: None, env: env.clone() }) {
                error = Some(AcmeError::Hook {
                    name: cert.name.clone(),
                    stage: "deploy",
                    source: Box::new(e),
                });
                break;
            }
        }
        let object = Object::new("acme-certificate", &cert.name);
        let object = match v.lineage.current_version() {
            Some(n) => object.version(u64::from(n)),
            None => object,
        };
        match error {
            None => {
                if !cert.deploy_hooks.is_empty() {
                    let _ = ctx.audit.append("acme deploy", object, Outcome::Ok, None);
                }
                if v.state.deploy_pending
                    || v.state.last_failure.as_ref().is_some_and(|f| f.stage == "deploy")
                {
                    v.state.deploy_pending = false;
                    v.state.last_failure = None;
                    let _ = save_state(ctx, &cert.name, &v.state);
                }
                Action {
                    object: cert.name.clone(),
                    action: "deploy".into(),
                    reason,
                    result: ActionResult::Done,
                }
            }
            Some(e) => {
                let msg = e.to_string();
                v.state.deploy_pending = true;
                v.state.last_failure = Some(Failure {
                    time: fmt_time(ctx.now),
                    stage: "deploy".into(),
                    error: msg.clone(),
                });
                let _ = save_state(ctx, &cert.name, &v.state);
                let _ = ctx.audit.append("acme deploy", object, Outcome::Failed, Some(&msg));
                Action {
                    object: cert.name.clone(),
                    action: "deploy".into(),
                    reason,
                    result: ActionResult::Failed {
                        error: format!("{msg}; the hooks run again on the next 'keyward run'"),
                    },
                }
            }
        }
    }
}

fn failed(cert: &CertificateConfig, action: &str, reason: &str, error: &str) -> Action {
    Action {
        object: cert.name.clone(),
        action: action.into(),
        reason: reason.into(),
        result: ActionResult::Failed { error: error.into() },
    }
}

/// The ACME step of `keyward run`.
pub fn run_due(ctx: &Context, dry_run: bool) -> Step {
    let Some(acme) = ctx.config.file.acme.as_ref() else {
        return Step::unconfigured("acme");
    };
    let mut step = Step::new("acme");
    step.actions =
        renew_selected(ctx, acme, &acme.certificates.iter().collect::<Vec<_>>(), false, dry_run);
    step
}

fn renew_selected(
    ctx: &Context,
    acme: &AcmeConfig,
    certs: &[&CertificateConfig],
    force: bool,
    dry_run: bool,
) -> Vec<Action> {
    let mut r = match Renewer::new(ctx, acme) {
        Ok(r) => r,
        Err(e) => {
            return certs
                .iter()
                .map(|c| failed(c, "renew", "cannot read the ACME state", &e.to_string()))
                .collect();
        }
    };
    let actions: Vec<Action> = certs.iter().filter_map(|c| r.process(c, force, dry_run)).collect();
    if let Some(Ok(s)) = &r.session {
        crate::debug!("acme: {} requests sent to {}", s.dir.requests(), s.dir.url());
    }
    actions
}

/// `keyward acme renew [NAME…|--all] [--force]`.
pub fn renew(ctx: &Context, names: &[String], force: bool) -> Result<Exit, Error> {
    let acme = section(ctx)?;
    let certs = select(acme, names)?;
    let _lock = ctx.lock()?;
    let mut step = Step::new("acme");
    step.actions = renew_selected(ctx, acme, &certs, force, false);
    let exit = step.exit();
    let summary = crate::run::Summary { dry_run: false, steps: vec![step], exit };
    crate::output::emit(ctx.format, &summary)
}

fn select<'a>(
    acme: &'a AcmeConfig,
    names: &[String],
) -> Result<Vec<&'a CertificateConfig>, AcmeError> {
    if names.is_empty() {
        return Ok(acme.certificates.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            acme.certificate(n).ok_or_else(|| AcmeError::UnknownCertificate {
                name: n.clone(),
                known: known(acme),
            })
        })
        .collect()
}

fn known(acme: &AcmeConfig) -> String {
    if acme.certificates.is_empty() {
        "none".into()
    } else {
        acme.certificates.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// One row of `keyward acme list`.
#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub name: String,
    pub domains: Vec<String>,
    pub challenge: &'static str,
    pub live: PathBuf,
    pub version: Option<u32>,
    pub serial: Option<String>,
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
    pub next: String,
    pub last_failure: Option<Failure>,
}

#[derive(Debug, Serialize)]
pub struct List {
    pub directory: String,
    pub account: Option<String>,
    pub certificates: Vec<ListEntry>,
}

impl Human for List {
    fn human(&self, out: &mut String) {
        out.push_str(&format!(
            "directory: {}\naccount: {}\n",
            self.directory,
            self.account
                .as_deref()
                .unwrap_or("none yet (made by the first renewal or 'keyward acme register')")
        ));
        let mut t = Table::new([
            "NAME",
            "DOMAINS",
            "CHALLENGE",
            "VERSION",
            "NOT AFTER",
            "DAYS",
            "NEXT",
            "LAST FAILURE",
        ]);
        for c in &self.certificates {
            t.row([
                c.name.clone(),
                c.domains.join(","),
                c.challenge.to_string(),
                c.version.map_or_else(|| "-".into(), |v| v.to_string()),
                c.not_after.clone().unwrap_or_else(|| "-".into()),
                c.days_left.map_or_else(|| "-".into(), |d| d.to_string()),
                c.next.clone(),
                c.last_failure
                    .as_ref()
                    .map_or_else(|| "-".into(), |f| format!("{} {}: {}", f.time, f.stage, f.error)),
            ]);
        }
        if t.is_empty() {
            out.push_str("no [[acme.certificate]] entries in keyward.toml\n");
        } else {
            t.render(out);
        }
    }
}

/// `keyward acme list`.
pub fn list(ctx: &Context) -> Result<Exit, Error> {
    let acme = section(ctx)?;
    let ari_known = load_dirs(ctx)?.get(acme.directory_url()).map(|d| d.renewal_info);
    let mut certificates = Vec::new();
    for cert in &acme.certificates {
        let v = view(ctx, acme, cert)?;
        let d = ari::decide(ctx.now, v.info.as_ref(), &cert.domains, &v.state, ari_known, false);
        certificates.push(ListEntry {
            name: cert.name.clone(),
            domains: cert.domains.clone(),
            challenge: cert.challenge.kind(),
            live: v.lineage.live(),
            version: v.lineage.current_version(),
            serial: v.info.as_ref().map(|i| i.serial.clone()),
            not_after: v.info.as_ref().map(|i| fmt_time(i.not_after)),
            days_left: v.info.as_ref().map(|i| days_until(ctx.now, i.not_after)),
            next: ari::next_action(ctx.now, &d),
            last_failure: v.state.last_failure.clone(),
        });
    }
    let account = account::read_meta(ctx, acme.directory_url())?.map(|m| m.url);
    crate::output::emit(
        ctx.format,
        &List { directory: acme.directory_url().to_string(), account, certificates },
    )
}

/// The result of `keyward acme register`.
#[derive(Debug, Serialize)]
pub struct Registered {
    pub directory: String,
    pub account: String,
    pub contact: Vec<String>,
    pub created: bool,
}

impl Human for Registered {
    fn human(&self, out: &mut String) {
        out.push_str(&format!(
            "{} account {}\ndirectory: {}\ncontact: {}\n",
            if self.created { "registered" } else { "loaded" },
            self.account,
            self.directory,
            if self.contact.is_empty() { "none".into() } else { self.contact.join(", ") }
        ));
    }
}

/// `keyward acme register [--email E] [--eab-kid K --eab-hmac-file F]`.
pub fn register(
    ctx: &Context,
    email: Option<String>,
    eab: Option<(String, PathBuf)>,
) -> Result<Exit, Error> {
    let acme = section(ctx)?;
    let _lock = ctx.lock()?;
    let contact = match &email {
        Some(e) => vec![e.clone()],
        None => acme.contact.clone(),
    };
    let eab =
        eab.map(|(kid, f)| account::Eab { kid, hmac_file: f }).or_else(|| config_eab(ctx, acme));
    let mut s = Session::new(ctx, acme)?;
    let result = s.account(ctx, acme, &contact, eab.as_ref()).map(|l| (l.meta.clone(), l.created));
    let (mut meta, created) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = ctx.audit.append(
                "acme register",
                Object::new("acme-account", acme.directory_url()),
                Outcome::Failed,
                Some(&e.to_string()),
            );
            return Err(e.into());
        }
    };
    let wanted = account::normalize_contact(&contact);
    if !created && email.is_some() && wanted != meta.contact {
        let Some(loaded) = s.account.as_ref() else {
            return Err(AcmeError::Internal("no account".into()).into());
        };
        let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
        s.rt.block_on(async { fault::retry_nonce!(loaded.account.update_contacts(&refs)) })
            .map_err(|e| fault::from_acme(&s.dir, "update the account's contact", e))?;
        meta.contact = wanted;
        account::save_meta(ctx, &meta)?;
        ctx.audit.append(
            "acme register",
            Object::new("acme-account", &meta.url),
            Outcome::Ok,
            Some("contact updated"),
        )?;
    }
    crate::output::emit(
        ctx.format,
        &Registered {
            directory: meta.directory,
            account: meta.url,
            contact: meta.contact,
            created,
        },
    )
}

/// The result of `keyward acme import`.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub name: String,
    pub from: PathBuf,
    pub live: PathBuf,
    pub version: u32,
    pub serial: String,
    pub not_after: String,
    pub domains: Vec<String>,
    /// certbot's renewal file, renamed so certbot stops renewing this lineage.
    pub certbot_renewal_disabled: Option<PathBuf>,
}

impl Human for Imported {
    fn human(&self, out: &mut String) {
        out.push_str(&format!(
            "imported {} (serial {}, valid until {}) from {}\nlive: {} (version {})\n",
            self.name,
            self.serial,
            self.not_after,
            self.from.display(),
            self.live.display(),
            self.version
        ));
        if let Some(p) = &self.certbot_renewal_disabled {
            out.push_str(&format!(
                "certbot will no longer renew it (renewal file moved to {})\n",
                p.display()
            ));
        }
        out.push_str("keyward renews it from now on: check with 'keyward acme list'\n");
    }
}

/// `keyward acme import NAME [--certbot-dir DIR] [--keep-certbot]`: takes over a
/// certbot lineage without a gap.
pub fn import(
    ctx: &Context,
    name: &str,
    certbot_dir: &std::path::Path,
    keep_certbot: bool,
) -> Result<Exit, Error> {
    let acme = section(ctx)?;
    let conf_path = certbot_dir.join("renewal").join(format!("{name}.conf"));
    let bad = |detail: String| AcmeError::Import { path: conf_path.clone(), detail };
    let text =
        std::fs::read_to_string(&conf_path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    let renewal = lineage::parse_certbot_renewal(&text);
    let live = certbot_dir.join("live").join(name);
    let pick =
        |p: &Option<PathBuf>, f: &str| p.clone().unwrap_or_else(|| live.join(format!("{f}.pem")));
    let read = |p: PathBuf| {
        std::fs::read(&p).map_err(|e| bad(format!("cannot read {} ({e})", p.display())))
    };
    let cert_pem = String::from_utf8(read(pick(&renewal.cert, "cert"))?)
        .map_err(|_| bad("cert.pem is not PEM".into()))?;
    let chain_pem = String::from_utf8(read(pick(&renewal.chain, "chain"))?)
        .map_err(|_| bad("chain.pem is not PEM".into()))?;
    let full_pem = String::from_utf8(read(pick(&renewal.fullchain, "fullchain"))?)
        .map_err(|_| bad("fullchain.pem is not PEM".into()))?;
    let key = crate::secret::SecretString::new(
        String::from_utf8(read(pick(&renewal.privkey, "privkey"))?)
            .map_err(|_| bad("privkey.pem is not PEM".into()))?,
    );
    let info = lineage::parse_cert(&cert_pem).map_err(|e| bad(format!("cert.pem: {e}")))?;
    let Some(cert) = acme.certificate(name) else {
        let snippet = certbot_snippet(name, &info, &renewal);
        return Err(Error::Usage(format!(
            "certificate {name:?} is not in keyward.toml yet; add it (this is what certbot used), then run the import again:\n\n{snippet}"
        )));
    };
    // The key must belong to the certificate, or the live lineage would not work.
    let kp =
        rcgen::KeyPair::from_pem(key.expose()).map_err(|e| bad(format!("privkey.pem: {e}")))?;
    if rcgen::PublicKeyData::subject_public_key_info(&kp) != info.spki {
        return Err(bad("privkey.pem does not belong to cert.pem".into()).into());
    }
    let _lock = ctx.lock()?;
    let target = Lineage::new(cert.output_base(acme, &ctx.config), name);
    let same_place =
        std::fs::canonicalize(&target.base).ok() == std::fs::canonicalize(certbot_dir).ok();
    let version = if same_place && target.current_version().is_some() {
        // keyward adopts the lineage in place; the next renewal adds version N+1.
        target.current_version().unwrap_or(1)
    } else {
        let key_mode = match &cert.key_group {
            Some(g) => match nix::unistd::Group::from_name(g).ok().flatten() {
                Some(gr) => FileMode { mode: 0o640, uid: None, gid: Some(gr.gid.as_raw()) },
                None => FileMode::PRIVATE,
            },
            None => FileMode::PRIVATE,
        };
        target.install(
            &lineage::Version {
                cert: &cert_pem,
                chain: &chain_pem,
                fullchain: &full_pem,
                privkey: &key,
            },
            key_mode,
            cert.keep(acme),
        )?
    };
    let mut state = load_state(ctx, name)?;
    state.serial = Some(info.serial.clone());
    state.ari = None;
    state.account = None;
    state.imported_from = Some(live.display().to_string());
    save_state(ctx, name, &state)?;
    let mut disabled = None;
    if !keep_certbot {
        let moved = conf_path.with_extension("conf.imported-by-keyward");
        std::fs::rename(&conf_path, &moved).map_err(|e| {
            bad(format!("cannot move it aside ({e}); certbot would keep renewing it"))
        })?;
        disabled = Some(moved);
    }
    ctx.audit.append(
        "acme import",
        Object::new("acme-certificate", name)
            .version(u64::from(version))
            .serial(&info.serial)
            .fingerprint(&info.fingerprint),
        Outcome::Ok,
        Some(&format!("from certbot lineage {}", live.display())),
    )?;
    crate::output::emit(
        ctx.format,
        &Imported {
            name: name.to_string(),
            from: live,
            live: target.live(),
            version,
            serial: info.serial.clone(),
            not_after: fmt_time(info.not_after),
            domains: info.domains.clone(),
            certbot_renewal_disabled: disabled,
        },
    )
}

fn certbot_snippet(name: &str, info: &CertInfo, r: &lineage::CertbotRenewal) -> String {
    let domains = info.domains.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>().join(", ");
    let challenge = match (
        r.authenticator.as_deref(),
        r.webroot_path.first().or(r.webroot_map.values().next()),
    ) {
        (Some("webroot"), Some(p)) => format!("{{ type = \"webroot\", webroot = {p:?} }}"),
        (Some("standalone"), _) => "{ type = \"standalone\", listen = \"0.0.0.0:80\" }".into(),
        _ => "{ type = \"webroot\", webroot = \"/var/www/certbot\" }".into(),
    };
    let key_type = match r.elliptic_curve.as_deref() {
        Some("secp384r1") => "p384",
        _ => "p256",
    };
    format!(
        "[[acme.certificate]]\nname = {name:?}\ndomains = [{domains}]\nchallenge = {challenge}\nkey_type = \"{key_type}\"\nreuse_key = {}\n",
        r.reuse_key
    )
}

/// The ACME lines of `keyward status`: every configured certificate and every
/// monitored file.
pub fn status(ctx: &Context) -> Result<Vec<Item>, Error> {
    let Some(acme) = ctx.config.file.acme.as_ref() else {
        return Ok(Vec::new());
    };
    let ari_known = match load_dirs(ctx) {
        Ok(d) => d.get(acme.directory_url()).map(|d| d.renewal_info),
        Err(e) => {
            crate::warn!("acme: {e}");
            None
        }
    };
    let mut items = Vec::new();
    for cert in &acme.certificates {
        let v = match view(ctx, acme, cert) {
            Ok(v) => v,
            Err(e) => {
                items.push(Item {
                    kind: "acme",
                    name: cert.name.clone(),
                    health: Health::Failing,
                    not_after: None,
                    days_left: None,
                    next_action: None,
                    version: None,
                    last_rotated: None,
                    note: e.to_string(),
                });
                continue;
            }
        };
        let d = ari::decide(ctx.now, v.info.as_ref(), &cert.domains, &v.state, ari_known, false);
        let days = v.info.as_ref().map(|i| days_until(ctx.now, i.not_after));
        let health = if v.state.last_failure.is_some() {
            Health::Failing
        } else if v.info.as_ref().is_none_or(|i| i.not_after <= ctx.now) {
            Health::Overdue
        } else if matches!(d, Decision::Due(_)) {
            Health::DueSoon
        } else {
            Health::Healthy
        };
        let note = match (&v.state.last_failure, &v.info) {
            (Some(f), _) => format!("{} failed at {}: {}", f.stage, f.time, f.error),
            (None, Some(i)) => format!("serial {}, {}", i.serial, i.issuer),
            (None, None) => format!("not issued yet ({})", v.lineage.live().display()),
        };
        items.push(Item {
            kind: "acme",
            name: cert.name.clone(),
            health,
            not_after: v.info.as_ref().map(|i| fmt_time(i.not_after)),
            days_left: days,
            next_action: Some(match d {
                Decision::AskAri => "check renewal information on the next run".into(),
                other => ari::next_action(ctx.now, &other),
            }),
            version: v.lineage.current_version().map(u64::from),
            last_rotated: v.state.last_renewed.clone(),
            note,
        });
    }
    for path in &acme.monitor {
        let p = ctx.config.resolve(path);
        let parsed = std::fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|t| lineage::parse_cert(&t));
        items.push(match parsed {
            Ok(i) => {
                let days = days_until(ctx.now, i.not_after);
                Item {
                    kind: "certificate",
                    name: p.display().to_string(),
                    health: if i.not_after <= ctx.now {
                        Health::Overdue
                    } else if days < 30 {
                        Health::DueSoon
                    } else {
                        Health::Healthy
                    },
                    not_after: Some(fmt_time(i.not_after)),
                    days_left: Some(days),
                    next_action: None,
                    version: None,
                    last_rotated: None,
                    note: format!("monitored; serial {}, {}", i.serial, i.issuer),
                }
            }
            Err(e) => Item {
                kind: "certificate",
                name: p.display().to_string(),
                health: Health::Failing,
                not_after: None,
                days_left: None,
                next_action: None,
                version: None,
                last_rotated: None,
                note: format!("monitored file cannot be read: {e}"),
            },
        });
    }
    Ok(items)
}

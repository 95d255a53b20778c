//! The CA's operations: `ca init`, `issue`, `renew`, `revoke`, `regenerate`,
//! `retire-previous`, `list`, `show`, and the step of `keyward run` that creates the CA
//! on first use, issues missing leaves, renews due ones, refreshes CRLs, finishes an
//! interrupted regeneration and retries failed reloads.
//!
//! [`Ca`] is opened on a [`Context`] whose run lock the caller holds (commands take
//! it in `src/cli/ca.rs`; `keyward run` takes it once for every step). Operations
//! record what they did as [`Action`]s and in the audit log; one failed target or hook
//! does not stop the others. With `dry_run`, nothing is signed or written.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::CaError;
use super::authority::{self, Authority, CreatePlan, Manifest, Phase, RootKeyTo, Transition};
use super::config::{CaConfig, KeyType};
use super::crl::{self, Reason, Revocations, Revoked};
use super::deploy::{self, Ownership};
use super::inventory::{self, Index, LeafRecord, PastCert, TargetState};
use super::issue::{self, CertInfo};
use super::profile::{self, LeafSpec, Profiles, Usage};
use crate::audit::{Object, Outcome};
use crate::output::{Human, Table};
use crate::run::{Action, ActionResult};
use crate::secret::{SecretBytes, SecretString};
use crate::status::{Health, Item};
use crate::{Context, Exit};

/// A target to bring up to date.
struct Planned {
    name: String,
    dir_key: String,
    key: String,
    previous: TargetState,
    reload: Option<String>,
    cert: CertInfo,
    why: String,
}

/// A target with a new generation written, waiting for the commit point.
struct Job {
    p: Planned,
    prepared: deploy::Prepared,
}

fn to_json<T: Serialize>(v: &T, path: &std::path::Path) -> Result<Vec<u8>, CaError> {
    let mut b = serde_json::to_vec_pretty(v)
        .map_err(|e| CaError::Corrupt { path: path.to_path_buf(), detail: e.to_string() })?;
    b.push(b'\n');
    Ok(b)
}

/// A leaf to (re)issue: profile, spec, ad hoc, extra SANs, why, audit action.
type Work = (String, LeafSpec, bool, Vec<String>, String, &'static str);

/// The CA opened on a context.
pub struct Ca<'a> {
    pub ctx: &'a Context,
    pub cfg: &'a CaConfig,
    pub profiles: Profiles,
    pub deploy_root: PathBuf,
    pub manifest: Manifest,
    pub index: Index,
    authorities: BTreeMap<String, Authority>,
    revocations: BTreeMap<String, Revocations>,
    signer: Option<(String, rcgen::KeyPair)>,
    dry_run: bool,
    now: DateTime<Utc>,
    index_dirty: bool,
    /// Files written but not yet fsynced; synced before the index points at them.
    unsynced: Vec<PathBuf>,
    /// Audit records of operations done, appended at the next commit point.
    audit_buf: Vec<crate::audit::Entry>,
    /// State files replaced at the next commit point (CRLs, revocations).
    staged: Vec<(PathBuf, Vec<u8>, u32)>,
    /// Folders whose entries changed, fsynced at the next commit point.
    dirs_to_sync: Vec<PathBuf>,
    /// The manifest changed and is written at the next commit point.
    manifest_dirty: bool,
    /// CRLs signed in this process, by authority.
    crl_cache: BTreeMap<String, String>,
    /// Leaves issued since the last commit point (name, serial): their older files go
    /// once the index points at the new ones.
    issued: Vec<(String, String)>,
    /// New authority folders to rename into place at the next commit point.
    dir_renames: Vec<(PathBuf, PathBuf)>,
    /// Leaf files to write at the next commit point (before its fsync round).
    leaf_files: Vec<inventory::LeafFile>,
    /// Leaves issued in this process: (serial, material), so deploys need not read
    /// back what was just signed.
    leaf_cache: BTreeMap<String, (String, inventory::LeafMaterial)>,
    pub actions: Vec<Action>,
}

impl Drop for Ca<'_> {
    fn drop(&mut self) {
        // Commit points flush the audit records; this only catches an early return.
        if let Err(e) = self.flush_audit() {
            crate::warn!("cannot write the audit log: {e}");
        }
    }
}

/// `ca issue PROFILE [--name NAME] [--san …]`.
pub struct IssueRequest {
    pub profile: String,
    pub name: Option<String>,
    pub sans: Vec<String>,
}

/// What a CA command did.
#[derive(Debug, Serialize)]
pub struct Report {
    pub actions: Vec<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Human for Report {
    fn human(&self, out: &mut String) {
        let mut t = Table::new(["OBJECT", "ACTION", "RESULT", "WHY"]);
        for a in &self.actions {
            let r = match &a.result {
                ActionResult::Planned => "planned".to_string(),
                ActionResult::Done => "done".to_string(),
                ActionResult::Failed { error } => format!("FAILED: {error}"),
            };
            t.row([a.object.clone(), a.action.clone(), r, a.reason.clone()]);
        }
        if !t.is_empty() {
            t.render(out);
        }
        if let Some(n) = &self.note {
            out.push_str(n);
            out.push('\n');
        } else if t.is_empty() {
            out.push_str("nothing to do\n");
        }
    }

    fn exit(&self) -> Exit {
        if self.actions.iter().any(|a| matches!(a.result, ActionResult::Failed { .. })) {
            Exit::Failed
        } else {
            Exit::Ok
        }
    }
}

fn cert_object(name: &str, c: &CertInfo) -> Object {
    Object::new("certificate", name).serial(c.serial.clone()).fingerprint(c.fingerprint.clone())
}

fn ca_object(a: &Authority) -> Object {
    Object::new("ca", a.meta.id.clone())
        .serial(a.meta.signing.serial.clone())
        .fingerprint(a.meta.signing.fingerprint.clone())
}

impl<'a> Ca<'a> {
    /// Loads the configuration, the profiles, the manifest and the index. Writes nothing.
    pub fn open(ctx: &'a Context, dry_run: bool) -> Result<Ca<'a>, CaError> {
        let cfg = ctx.config.file.ca.as_ref().ok_or(CaError::NotConfigured)?;
        let profiles = profile::load(&ctx.config.resolve(&cfg.profiles), cfg)?;
        let mut ca = Ca {
            ctx,
            cfg,
            profiles,
            deploy_root: ctx.config.resolve(&cfg.deploy_root),
            manifest: authority::load_manifest(&ctx.store)?,
            index: inventory::load(&ctx.store)?,
            authorities: BTreeMap::new(),
            revocations: BTreeMap::new(),
            signer: None,
            dry_run,
            now: ctx.now,
            index_dirty: false,
            unsynced: Vec::new(),
            audit_buf: Vec::new(),
            staged: Vec::new(),
            dirs_to_sync: Vec::new(),
            manifest_dirty: false,
            crl_cache: BTreeMap::new(),
            issued: Vec::new(),
            dir_renames: Vec::new(),
            leaf_files: Vec::new(),
            leaf_cache: BTreeMap::new(),
            actions: Vec::new(),
        };
        for id in ca.manifest.trusted() {
            ca.authority(&id)?;
            ca.revs(&id)?;
        }
        Ok(ca)
    }

    // ----- state helpers -------------------------------------------------------

    fn authority(&mut self, id: &str) -> Result<Authority, CaError> {
        if let Some(a) = self.authorities.get(id) {
            return Ok(a.clone());
        }
        let a = authority::load(&self.ctx.store, id)?;
        self.authorities.insert(id.to_string(), a.clone());
        Ok(a)
    }

    fn current(&mut self) -> Result<Authority, CaError> {
        let id = self.manifest.current.clone().ok_or(CaError::NoCa)?;
        self.authority(&id)
    }

    fn revs_rel(id: &str) -> String {
        format!("ca/revocations/{id}.json")
    }

    fn crl_path(&self, id: &str) -> PathBuf {
        self.ctx.store.path("ca/crl").join(format!("{id}.pem"))
    }

    fn revs(&mut self, id: &str) -> Result<Revocations, CaError> {
        if let Some(r) = self.revocations.get(id) {
            return Ok(r.clone());
        }
        let r: Revocations = self.ctx.store.read_json(Self::revs_rel(id))?.unwrap_or_default();
        self.revocations.insert(id.to_string(), r.clone());
        Ok(r)
    }

    /// Records an operation; written to the audit log at the next commit point.
    fn audit(
        &mut self,
        action: &str,
        object: Object,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> Result<(), CaError> {
        self.audit_buf.push(crate::audit::Entry {
            action: action.to_string(),
            object,
            result: outcome,
            detail: detail.map(String::from),
        });
        Ok(())
    }

    fn flush_audit(&mut self) -> Result<(), CaError> {
        let entries = std::mem::take(&mut self.audit_buf);
        Ok(self.ctx.audit.append_batch(entries)?)
    }

    /// Makes the manifest durable, after the audit records of what led to it.
    fn write_manifest(&mut self) -> Result<(), CaError> {
        self.flush_audit()?;
        authority::write_manifest(&self.ctx.store, &self.manifest)
    }

    fn act(&mut self, object: &str, action: &str, reason: &str, result: ActionResult) {
        self.actions.push(Action {
            object: object.to_string(),
            action: action.to_string(),
            reason: reason.to_string(),
            result,
        });
    }

    /// Records a failed action (and audits it).
    pub fn fail(&mut self, object: &str, action: &str, reason: &str, e: &CaError) {
        let msg = e.to_string();
        crate::warn!("{action} {object}: {msg}");
        let _ = self.audit(action, Object::new("ca", object), Outcome::Failed, Some(&msg));
        self.act(object, action, reason, ActionResult::Failed { error: msg });
    }

    /// A commit point with no deployment.
    fn save_index(&mut self) -> Result<(), CaError> {
        self.commit(Vec::new(), None)
    }

    /// The commit point: (1) every file written since the last one (leaf files, new
    /// target generations) is fsynced, in parallel; (2) the targets are swapped to
    /// their new generations; (3) the audit records are appended; (4) the state files
    /// (CRLs, revocations, manifest, index) are written as temp files, fsynced and
    /// renamed; (5) the changed folders are fsynced. `advance` replaces the manifest
    /// only when nothing failed since `failed_before` actions.
    fn commit(
        &mut self,
        jobs: Vec<Job>,
        advance: Option<(usize, Manifest)>,
    ) -> Result<(), CaError> {
        if self.dry_run {
            return Ok(());
        }
        inventory::write_leaf_files(&std::mem::take(&mut self.leaf_files))?;
        let mut round1 = std::mem::take(&mut self.unsynced);
        round1.extend(jobs.iter().flat_map(|j| j.prepared.to_sync.iter().cloned()));
        super::durable::sync_all(&round1)?;
        let mut dirs = std::mem::take(&mut self.dirs_to_sync);
        // New authorities first: everything below may refer to them.
        for (tmp, dest) in std::mem::take(&mut self.dir_renames) {
            super::fault("authority-written");
            std::fs::rename(&tmp, &dest).map_err(|source| CaError::Io {
                op: "rename into place",
                path: dest.clone(),
                source,
            })?;
            if let Some(p) = dest.parent() {
                dirs.push(p.to_path_buf());
            }
        }
        let mut shown = Vec::new();
        // Each target swaps on its own; they are independent of one another.
        let results = super::durable::parallel(&jobs, |job| {
            super::fault("deploy-generation-written");
            deploy::commit(&job.prepared)
        });
        for (job, result) in jobs.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    let generation = job.prepared.generation.clone();
                    let changed = generation != job.p.previous.generation;
                    let pending = if changed {
                        job.p.reload.clone()
                    } else {
                        job.p.previous.reload_pending.clone()
                    };
                    if let Some(r) = self.index.leaves.get_mut(&job.p.name) {
                        r.targets.insert(
                            job.p.dir_key.clone(),
                            TargetState {
                                key: job.p.key.clone(),
                                generation,
                                reload_pending: pending,
                            },
                        );
                    }
                    self.index_dirty = true;
                    if changed {
                        self.audit(
                            "deploy",
                            cert_object(&job.p.name, &job.p.cert),
                            Outcome::Ok,
                            Some(&job.p.dir_key),
                        )?;
                        self.act(&job.p.dir_key, "deploy", &job.p.why, ActionResult::Done);
                    }
                    dirs.push(job.prepared.dir.clone());
                    shown.push(job.prepared);
                }
                Err(e) => {
                    self.deploy_failed(&job.p.name, &job.p.cert, &job.p.dir_key, &job.p.why, &e)
                }
            }
        }
        if let Some((failed_before, m)) = advance {
            let failed_now = self
                .actions
                .iter()
                .filter(|a| matches!(a.result, ActionResult::Failed { .. }))
                .count();
            if failed_now == failed_before {
                self.manifest = m;
                self.manifest_dirty = true;
            }
        }
        let mut files = std::mem::take(&mut self.staged);
        if self.manifest_dirty {
            let path = self.ctx.store.path(authority::MANIFEST);
            files.push((path.clone(), to_json(&self.manifest, &path)?, 0o600));
        }
        if self.index_dirty {
            let path = self.ctx.store.path(inventory::INDEX);
            files.push((path.clone(), to_json(&self.index, &path)?, 0o600));
        }
        // The audit records are appended while the state files are written; both are
        // durable before any state file is renamed into place.
        let entries = std::mem::take(&mut self.audit_buf);
        let audit = &self.ctx.audit;
        let (audited, temps) = std::thread::scope(|sc| {
            let a = sc.spawn(move || audit.append_batch(entries));
            let t = (|| -> Result<Vec<PathBuf>, CaError> {
                let mut temps = Vec::new();
                for (path, bytes, mode) in &files {
                    if let Some(parent) = path.parent() {
                        dirs.extend(super::durable::mkdir_private(parent)?);
                        dirs.push(parent.to_path_buf());
                    }
                    let tmp = super::durable::temp_beside(path);
                    let _ = std::fs::remove_file(&tmp);
                    super::durable::create(&tmp, bytes, *mode, None)?;
                    temps.push(tmp);
                }
                super::durable::sync_all(&temps)?;
                Ok(temps)
            })();
            (a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), t)
        });
        audited?;
        let temps = temps?;
        for ((path, _, _), tmp) in files.iter().zip(&temps) {
            std::fs::rename(tmp, path).map_err(|source| CaError::Io {
                op: "rename into place",
                path: path.clone(),
                source,
            })?;
        }
        self.manifest_dirty = false;
        self.index_dirty = false;
        super::durable::sync_all(&dirs)?;
        // Superseded keys are not kept once the index points at their successors.
        for (name, serial) in std::mem::take(&mut self.issued) {
            if self.index.leaves.get(&name).is_some_and(|r| r.cert.serial == serial) {
                inventory::prune_leaf_files(&self.ctx.store, &name, &serial);
            }
        }
        super::durable::parallel(&shown, deploy::cleanup);
        Ok(())
    }

    fn signer_for(&mut self, a: &Authority) -> Result<(), CaError> {
        if self.signer.as_ref().is_some_and(|(id, _)| id == &a.meta.id) {
            return Ok(());
        }
        let key = a.signing_key()?;
        self.signer = Some((a.meta.id.clone(), key));
        Ok(())
    }

    fn failed(&self) -> bool {
        self.actions.iter().any(|a| matches!(a.result, ActionResult::Failed { .. }))
    }

    // ----- the CA itself -------------------------------------------------------

    /// Takes a created authority into this operation: its folder is committed at the
    /// next commit point, its key stays in memory.
    fn adopt(&mut self, c: authority::Created) -> Authority {
        let id = c.authority.meta.id.clone();
        if let Some(p) = c.pending {
            self.unsynced.extend(p.to_sync);
            self.dir_renames.push((p.tmp, p.dest));
        }
        if let Some(k) = c.key {
            self.signer = Some((id.clone(), k));
        }
        self.authorities.insert(id, c.authority.clone());
        c.authority
    }

    fn root_to(
        &self,
        plan: &CreatePlan,
        passphrase: Option<&'a SecretString>,
    ) -> Result<Option<RootKeyTo<'a>>, CaError> {
        if !plan.two_tier {
            return Ok(None);
        }
        if plan.passphrase {
            let p = passphrase.ok_or_else(|| {
                CaError::Transition(
                    "this CA's root key is protected by a passphrase: run 'keyward ca regenerate --yes --root-passphrase-file FILE' to finish".into(),
                )
            })?;
            return Ok(Some(RootKeyTo::Passphrase(p)));
        }
        let rs = self.ctx.config.dr_recipients()?;
        if rs.is_empty() {
            return Err(CaError::NoRootProtection);
        }
        Ok(Some(RootKeyTo::Recipients(rs)))
    }

    /// `ca init`: creates the CA; refuses if one exists.
    pub fn init(
        &mut self,
        key_type: Option<KeyType>,
        two_tier: bool,
        passphrase: Option<&'a SecretString>,
    ) -> Result<(), CaError> {
        if let Some(id) = self
            .manifest
            .current
            .clone()
            .or_else(|| self.manifest.transition.as_ref().map(|t| t.new.clone()))
        {
            return Err(CaError::Exists { id });
        }
        let plan = CreatePlan {
            key_type: key_type.unwrap_or(self.cfg.key_type),
            two_tier,
            passphrase: passphrase.is_some(),
        };
        let root_to = self.root_to(&plan, passphrase)?;
        self.create_first(plan, root_to, "ca init")?;
        self.save_index()
    }

    fn create_first(
        &mut self,
        plan: CreatePlan,
        root_to: Option<RootKeyTo<'_>>,
        why: &str,
    ) -> Result<(), CaError> {
        let id = authority::new_id(self.now)?;
        if self.dry_run {
            self.act(&id, "create-ca", why, ActionResult::Planned);
            return Ok(());
        }
        let created = authority::create(&self.ctx.store, self.cfg, &id, &plan, root_to, self.now)?;
        let a = self.adopt(created);
        self.audit(
            "ca-create",
            ca_object(&a),
            Outcome::Ok,
            Some(&format!(
                "{} {}",
                plan.key_type,
                if plan.two_tier { "two-tier" } else { "single-tier" }
            )),
        )?;
        self.manifest.current = Some(id.clone());
        self.manifest_dirty = true;
        self.act(&id, "create-ca", why, ActionResult::Done);
        // Both become durable at the next commit point; until then the CA is unused.
        self.refresh_crl(&id, "first CRL")?;
        Ok(())
    }

    /// Signs a fresh CRL for authority `id`.
    fn refresh_crl(&mut self, id: &str, why: &str) -> Result<(), CaError> {
        if self.dry_run {
            self.act(&format!("crl {id}"), "refresh-crl", why, ActionResult::Planned);
            return Ok(());
        }
        let a = self.authority(id)?;
        let mut revs = self.revs(id)?;
        // Expired certificates need no entry any more.
        revs.revoked.retain(|r| r.not_after > self.now);
        revs.crl_number += 1;
        let next = self.now + Duration::days(i64::from(self.cfg.crl_validity_days));
        self.signer_for(&a)?;
        let key = &self.signer.as_ref().ok_or(CaError::NoCa)?.1;
        let pem = crl::sign(
            &a.cert_pem,
            key,
            &a.meta.signing,
            revs.crl_number,
            &revs.revoked,
            self.now,
            next,
        )?;
        revs.this_update = Some(self.now);
        revs.next_update = Some(next);
        let mut json = serde_json::to_vec_pretty(&revs).map_err(|e| CaError::Corrupt {
            path: self.ctx.store.path(Self::revs_rel(id)),
            detail: e.to_string(),
        })?;
        json.push(b'\n');
        let crl_path = self.crl_path(id);
        let revs_path = self.ctx.store.path(Self::revs_rel(id));
        self.staged.push((crl_path, pem.clone().into_bytes(), 0o644));
        self.staged.push((revs_path, json, 0o600));
        self.crl_cache.insert(id.to_string(), pem);
        self.revocations.insert(id.to_string(), revs.clone());
        self.audit("crl-sign", Object::new("crl", id).version(revs.crl_number), Outcome::Ok, None)?;
        self.act(&format!("crl {id}"), "refresh-crl", why, ActionResult::Done);
        Ok(())
    }

    fn bundle(&mut self) -> Result<String, CaError> {
        let mut s = String::new();
        for id in self.manifest.trusted() {
            s.push_str(&self.authority(&id)?.bundle_pem());
        }
        Ok(s)
    }

    fn crls(&mut self) -> Result<String, CaError> {
        let mut s = String::new();
        for id in self.manifest.trusted() {
            let a = self.authority(&id)?;
            if let Some(c) = self.crl_cache.get(&id) {
                s.push_str(c);
            } else {
                let path = self.crl_path(&id);
                match std::fs::read_to_string(&path) {
                    Ok(t) => s.push_str(&t),
                    Err(source) => return Err(CaError::Io { op: "read", path, source }),
                }
            }
            if let Some(r) = &a.root_crl_pem {
                s.push_str(r);
            }
        }
        Ok(s)
    }

    // ----- leaves --------------------------------------------------------------

    /// Issues (or reissues) one leaf with the current CA; the index is saved later.
    fn issue_leaf(
        &mut self,
        profile_name: &str,
        spec: LeafSpec,
        adhoc: bool,
        extra_sans: Vec<String>,
        action: &str,
        why: &str,
    ) -> Result<(), CaError> {
        let name = spec.name.clone();
        if self.dry_run {
            self.act(&name, action, why, ActionResult::Planned);
            return Ok(());
        }
        let profile = self.profiles.get(profile_name).cloned().ok_or_else(|| {
            CaError::Invalid(format!(
                "leaf {name} belongs to profile {profile_name:?}, which no longer exists"
            ))
        })?;
        let auth = self.current()?;
        let mut full = spec.clone();
        for s in &extra_sans {
            if !full.sans.contains(s) {
                full.sans.push(s.clone());
            }
        }
        let key = issue::generate_key(profile.key_type)?;
        let params = issue::leaf_params(
            &full,
            &self.cfg.organization,
            profile.usage,
            &profile.key_usage,
            self.now,
            profile.validity_days,
            auth.meta.signing.not_after,
        )?;
        self.signer_for(&auth)?;
        let signer = &self.signer.as_ref().ok_or(CaError::NoCa)?.1;
        let iss = issue::issuer(&auth.cert_pem, signer, &format!("leaf {name}"))?;
        let cert = params
            .signed_by(&key.pair, &iss)
            .map_err(|e| CaError::Sign { what: format!("leaf {name}"), message: e.to_string() })?;
        let info = issue::inspect(cert.der())
            .map_err(|d| CaError::Sign { what: format!("leaf {name}"), message: d })?;
        let cert_pem = cert.pem();
        let (file, dirs) = inventory::leaf_file_for(
            &self.ctx.store,
            &name,
            &info.serial,
            &cert_pem,
            key.pem.expose(),
        )?;
        self.unsynced.push(file.path.clone());
        self.dirs_to_sync.extend(dirs);
        self.leaf_files.push(file);
        self.leaf_cache.insert(
            name.clone(),
            (
                info.serial.clone(),
                inventory::LeafMaterial {
                    cert_pem,
                    key_pem: SecretBytes::from_slice(key.pem.expose().as_bytes()),
                },
            ),
        );
        self.issued.push((name.clone(), info.serial.clone()));
        let old = self.index.leaves.remove(&name);
        let mut history = Vec::new();
        let mut targets = BTreeMap::new();
        if let Some(o) = old {
            history = o.history;
            history.push(PastCert {
                serial: o.cert.serial,
                issuer: o.issuer,
                fingerprint: o.cert.fingerprint,
                not_after: o.cert.not_after,
            });
            history.retain(|h| h.not_after > self.now);
            targets = o.targets;
        }
        self.index.leaves.insert(
            name.clone(),
            LeafRecord {
                profile: profile_name.to_string(),
                spec,
                adhoc,
                extra_sans,
                issuer: auth.meta.id.clone(),
                key_type: profile.key_type,
                cert: info.clone(),
                revoked: false,
                hold: false,
                history,
                targets,
            },
        );
        self.index_dirty = true;
        self.audit(action, cert_object(&name, &info), Outcome::Ok, Some(why))?;
        self.act(&name, action, why, ActionResult::Done);
        super::fault("leaf-issued");
        Ok(())
    }

    /// Why leaf `name` must be (re)issued now, if it must.
    fn due_reason(&self, name: &str, profile: &str, spec: Option<&LeafSpec>) -> Option<String> {
        let Some(rec) = self.index.leaves.get(name) else {
            return Some("not issued yet".into());
        };
        if rec.hold {
            return None;
        }
        if rec.revoked {
            return Some("its certificate was revoked".into());
        }
        if self.manifest.current.as_deref() != Some(rec.issuer.as_str()) {
            return Some(format!("issued by CA {}, which is no longer current", rec.issuer));
        }
        if self.now >= rec.cert.not_after {
            return Some(format!("expired on {}", crate::util::fmt_time(rec.cert.not_after)));
        }
        if self.now >= rec.cert.renew_at() {
            return Some(format!(
                "2/3 of its lifetime passed on {}",
                crate::util::fmt_time(rec.cert.renew_at())
            ));
        }
        if let Some(spec) = spec {
            if spec != &rec.spec || rec.profile != profile {
                return Some("its profile changed".into());
            }
            if self.profiles.get(profile).is_some_and(|p| p.key_type != rec.key_type) {
                return Some("its profile's key type changed".into());
            }
        }
        None
    }

    /// Issues every declared leaf that is missing and renews every due one.
    fn renew_due(&mut self) -> Result<(), CaError> {
        let mut work: Vec<Work> = Vec::new();
        for (p, spec) in self.profiles.declared() {
            if let Some(why) = self.due_reason(&spec.name, &p.name, Some(spec)) {
                let (extra, action) = match self.index.leaves.get(&spec.name) {
                    Some(r) => (r.extra_sans.clone(), "renew"),
                    None => (Vec::new(), "issue"),
                };
                work.push((p.name.clone(), spec.clone(), false, extra, why, action));
            }
        }
        let adhoc: Vec<(String, LeafRecord)> = self
            .index
            .leaves
            .iter()
            .filter(|(_, r)| r.adhoc)
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        for (name, rec) in adhoc {
            if self.profiles.get(&rec.profile).is_none() {
                continue;
            }
            if let Some(why) = self.due_reason(&name, &rec.profile, None) {
                work.push((
                    rec.profile.clone(),
                    rec.spec.clone(),
                    true,
                    rec.extra_sans.clone(),
                    why,
                    "renew",
                ));
            }
        }
        for (profile, spec, adhoc, extra, why, action) in work {
            let name = spec.name.clone();
            if let Err(e) = self.issue_leaf(&profile, spec, adhoc, extra, action, &why) {
                self.fail(&name, action, &why, &e);
            }
        }
        // Committed by the deploy that follows (files synced, audit, index).
        Ok(())
    }

    // ----- deployment ----------------------------------------------------------

    fn content_key(&self, rec: &LeafRecord, layout: &str, own: Ownership) -> String {
        let mut s =
            format!("{layout}|{}|{:?}|{:?}|{:o}|", rec.cert.serial, own.uid, own.gid, own.key_mode);
        for id in self.manifest.trusted() {
            let n = self.revocations.get(&id).map_or(0, |r| r.crl_number);
            s.push_str(&format!("{id}:{n},"));
        }
        crate::util::sha256_hex(s.as_bytes())[..32].to_string()
    }

    fn ownership(&self, t: &profile::Target) -> Ownership {
        if self.cfg.chown {
            Ownership { uid: t.uid, gid: t.gid, key_mode: t.key_mode }
        } else {
            // Unprivileged: the files stay the caller's, and a key is never group-readable.
            Ownership { uid: None, gid: None, key_mode: t.key_mode & 0o700 }
        }
    }

    /// Brings every target of every leaf up to date, then runs the reload hooks of the
    /// targets that changed (each hook once). All new generations are written, then
    /// fsynced together, then shown one target at a time.
    fn deploy_all(&mut self) -> Result<(), CaError> {
        self.deploy_all_then(None)
    }

    /// [`Ca::deploy_all`], and `advance` becomes the manifest if nothing failed.
    fn deploy_all_then(&mut self, advance: Option<Manifest>) -> Result<(), CaError> {
        let failed_before =
            self.actions.iter().filter(|a| matches!(a.result, ActionResult::Failed { .. })).count();
        let names: Vec<String> = self.index.leaves.keys().cloned().collect();
        let mut bundle: Option<String> = None;
        let mut crls: Option<String> = None;
        let mut chain: BTreeMap<String, String> = BTreeMap::new();
        let mut planned: Vec<(Planned, PathBuf, Vec<deploy::File>, Ownership)> = Vec::new();
        for name in names {
            let Some(rec) = self.index.leaves.get(&name).cloned() else { continue };
            let Some(profile) = self.profiles.get(&rec.profile).cloned() else { continue };
            for t in &profile.targets {
                let dir = t.dir_for(&self.deploy_root, &rec.spec);
                let dir_key = dir.to_string_lossy().into_owned();
                let own = self.ownership(t);
                let key = self.content_key(&rec, t.layout.as_str(), own);
                let state = rec.targets.get(&dir_key).cloned().unwrap_or_default();
                if state.key == key
                    && deploy::current_generation(&dir).as_deref()
                        == Some(state.generation.as_str())
                {
                    continue;
                }
                let why = format!("{name} ({})", t.layout.as_str());
                if self.dry_run {
                    self.act(&dir_key, "deploy", &why, ActionResult::Planned);
                    continue;
                }
                let files = (|| -> Result<Vec<deploy::File>, CaError> {
                    if bundle.is_none() {
                        bundle = Some(self.bundle()?);
                        crls = Some(self.crls()?);
                    }
                    if !chain.contains_key(&rec.issuer) {
                        let a = self.authority(&rec.issuer)?;
                        chain.insert(rec.issuer.clone(), a.chain_pem().to_string());
                    }
                    let m = match self.leaf_cache.get(&name) {
                        Some((serial, m)) if *serial == rec.cert.serial => {
                            inventory::LeafMaterial {
                                cert_pem: m.cert_pem.clone(),
                                key_pem: m.key_pem.clone(),
                            }
                        }
                        _ => inventory::read_leaf(&self.ctx.store, &name, &rec.cert.serial)?,
                    };
                    let material = deploy::Material {
                        cert: &m.cert_pem,
                        key: &m.key_pem,
                        chain: chain.get(&rec.issuer).map_or("", String::as_str),
                        bundle: bundle.as_deref().unwrap_or_default(),
                        crl: crls.as_deref().unwrap_or_default(),
                    };
                    Ok(deploy::files(t.layout, &material))
                })();
                match files {
                    Ok(files) => planned.push((
                        Planned {
                            name: name.clone(),
                            dir_key,
                            key,
                            previous: state,
                            reload: t.reload.clone(),
                            cert: rec.cert.clone(),
                            why,
                        },
                        dir,
                        files,
                        own,
                    )),
                    Err(e) => self.deploy_failed(&name, &rec.cert, &dir_key, &why, &e),
                }
            }
        }
        // The generation folders of all targets are written concurrently.
        let results = super::durable::parallel(&planned, |(_, dir, files, own)| {
            deploy::prepare(dir, files, *own)
        });
        let mut jobs = Vec::new();
        for ((p, _, _, _), r) in planned.into_iter().zip(results) {
            match r {
                Ok(prepared) => jobs.push(Job { p, prepared }),
                Err(e) => self.deploy_failed(&p.name, &p.cert, &p.dir_key, &p.why, &e),
            }
        }
        self.commit(jobs, advance.map(|m| (failed_before, m)))?;
        self.run_hooks()
    }

    fn deploy_failed(
        &mut self,
        name: &str,
        cert: &CertInfo,
        dir_key: &str,
        why: &str,
        e: &CaError,
    ) {
        let msg = e.to_string();
        crate::warn!("deploy {dir_key}: {msg}");
        let _ = self.audit(
            "deploy",
            cert_object(name, cert),
            Outcome::Failed,
            Some(&format!("{dir_key}: {msg}")),
        );
        self.act(dir_key, "deploy", why, ActionResult::Failed { error: msg });
    }

    fn run_hooks(&mut self) -> Result<(), CaError> {
        let mut pending: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (name, rec) in &self.index.leaves {
            for (dir, st) in &rec.targets {
                if let Some(h) = &st.reload_pending {
                    pending.entry(h.clone()).or_default().push((name.clone(), dir.clone()));
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        for (hook_name, targets) in pending {
            let what = targets.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>().join(", ");
            if self.dry_run {
                self.act(&hook_name, "reload", &what, ActionResult::Planned);
                continue;
            }
            let Some(hook) = self.cfg.hooks.get(&hook_name) else {
                let e = CaError::Invalid(format!(
                    "reload hook {hook_name:?} is no longer in keyward.toml [ca.hooks]"
                ));
                self.fail(&hook_name, "reload", &what, &e);
                continue;
            };
            let env = vec![
                ("KEYWARD_HOOK".to_string(), hook_name.clone()),
                ("KEYWARD_TARGETS".to_string(), what.clone()),
            ];
            match crate::hooks::run(&hook_name, hook, crate::hooks::Input { stdin: None, env }) {
                Ok(()) => {
                    for (name, dir) in &targets {
                        if let Some(st) =
                            self.index.leaves.get_mut(name).and_then(|r| r.targets.get_mut(dir))
                        {
                            st.reload_pending = None;
                        }
                    }
                    self.index_dirty = true;
                    self.audit(
                        "reload",
                        Object::new("hook", hook_name.clone()),
                        Outcome::Ok,
                        Some(&what),
                    )?;
                    self.act(&hook_name, "reload", &what, ActionResult::Done);
                }
                Err(e) => {
                    let msg = format!("{e}; keyward retries it on the next run");
                    crate::warn!("{msg}");
                    self.audit(
                        "reload",
                        Object::new("hook", hook_name.clone()),
                        Outcome::Failed,
                        Some(&msg),
                    )?;
                    self.act(&hook_name, "reload", &what, ActionResult::Failed { error: msg });
                }
            }
        }
        self.save_index()
    }

    // ----- keyward run ---------------------------------------------------------

    /// Everything due: the CA on first run, an interrupted regeneration, CRLs, leaves,
    /// deployments and owed reloads.
    pub fn reconcile(&mut self) -> Result<(), CaError> {
        if self.manifest.current.is_none() && self.manifest.transition.is_none() {
            let plan =
                CreatePlan { key_type: self.cfg.key_type, two_tier: false, passphrase: false };
            self.create_first(plan, None, "no CA yet")?;
            if self.dry_run {
                for (_, spec) in self.profiles.declared() {
                    self.actions.push(Action {
                        object: spec.name.clone(),
                        action: "issue".into(),
                        reason: "not issued yet".into(),
                        result: ActionResult::Planned,
                    });
                }
                return Ok(());
            }
        }
        if self.manifest.transition.is_some() {
            if self.dry_run {
                let t = self.manifest.transition.clone();
                if let Some(t) = t {
                    self.act(
                        &t.new,
                        "regenerate",
                        &format!("interrupted in phase {:?}", t.phase),
                        ActionResult::Planned,
                    );
                }
                return Ok(());
            }
            self.continue_transition(None)?;
        }
        for id in self.manifest.trusted() {
            if let Some(why) = self.revs(&id)?.due(self.now)
                && let Err(e) = self.refresh_crl(&id, &why)
            {
                self.fail(&format!("crl {id}"), "refresh-crl", &why, &e);
            }
        }
        self.renew_due()?;
        self.deploy_all()
    }

    // ----- regenerate ----------------------------------------------------------

    /// `ca regenerate --yes`: starts (or resumes) the replacement of the CA.
    pub fn regenerate(
        &mut self,
        yes: bool,
        key_type: Option<KeyType>,
        passphrase: Option<&'a SecretString>,
    ) -> Result<(), CaError> {
        if !yes {
            return Err(CaError::NotConfirmed);
        }
        match &self.manifest.transition {
            Some(t) => {
                crate::info!(
                    "resuming the interrupted regeneration (new CA {}, phase {:?})",
                    t.new,
                    t.phase
                );
                if key_type.is_some_and(|k| k != t.plan.key_type) {
                    crate::warn!(
                        "the interrupted regeneration keeps its key type {}",
                        t.plan.key_type
                    );
                }
            }
            None => {
                let cur = self.current()?;
                let plan = CreatePlan {
                    key_type: key_type.unwrap_or(cur.meta.key_type),
                    two_tier: cur.meta.two_tier,
                    passphrase: cur.meta.two_tier && passphrase.is_some(),
                };
                // Refuse before anything is written when the root cannot be protected.
                self.root_to(&plan, passphrase)?;
                let id = authority::new_id(self.now)?;
                self.manifest.transition = Some(Transition {
                    new: id.clone(),
                    phase: Phase::Creating,
                    plan,
                    started: self.now,
                });
                self.write_manifest()?;
                self.audit(
                    "regenerate-start",
                    Object::new("ca", id),
                    Outcome::Ok,
                    Some(&format!("replaces {}", cur.meta.id)),
                )?;
                super::fault("regenerate-started");
            }
        }
        self.continue_transition(passphrase)
    }

    fn continue_transition(&mut self, passphrase: Option<&'a SecretString>) -> Result<(), CaError> {
        while let Some(t) = self.manifest.transition.clone() {
            match t.phase {
                Phase::Creating => {
                    let root_to = self.root_to(&t.plan, passphrase)?;
                    let fresh = !authority::exists(&self.ctx.store, &t.new);
                    let created = authority::create(
                        &self.ctx.store,
                        self.cfg,
                        &t.new,
                        &t.plan,
                        root_to,
                        self.now,
                    )?;
                    let a = self.adopt(created);
                    if fresh {
                        self.audit("ca-create", ca_object(&a), Outcome::Ok, Some("ca regenerate"))?;
                    } else {
                        // Made by an interrupted run, whose record may not have been written.
                        self.audit(
                            "ca-adopt",
                            ca_object(&a),
                            Outcome::Ok,
                            Some("ca regenerate resumed with the authority an interrupted run created"),
                        )?;
                    }
                    self.act(&t.new, "create-ca", "ca regenerate", ActionResult::Done);
                    self.authorities.insert(t.new.clone(), a);
                    let mut previous = Vec::new();
                    if let Some(c) = self.manifest.current.take()
                        && c != t.new
                    {
                        previous.push(c);
                    }
                    previous
                        .extend(self.manifest.previous.iter().filter(|p| **p != t.new).cloned());
                    self.manifest.previous = previous;
                    self.manifest.current = Some(t.new.clone());
                    self.manifest.transition =
                        Some(Transition { phase: Phase::Bundles, ..t.clone() });
                    // Written with the first commit of the next phase.
                    self.manifest_dirty = true;
                    super::fault("manifest-switched");
                }
                Phase::Bundles => {
                    if self.revs(&t.new)?.next_update.is_none() {
                        self.refresh_crl(&t.new, "first CRL")?;
                    }
                    for id in self.manifest.previous.clone() {
                        if let Some(why) = self.revs(&id)?.due(self.now) {
                            self.refresh_crl(&id, &why)?;
                        }
                    }
                    // Every peer trusts old and new before any certificate changes; the
                    // next phase is recorded only when every target has both.
                    let mut next = self.manifest.clone();
                    next.transition = Some(Transition { phase: Phase::Leaves, ..t.clone() });
                    self.deploy_all_then(Some(next))?;
                    if self.failed() {
                        return Err(CaError::Incomplete(
                            "the transition trust bundles did not reach every target (see above); fix it and run 'keyward ca regenerate --yes' again".into(),
                        ));
                    }
                    super::fault("bundles-deployed");
                }
                Phase::Leaves => {
                    let stale: Vec<(String, LeafRecord)> = self
                        .index
                        .leaves
                        .iter()
                        .filter(|(_, r)| r.issuer != t.new && !r.hold)
                        .map(|(n, r)| (n.clone(), r.clone()))
                        .collect();
                    for (name, rec) in stale {
                        if self.profiles.get(&rec.profile).is_none() {
                            continue;
                        }
                        let spec = match self.profiles.find_leaf(&name) {
                            Some((_, s)) if !rec.adhoc => s.clone(),
                            _ => rec.spec.clone(),
                        };
                        let why = format!("ca regenerate: issued by {}", rec.issuer);
                        if let Err(e) = self.issue_leaf(
                            &rec.profile,
                            spec,
                            rec.adhoc,
                            rec.extra_sans.clone(),
                            "renew",
                            &why,
                        ) {
                            self.fail(&name, "renew", &why, &e);
                        }
                    }
                    let mut done = self.manifest.clone();
                    done.transition = None;
                    self.deploy_all_then(Some(done))?;
                    if self.failed() {
                        return Err(CaError::Incomplete(
                            "some certificates were not reissued or deployed (see above); fix it and run 'keyward ca regenerate --yes' again".into(),
                        ));
                    }
                    let a = self.current()?;
                    self.audit("regenerate", ca_object(&a), Outcome::Ok, Some("every leaf reissued; previous CA still trusted until 'ca retire-previous'"))?;
                    self.act(
                        &t.new,
                        "regenerate",
                        "every leaf reissued and deployed",
                        ActionResult::Done,
                    );
                }
            }
        }
        Ok(())
    }

    /// `ca retire-previous`: drops every previous CA from the bundles and redeploys.
    pub fn retire_previous(&mut self) -> Result<Option<String>, CaError> {
        if let Some(t) = &self.manifest.transition {
            return Err(CaError::Transition(format!(
                "a regeneration is still under way (new CA {}): finish it with 'keyward ca regenerate --yes' first",
                t.new
            )));
        }
        if self.manifest.previous.is_empty() {
            return Ok(Some("no previous CA to retire".into()));
        }
        let current = self.manifest.current.clone().unwrap_or_default();
        let still: Vec<&String> =
            self.index.leaves.iter().filter(|(_, r)| r.issuer != current).map(|(n, _)| n).collect();
        if !still.is_empty() {
            crate::warn!(
                "these leaves were issued by a previous CA and stop being trusted: {}",
                still.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        let prev = std::mem::take(&mut self.manifest.previous);
        self.manifest.retired.extend(prev.iter().cloned());
        self.manifest_dirty = true;
        for id in &prev {
            let a = self.authority(id)?;
            self.audit("retire-previous", ca_object(&a), Outcome::Ok, None)?;
            self.act(id, "retire", "dropped from every trust bundle", ActionResult::Done);
        }
        self.deploy_all()?;
        Ok(None)
    }

    // ----- issue, renew, revoke -------------------------------------------------

    /// `ca issue`.
    pub fn issue(&mut self, req: &IssueRequest) -> Result<(), CaError> {
        let profile =
            self.profiles.get(&req.profile).cloned().ok_or_else(|| CaError::UnknownProfile {
                name: req.profile.clone(),
                dir: self.ctx.config.resolve(&self.cfg.profiles),
                known: self.profiles.by_name.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        self.current()?;
        for s in &req.sans {
            profile::check_san(s).map_err(|m| CaError::Invalid(format!("--san: {m}")))?;
        }
        let mut work: Vec<(LeafSpec, bool, Vec<String>)> = Vec::new();
        match &req.name {
            None => {
                if profile.leaves.is_empty() {
                    return Err(CaError::Invalid(format!(
                        "profile {} declares no leaf: give --name NAME",
                        profile.name
                    )));
                }
                for l in &profile.leaves {
                    let mut extra = self
                        .index
                        .leaves
                        .get(&l.name)
                        .map(|r| r.extra_sans.clone())
                        .unwrap_or_default();
                    extra.extend(
                        req.sans.iter().filter(|s| !extra.contains(s)).cloned().collect::<Vec<_>>(),
                    );
                    work.push((l.clone(), false, extra));
                }
            }
            Some(name) => {
                profile::check_name(name).map_err(|m| CaError::Invalid(format!("--name: {m}")))?;
                if let Some(l) = profile.leaves.iter().find(|l| &l.name == name) {
                    let mut extra = self
                        .index
                        .leaves
                        .get(name)
                        .map(|r| r.extra_sans.clone())
                        .unwrap_or_default();
                    extra.extend(
                        req.sans.iter().filter(|s| !extra.contains(s)).cloned().collect::<Vec<_>>(),
                    );
                    work.push((l.clone(), false, extra));
                } else if let Some((other, _)) = self.profiles.find_leaf(name) {
                    return Err(CaError::Invalid(format!(
                        "leaf {name} is declared by profile {}, not {}",
                        other.name, profile.name
                    )));
                } else if self.index.leaves.get(name).is_some_and(|r| r.profile != profile.name) {
                    return Err(CaError::Invalid(format!(
                        "leaf {name} already exists in another profile"
                    )));
                } else {
                    if !profile
                        .targets
                        .iter()
                        .all(|t| t.dir.contains("{name}") || t.dir.contains("{common_name}"))
                    {
                        return Err(CaError::Invalid(format!(
                            "profile {}'s targets have no {{name}} in their folder, so another leaf would overwrite the declared one",
                            profile.name
                        )));
                    }
                    if profile.usage == Usage::Server && req.sans.is_empty() {
                        return Err(CaError::Invalid(
                            "a server certificate needs at least one --san".into(),
                        ));
                    }
                    work.push((
                        LeafSpec {
                            name: name.clone(),
                            common_name: name.clone(),
                            sans: Vec::new(),
                        },
                        true,
                        req.sans.clone(),
                    ));
                }
            }
        }
        for (spec, adhoc, extra) in work {
            let name = spec.name.clone();
            let action = if self.index.leaves.contains_key(&name) { "reissue" } else { "issue" };
            if let Err(e) = self.issue_leaf(&profile.name, spec, adhoc, extra, action, "ca issue") {
                self.fail(&name, action, "ca issue", &e);
            }
        }
        self.deploy_all()
    }

    /// `ca renew`.
    pub fn renew(&mut self, names: &[String], force: bool) -> Result<(), CaError> {
        self.current()?;
        if names.is_empty() {
            if force {
                let all: Vec<String> = self.index.leaves.keys().cloned().collect();
                return self.renew(&all, true);
            }
            self.renew_due()?;
            return self.deploy_all();
        }
        for n in names {
            if !self.index.leaves.contains_key(n) && self.profiles.find_leaf(n).is_none() {
                return Err(CaError::UnknownLeaf(n.clone()));
            }
        }
        for n in names {
            let (profile, spec, adhoc, extra) =
                match (self.index.leaves.get(n), self.profiles.find_leaf(n)) {
                    (Some(r), Some((p, s))) => {
                        (p.name.clone(), s.clone(), false, r.extra_sans.clone())
                    }
                    (Some(r), None) => {
                        (r.profile.clone(), r.spec.clone(), r.adhoc, r.extra_sans.clone())
                    }
                    (None, Some((p, s))) => (p.name.clone(), s.clone(), false, Vec::new()),
                    (None, None) => continue,
                };
            let why = if force {
                Some("--force".to_string())
            } else {
                self.due_reason(n, &profile, if adhoc { None } else { Some(&spec) })
            };
            if let Some(why) = why
                && let Err(e) = self.issue_leaf(&profile, spec, adhoc, extra, "renew", &why)
            {
                self.fail(n, "renew", &why, &e);
            }
        }
        self.deploy_all()
    }

    /// `ca revoke NAME|SERIAL`.
    pub fn revoke(
        &mut self,
        target: &str,
        reason: Reason,
        no_reissue: bool,
    ) -> Result<(), CaError> {
        // (leaf name, serial, issuer, fingerprint, not_after, is the leaf's current cert)
        let found = if let Some(r) = self.index.leaves.get(target) {
            Some((
                target.to_string(),
                r.cert.serial.clone(),
                r.issuer.clone(),
                r.cert.fingerprint.clone(),
                r.cert.not_after,
                true,
            ))
        } else {
            let serial = issue::normalise_serial(target);
            self.index.leaves.iter().find_map(|(n, r)| {
                if r.cert.serial == serial {
                    Some((
                        n.clone(),
                        serial.clone(),
                        r.issuer.clone(),
                        r.cert.fingerprint.clone(),
                        r.cert.not_after,
                        true,
                    ))
                } else {
                    r.history.iter().find(|h| h.serial == serial).map(|h| {
                        (
                            n.clone(),
                            serial.clone(),
                            h.issuer.clone(),
                            h.fingerprint.clone(),
                            h.not_after,
                            false,
                        )
                    })
                }
            })
        };
        let (name, serial, issuer, fingerprint, not_after, is_current) =
            found.ok_or_else(|| CaError::UnknownLeaf(target.to_string()))?;
        if !self.manifest.trusted().contains(&issuer) {
            return Err(CaError::Invalid(format!(
                "certificate {serial} was issued by CA {issuer}, which is retired and trusted nowhere: there is nothing to revoke"
            )));
        }
        if self.revs(&issuer)?.is_revoked(&serial) {
            return Err(CaError::AlreadyRevoked { name, serial });
        }
        let mut revs = self.revs(&issuer)?;
        revs.revoked.push(Revoked {
            serial: serial.clone(),
            name: name.clone(),
            time: self.now,
            reason,
            not_after,
        });
        self.revocations.insert(issuer.clone(), revs);
        self.refresh_crl(&issuer, &format!("revoked {name} ({serial})"))?;
        let obj = Object::new("certificate", name.clone())
            .serial(serial.clone())
            .fingerprint(fingerprint);
        self.audit("revoke", obj, Outcome::Ok, Some(&format!("{reason:?}")))?;
        self.act(
            &name,
            "revoke",
            &format!("serial {serial}, reason {reason:?}"),
            ActionResult::Done,
        );
        if is_current {
            let rec = self
                .index
                .leaves
                .get_mut(&name)
                .ok_or_else(|| CaError::UnknownLeaf(name.clone()))?;
            rec.revoked = true;
            rec.hold = no_reissue || rec.adhoc;
            let (hold, profile, spec, adhoc, extra) = (
                rec.hold,
                rec.profile.clone(),
                rec.spec.clone(),
                rec.adhoc,
                rec.extra_sans.clone(),
            );
            self.index_dirty = true;
            if !hold {
                let spec = self.profiles.find_leaf(&name).map(|(_, s)| s.clone()).unwrap_or(spec);
                if let Err(e) = self.issue_leaf(
                    &profile,
                    spec,
                    adhoc,
                    extra,
                    "renew",
                    "replaces the revoked certificate",
                ) {
                    self.fail(&name, "renew", "replaces the revoked certificate", &e);
                }
            }
        }
        self.deploy_all()
    }

    // ----- inventory -----------------------------------------------------------

    pub fn inventory(&mut self) -> Result<Inventory, CaError> {
        let mut authorities = Vec::new();
        let trusted = self.manifest.trusted();
        for id in &trusted {
            let a = self.authority(id)?;
            let role =
                if Some(id) == self.manifest.current.as_ref() { "current" } else { "previous" };
            let revs = self.revs(id)?;
            authorities.push(AuthorityView::new(&a, role, &revs));
        }
        let mut leaves = Vec::new();
        for (name, r) in &self.index.leaves {
            leaves.push(LeafView::new(name, r, self.now, &self.revocations));
        }
        for (p, spec) in self.profiles.declared() {
            if !self.index.leaves.contains_key(&spec.name) {
                leaves.push(LeafView::missing(&p.name, spec));
            }
        }
        leaves.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Inventory { transition: self.manifest.transition.clone(), authorities, leaves })
    }

    pub fn show(&mut self, name: &str) -> Result<Detail, CaError> {
        if name == "ca" {
            return Ok(Detail::Ca(self.inventory()?));
        }
        let rec = self
            .index
            .leaves
            .get(name)
            .cloned()
            .ok_or_else(|| CaError::UnknownLeaf(name.to_string()))?;
        let view = LeafView::new(name, &rec, self.now, &self.revocations);
        // Read back from the stored certificate, not from the index.
        let m = inventory::read_leaf(&self.ctx.store, name, &rec.cert.serial)?;
        let der = issue::pem_to_der(&m.cert_pem).map_err(|d| CaError::Corrupt {
            path: inventory::leaf_file(&self.ctx.store, name, &rec.cert.serial),
            detail: d,
        })?;
        let cert = issue::inspect(&der).map_err(|d| CaError::Corrupt {
            path: inventory::leaf_file(&self.ctx.store, name, &rec.cert.serial),
            detail: d,
        })?;
        let targets = rec
            .targets
            .iter()
            .map(|(d, s)| TargetView {
                dir: d.clone(),
                generation: s.generation.clone(),
                reload_pending: s.reload_pending.clone(),
            })
            .collect();
        Ok(Detail::Leaf(Box::new(LeafDetail {
            leaf: view,
            certificate: cert,
            certificate_pem: m.cert_pem,
            targets,
            history: rec.history,
        })))
    }

    pub fn status_items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let base = |kind: &'static str, name: String| Item {
            kind,
            name,
            health: Health::Healthy,
            not_after: None,
            days_left: None,
            next_action: None,
            version: None,
            last_rotated: None,
            note: String::new(),
        };
        if self.manifest.current.is_none() {
            let mut i = base("ca", "ca".into());
            i.health = Health::DueSoon;
            i.note = "no CA yet: 'keyward run' creates one".into();
            items.push(i);
        }
        if let Some(t) = &self.manifest.transition {
            let mut i = base("ca", format!("regeneration {}", t.new));
            i.health = Health::Failing;
            i.note = format!(
                "interrupted in phase {:?}: run 'keyward ca regenerate --yes' (or 'keyward run')",
                t.phase
            );
            items.push(i);
        }
        for id in self.manifest.trusted() {
            let Some(a) = self.authorities.get(&id) else { continue };
            let mut i = base("ca", id.clone());
            let s = &a.meta.signing;
            let days = crate::util::days_until(self.now, s.not_after);
            i.not_after = Some(crate::util::fmt_time(s.not_after));
            i.days_left = Some(days);
            let life = (s.not_after - s.not_before).num_days().max(1);
            if days < life / 10 {
                i.health = Health::DueSoon;
                i.next_action = Some("plan 'keyward ca regenerate --yes'".into());
            }
            let role =
                if Some(&id) == self.manifest.current.as_ref() { "current" } else { "previous" };
            i.note = format!(
                "{role}, {}, {}, serial {}",
                a.meta.key_type,
                if a.meta.two_tier { "two-tier" } else { "single-tier" },
                s.serial
            );
            items.push(i);
            if let Some(r) = self.revocations.get(&id) {
                let mut c = base("crl", id.clone());
                if let (Some(t), Some(n)) = (r.this_update, r.next_update) {
                    c.not_after = Some(crate::util::fmt_time(n));
                    c.days_left = Some(crate::util::days_until(self.now, n));
                    c.next_action =
                        Some(format!("re-sign at {}", crate::util::fmt_time(t + (n - t) / 2)));
                    if self.now >= n {
                        c.health = Health::Overdue;
                    }
                } else {
                    c.health = Health::DueSoon;
                }
                c.version = Some(r.crl_number);
                c.note = format!("{} revoked", r.revoked.len());
                items.push(c);
            }
            if let Some(root) = &a.meta.root {
                let mut c = base("crl", format!("{id} root"));
                c.not_after = Some(crate::util::fmt_time(root.not_after));
                c.days_left = Some(crate::util::days_until(self.now, root.not_after));
                c.note = "root CRL, valid as long as the root".into();
                items.push(c);
            }
        }
        for (name, r) in &self.index.leaves {
            let mut i = base("certificate", name.clone());
            i.not_after = Some(crate::util::fmt_time(r.cert.not_after));
            i.days_left = Some(crate::util::days_until(self.now, r.cert.not_after));
            i.next_action = Some(format!("renew at {}", crate::util::fmt_time(r.cert.renew_at())));
            i.note = format!("{}, serial {}", r.profile, r.cert.serial);
            if !r.adhoc && self.profiles.find_leaf(name).is_none() {
                i.note = format!(
                    "no longer declared by a profile: not renewed ('keyward ca revoke {name}' to revoke it); {}",
                    i.note
                );
            }
            if r.revoked {
                i.health = Health::Failing;
                i.note = format!(
                    "revoked{}; {}",
                    if r.hold { ", not reissued (--no-reissue)" } else { "" },
                    i.note
                );
            } else if self.now >= r.cert.not_after {
                i.health = Health::Overdue;
            } else if self.now >= r.cert.renew_at() {
                i.health = Health::DueSoon;
            }
            if self.manifest.current.as_deref() != Some(r.issuer.as_str()) {
                i.health = i.health.max(Health::DueSoon);
                i.note = format!("issued by non-current CA {}; {}", r.issuer, i.note);
            }
            if let Some(h) = r.targets.values().find_map(|t| t.reload_pending.clone()) {
                i.health = Health::Failing;
                i.note = format!("reload hook {h} has not succeeded yet; {}", i.note);
            }
            items.push(i);
        }
        for (p, spec) in self.profiles.declared() {
            if !self.index.leaves.contains_key(&spec.name) {
                let mut i = base("certificate", spec.name.clone());
                i.health = Health::DueSoon;
                i.note = format!("{}: not issued yet ('keyward run' issues it)", p.name);
                items.push(i);
            }
        }
        items
    }
}

/// `ca list`.
#[derive(Debug, Serialize)]
pub struct Inventory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transition: Option<Transition>,
    pub authorities: Vec<AuthorityView>,
    pub leaves: Vec<LeafView>,
}

#[derive(Debug, Serialize)]
pub struct AuthorityView {
    pub id: String,
    pub role: &'static str,
    pub key_type: KeyType,
    pub two_tier: bool,
    pub subject: String,
    pub serial: String,
    pub fingerprint: String,
    pub not_before: String,
    pub not_after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<CertInfo>,
    pub crl_number: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl_next_update: Option<String>,
    pub revoked: Vec<Revoked>,
}

impl AuthorityView {
    fn new(a: &Authority, role: &'static str, revs: &Revocations) -> AuthorityView {
        AuthorityView {
            id: a.meta.id.clone(),
            role,
            key_type: a.meta.key_type,
            two_tier: a.meta.two_tier,
            subject: a.meta.signing.subject.clone(),
            serial: a.meta.signing.serial.clone(),
            fingerprint: a.meta.signing.fingerprint.clone(),
            not_before: crate::util::fmt_time(a.meta.signing.not_before),
            not_after: crate::util::fmt_time(a.meta.signing.not_after),
            root: a.meta.root.clone(),
            crl_number: revs.crl_number,
            crl_next_update: revs.next_update.map(crate::util::fmt_time),
            revoked: revs.revoked.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LeafView {
    pub name: String,
    pub profile: String,
    pub common_name: String,
    pub sans: Vec<String>,
    pub adhoc: bool,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<String>,
}

impl LeafView {
    fn new(
        name: &str,
        r: &LeafRecord,
        now: DateTime<Utc>,
        revs: &BTreeMap<String, Revocations>,
    ) -> LeafView {
        let revoked =
            r.revoked || revs.get(&r.issuer).is_some_and(|x| x.is_revoked(&r.cert.serial));
        let state = if revoked {
            "revoked"
        } else if now >= r.cert.not_after {
            "expired"
        } else if now >= r.cert.renew_at() {
            "due"
        } else {
            "ok"
        };
        let mut sans = r.spec.sans.clone();
        sans.extend(r.extra_sans.iter().cloned());
        LeafView {
            name: name.to_string(),
            profile: r.profile.clone(),
            common_name: r.spec.common_name.clone(),
            sans,
            adhoc: r.adhoc,
            state,
            serial: Some(r.cert.serial.clone()),
            fingerprint: Some(r.cert.fingerprint.clone()),
            issuer: Some(r.issuer.clone()),
            not_after: Some(crate::util::fmt_time(r.cert.not_after)),
            days_left: Some(crate::util::days_until(now, r.cert.not_after)),
            renew_at: Some(crate::util::fmt_time(r.cert.renew_at())),
        }
    }

    fn missing(profile: &str, spec: &LeafSpec) -> LeafView {
        LeafView {
            name: spec.name.clone(),
            profile: profile.to_string(),
            common_name: spec.common_name.clone(),
            sans: spec.sans.clone(),
            adhoc: false,
            state: "not issued",
            serial: None,
            fingerprint: None,
            issuer: None,
            not_after: None,
            days_left: None,
            renew_at: None,
        }
    }
}

impl Human for Inventory {
    fn human(&self, out: &mut String) {
        if let Some(t) = &self.transition {
            out.push_str(&format!(
                "REGENERATION IN PROGRESS: new CA {} (phase {:?}); run 'keyward ca regenerate --yes' to finish\n",
                t.new, t.phase
            ));
        }
        let mut t = Table::new(["CA", "ROLE", "KEY", "TIERS", "NOT AFTER", "SERIAL"]);
        for a in &self.authorities {
            t.row([
                a.id.clone(),
                a.role.to_string(),
                a.key_type.to_string(),
                if a.two_tier { "root+intermediate" } else { "single" }.to_string(),
                a.not_after.clone(),
                a.serial.clone(),
            ]);
        }
        if t.is_empty() {
            out.push_str("no CA yet\n");
        } else {
            t.render(out);
        }
        out.push('\n');
        let mut t =
            Table::new(["LEAF", "PROFILE", "STATE", "NOT AFTER", "DAYS", "RENEW AT", "SERIAL"]);
        for l in &self.leaves {
            t.row([
                l.name.clone(),
                l.profile.clone(),
                l.state.to_string(),
                l.not_after.clone().unwrap_or_else(|| "-".into()),
                l.days_left.map_or_else(|| "-".into(), |d| d.to_string()),
                l.renew_at.clone().unwrap_or_else(|| "-".into()),
                l.serial.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        if t.is_empty() {
            out.push_str("no leaves\n");
        } else {
            t.render(out);
        }
    }
}

/// `ca show`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Ca(Inventory),
    Leaf(Box<LeafDetail>),
}

#[derive(Debug, Serialize)]
pub struct LeafDetail {
    pub leaf: LeafView,
    pub certificate: CertInfo,
    /// The public certificate (never the key).
    pub certificate_pem: String,
    pub targets: Vec<TargetView>,
    pub history: Vec<PastCert>,
}

#[derive(Debug, Serialize)]
pub struct TargetView {
    pub dir: String,
    pub generation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_pending: Option<String>,
}

impl Human for Detail {
    fn human(&self, out: &mut String) {
        match self {
            Detail::Ca(i) => i.human(out),
            Detail::Leaf(d) => {
                let c = &d.certificate;
                let l = &d.leaf;
                let mut lines = vec![
                    ("name", l.name.clone()),
                    ("profile", format!("{}{}", l.profile, if l.adhoc { " (ad hoc)" } else { "" })),
                    ("state", l.state.to_string()),
                    ("subject", c.subject.clone()),
                    (
                        "issuer",
                        format!("{} (CA {})", c.issuer, l.issuer.clone().unwrap_or_default()),
                    ),
                    ("serial", c.serial.clone()),
                    ("sha256", c.fingerprint.clone()),
                    ("not before", crate::util::fmt_time(c.not_before)),
                    ("not after", crate::util::fmt_time(c.not_after)),
                    ("renew at", crate::util::fmt_time(c.renew_at())),
                    ("SANs", c.sans.join(", ")),
                    ("EKU", c.ext_key_usage.join(", ")),
                    ("CA", if c.is_ca { "TRUE".into() } else { "FALSE".into() }),
                ];
                for t in &d.targets {
                    lines.push((
                        "target",
                        format!(
                            "{}{}",
                            t.dir,
                            t.reload_pending
                                .as_ref()
                                .map(|h| format!(" (reload {h} pending)"))
                                .unwrap_or_default()
                        ),
                    ));
                }
                for (k, v) in lines {
                    out.push_str(&format!("{k:<11} {v}\n"));
                }
            }
        }
    }
}

//! The ACME account: created once per directory, kept across runs, its key encrypted at
//! rest.
//!
//! The account credentials (account URL and P-256 private key, as instant-acme
//! serializes them) are encrypted with age to the machine key (the secret store's,
//! `secrets.machine_key`) and written 0600 under `state/acme/accounts/<directory-id>/`.
//! Beside them, `account.json` holds what is not secret (directory, account URL,
//! contact) so `list` and `status` never decrypt anything. This module never prints or
//! logs the key, and the EAB HMAC key is read from a private file, never from argv.

use std::path::{Path, PathBuf};

use base64::Engine;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::AcmeError;
use super::directory::AcmeDirectory;
use crate::Context;
use crate::store::{FileMode, atomic_write, ensure_private_dir, read_private};

/// The machine key that encrypts the account key at rest: the same key as the secret
/// store's (`secrets.machine_key`, kept outside the state folder). `in_use`: an account
/// encrypted to it exists, so a missing key is an error, never replaced.
fn machine_identity(ctx: &Context, in_use: bool) -> Result<age::x25519::Identity, AcmeError> {
    crate::secrets::machine_identity(ctx, in_use).map_err(|e| AcmeError::MachineKey {
        path: crate::secrets::machine_key_path(ctx).unwrap_or_default(),
        detail: e.to_string(),
    })
}

/// What is known about an account without decrypting it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountMeta {
    pub directory: String,
    pub url: String,
    #[serde(default)]
    pub contact: Vec<String>,
    pub created: String,
    #[serde(default)]
    pub eab_kid: Option<String>,
}

/// The folder of the account for `directory`.
pub fn account_dir(ctx: &Context, directory: &str) -> PathBuf {
    let id = &crate::util::sha256_hex(directory.as_bytes())[..16];
    ctx.store.path(format!("acme/accounts/{id}"))
}

pub fn read_meta(ctx: &Context, directory: &str) -> Result<Option<AccountMeta>, AcmeError> {
    let dir = account_dir(ctx, directory);
    let rel = dir.strip_prefix(ctx.store.root()).unwrap_or(&dir).join("account.json");
    Ok(ctx.store.read_json(rel)?)
}

/// Contact list as the server wants it (`mailto:` added to bare addresses).
pub fn normalize_contact(contact: &[String]) -> Vec<String> {
    contact
        .iter()
        .map(|c| if c.contains(':') { c.clone() } else { format!("mailto:{c}") })
        .collect()
}

/// An external account binding: key id and the HMAC key read from a private file.
pub struct Eab {
    pub kid: String,
    pub hmac_file: PathBuf,
}

fn read_eab(eab: &Eab) -> Result<ExternalAccountKey, AcmeError> {
    let bad = |detail: &str| AcmeError::Eab { path: eab.hmac_file.clone(), detail: detail.into() };
    let raw = Zeroizing::new(read_private(&eab.hmac_file)?);
    let text = std::str::from_utf8(&raw).map_err(|_| bad("not text"))?;
    let trimmed = text.trim().trim_end_matches('=');
    let key = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .map_err(|_| bad("not a base64url HMAC key"))?,
    );
    if key.is_empty() {
        return Err(bad("empty"));
    }
    Ok(ExternalAccountKey::new(eab.kid.clone(), &key))
}

/// The loaded account and whether this call created it.
pub struct Loaded {
    pub account: Account,
    pub meta: AccountMeta,
    pub created: bool,
}

/// Loads the account of `dir`, or registers one with `contact` and `eab`.
pub async fn load_or_create(
    ctx: &Context,
    dir: &dyn AcmeDirectory,
    contact: &[String],
    eab: Option<&Eab>,
) -> Result<Loaded, AcmeError> {
    let folder = account_dir(ctx, dir.url());
    let cred_path = folder.join("credentials.age");
    if let Some(meta) = read_meta(ctx, dir.url())?
        && cred_path.exists()
    {
        let identity = machine_identity(ctx, true)?;
        let sealed = read_private(&cred_path)?;
        let plain = Zeroizing::new(age::decrypt(&identity, &sealed).map_err(|e| {
            AcmeError::AccountKey { path: cred_path.clone(), detail: e.to_string() }
        })?);
        let creds: AccountCredentials = serde_json::from_slice(&plain).map_err(|e| {
            AcmeError::AccountKey { path: cred_path.clone(), detail: e.to_string() }
        })?;
        let account = Account::builder_with_http(dir.http_client())
            .from_credentials(creds)
            .await
            .map_err(|e| super::fault::from_acme(dir, "load the account", e))?;
        return Ok(Loaded { account, meta, created: false });
    }
    let contact = normalize_contact(contact);
    let refs: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eak = eab.map(read_eab).transpose()?;
    let new =
        NewAccount { contact: &refs, terms_of_service_agreed: true, only_return_existing: false };
    let (account, creds) =
        super::fault::retry_nonce!(Account::builder_with_http(dir.http_client()).create(
            &new,
            dir.url().to_string(),
            eak.as_ref()
        ))
        .map_err(|e| super::fault::from_acme(dir, "register an account", e))?;
    let meta = AccountMeta {
        directory: dir.url().to_string(),
        url: account.id().to_string(),
        contact,
        created: crate::util::fmt_time(crate::util::now()),
        eab_kid: eab.map(|e| e.kid.clone()),
    };
    save(ctx, &folder, &creds, &meta)?;
    Ok(Loaded { account, meta, created: true })
}

fn save(
    ctx: &Context,
    folder: &Path,
    creds: &AccountCredentials,
    meta: &AccountMeta,
) -> Result<(), AcmeError> {
    ensure_private_dir(folder)?;
    let identity = machine_identity(ctx, false)?;
    let plain =
        Zeroizing::new(serde_json::to_vec(creds).map_err(|e| AcmeError::Internal(e.to_string()))?);
    let sealed = age::encrypt(&identity.to_public(), &plain)
        .map_err(|e| AcmeError::Internal(format!("cannot encrypt the account key: {e}")))?;
    atomic_write(&folder.join("credentials.age"), &sealed, FileMode::PRIVATE)?;
    let rel = folder.strip_prefix(ctx.store.root()).unwrap_or(folder).join("account.json");
    ctx.store.write_json(rel, meta)?;
    Ok(())
}

/// Updates the stored contact after the server accepted it.
pub fn save_meta(ctx: &Context, meta: &AccountMeta) -> Result<(), AcmeError> {
    let folder = account_dir(ctx, &meta.directory);
    let rel = folder.strip_prefix(ctx.store.root()).unwrap_or(&folder).join("account.json");
    ctx.store.write_json(rel, meta)?;
    Ok(())
}

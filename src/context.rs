//! What every command that works on a configuration gets: the config, the state
//! store, the audit log, the output format and the clock.

use chrono::{DateTime, Utc};

use crate::Error;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::output::Format;
use crate::store::{LockGuard, Store, StoreError};

#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub store: Store,
    pub audit: AuditLog,
    pub format: Format,
    /// The command as the audit log names it (`ca issue`, `run`, …).
    pub command: String,
    pub now: DateTime<Utc>,
}

impl Context {
    /// Loads the configuration and opens (creating it if missing) the state folder.
    pub fn load(
        config: Option<&std::path::Path>,
        format: Format,
        command: &str,
    ) -> Result<Context, Error> {
        let config = Config::load(config)?;
        let store = Store::open(&config.state_dir())?;
        let audit = AuditLog::new(config.audit_file(), command);
        Ok(Context {
            config,
            store,
            audit,
            format,
            command: command.to_string(),
            now: crate::util::now(),
        })
    }

    /// Takes the run lock that every mutating command holds.
    pub fn lock(&self) -> Result<LockGuard, StoreError> {
        self.store.lock(self.config.lock_wait(), &self.command)
    }
}

//! The exit codes of the command-line contract (docs/cli.md). Nothing else may pick a
//! process exit status.

/// A command's result as the operator, the timer and CI see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exit {
    /// 0: everything asked for was done.
    Ok,
    /// 3: attention needed (a status threshold crossed, a required secret missing).
    Attention,
    /// 1: an operation failed; the others still ran.
    Failed,
    /// 2: usage or configuration error; nothing was changed.
    Usage,
    /// 75: another keyward run holds the lock.
    Locked,
}

impl Exit {
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Attention => 3,
            Exit::Locked => 75,
        }
    }

    /// Combines the results of several items: the most serious one wins, and a
    /// failure outranks "attention needed".
    pub fn worst(self, other: Exit) -> Exit {
        self.max(other)
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_contract() {
        assert_eq!(Exit::Ok.code(), 0);
        assert_eq!(Exit::Failed.code(), 1);
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Exit::Attention.code(), 3);
        assert_eq!(Exit::Locked.code(), 75);
    }

    #[test]
    fn failure_outranks_attention() {
        assert_eq!(Exit::Attention.worst(Exit::Failed), Exit::Failed);
        assert_eq!(Exit::Ok.worst(Exit::Attention), Exit::Attention);
        assert_eq!(Exit::Ok.worst(Exit::Ok), Exit::Ok);
    }
}

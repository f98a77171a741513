//! Exit codes and the error kinds that choose them.

use std::fmt;

/// What a command's failure means to a script: `1` a check failed (the bundle is corrupt,
/// a verification did not pass), `2` the input or the environment is wrong (bad flags, a
/// malformed compose file, an engine that does not answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    CheckFailed,
    Input,
}

impl FailureKind {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::CheckFailed => 1,
            FailureKind::Input => 2,
        }
    }
}

/// Marks an error as a failed check (exit 1); every other error exits 2.
#[derive(Debug)]
pub struct CheckFailed(pub String);

impl fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckFailed {}

/// Decides the exit code of an error chain.
pub fn failure_kind(err: &anyhow::Error) -> FailureKind {
    for cause in err.chain() {
        if cause.downcast_ref::<CheckFailed>().is_some() {
            return FailureKind::CheckFailed;
        }
        if let Some(bundle_err) = cause.downcast_ref::<offpack_bundle::BundleError>()
            && bundle_err.is_corruption()
        {
            return FailureKind::CheckFailed;
        }
    }
    FailureKind::Input
}

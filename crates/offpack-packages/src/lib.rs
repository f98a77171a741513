//! Package files offpack reads and writes for issue 19: pip requirements files,
//! npm package-lock / npm-shrinkwrap / yarn.lock, PEP 503 index pages and npm
//! registry documents, and the package request file. Pure: text in, data out,
//! no I/O, so every parser is tested here and the I/O layers stay thin.

#![warn(missing_docs)]

pub mod npm;
pub mod pip;
pub mod request;

/// A malformed package file, naming the file (as the caller labelled it) and,
/// when known, the 1-based line, e.g. `requirements.txt:4: unknown option --foo`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PackageError {
    /// The label the caller gave for the file (usually its context-relative path).
    pub file: String,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl PackageError {
    /// An error at a line of `file`.
    pub fn at(file: &str, line: usize, message: impl Into<String>) -> PackageError {
        PackageError {
            file: file.to_string(),
            line: Some(line),
            message: message.into(),
        }
    }

    /// An error about `file` as a whole.
    pub fn file(file: &str, message: impl Into<String>) -> PackageError {
        PackageError {
            file: file.to_string(),
            line: None,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_file_and_line() {
        assert_eq!(
            PackageError::at("requirements.txt", 4, "unknown option --foo").to_string(),
            "requirements.txt:4: unknown option --foo"
        );
        assert_eq!(
            PackageError::file("package-lock.json", "not JSON").to_string(),
            "package-lock.json: not JSON"
        );
    }
}

//! The one error type of the loader.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a Compose project could not be loaded.
///
/// `Display` names the file (with line and column when the YAML parser knows them) and the
/// field path inside the model (`services.backend.build.args`), then says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeError {
    inner: Box<Details>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Details {
    file: Option<PathBuf>,
    line: Option<usize>,
    column: Option<usize>,
    field: Option<String>,
    message: String,
    hint: Option<String>,
}

impl ComposeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ComposeError {
            inner: Box::new(Details {
                file: None,
                line: None,
                column: None,
                field: None,
                message: message.into(),
                hint: None,
            }),
        }
    }

    /// A file that could not be read; the message names it already.
    pub(crate) fn unreadable(err: offpack_fs::ReadError) -> Self {
        let hint = match &err {
            _ if err.is_not_found() => Some("check the file path"),
            offpack_fs::ReadError::Io { .. } => Some("check the file's permissions"),
            // The message says what to do already.
            _ => None,
        };
        let error = ComposeError::new(err.to_string());
        match hint {
            Some(hint) => error.hint(hint),
            None => error,
        }
    }

    pub(crate) fn in_file(mut self, file: &Path) -> Self {
        if self.inner.file.is_none() {
            self.inner.file = Some(file.to_path_buf());
        }
        self
    }

    pub(crate) fn at(mut self, line: usize, column: usize) -> Self {
        self.inner.line = Some(line);
        self.inner.column = Some(column);
        self
    }

    pub(crate) fn at_line(mut self, line: Option<usize>) -> Self {
        if self.inner.line.is_none() {
            self.inner.line = line;
        }
        self
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        if self.inner.field.is_none() {
            self.inner.field = Some(field.into());
        }
        self
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        if self.inner.hint.is_none() {
            self.inner.hint = Some(hint.into());
        }
        self
    }

    /// The file at fault, when one is known.
    pub fn file(&self) -> Option<&Path> {
        self.inner.file.as_deref()
    }

    /// 1-based line in [`ComposeError::file`], when the YAML parser reported one.
    pub fn line(&self) -> Option<usize> {
        self.inner.line
    }

    /// Dotted path of the field at fault inside the Compose model, e.g. `services.web.build.args`.
    pub fn field_path(&self) -> Option<&str> {
        self.inner.field.as_deref()
    }

    /// What went wrong, without location or advice.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.inner.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.inner.line {
                write!(f, ":{line}")?;
                if let Some(column) = self.inner.column {
                    write!(f, ":{column}")?;
                }
            }
            write!(f, ": ")?;
        }
        if let Some(field) = &self.inner.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.inner.message)?;
        if let Some(hint) = &self.inner.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ComposeError {}

pub(crate) type Result<T> = std::result::Result<T, ComposeError>;

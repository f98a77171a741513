//! Which builder builds a Dockerfile: what it can build decides which stages it runs, and so which
//! images the far side needs.

use serde::{Deserialize, Serialize};

/// The Docker Engine's two builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    /// BuildKit (`POST /build?version=2`): builds only the stages the target reaches.
    BuildKit,
    /// The classic builder (`version=1`): builds every stage up to the target.
    Classic,
}

impl Builder {
    /// The name the CLI and `offpack.json` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Builder::BuildKit => "buildkit",
            Builder::Classic => "classic",
        }
    }
}

impl std::fmt::Display for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_json_and_the_cli_use() {
        assert_eq!(
            serde_json::to_string(&Builder::BuildKit).unwrap(),
            "\"buildkit\""
        );
        assert_eq!(Builder::Classic.to_string(), "classic");
    }
}

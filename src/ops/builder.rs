//! Which builder a job builds with: the `--builder` option of `plan`, `bundle` and `rebuild`,
//! which the jobs take as input.

use clap::ValueEnum;
use clap::builder::PossibleValue;
use offpack_dockerfile::Builder;

/// `--builder auto|buildkit|classic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuilderChoice {
    /// BuildKit when the engine has it (a Linux engine with API ≥ 1.39), else the classic builder.
    #[default]
    Auto,
    /// This builder, whatever the engine says.
    Fixed(Builder),
}

impl BuilderChoice {
    /// The builder for a job that does not ask the engine (`plan`): `auto` is BuildKit, what an
    /// engine of the supported versions (Docker ≥ 20.10 on Linux) has.
    pub fn without_engine(self) -> Builder {
        match self {
            BuilderChoice::Auto => Builder::BuildKit,
            BuilderChoice::Fixed(builder) => builder,
        }
    }
}

/// The builder a job that talks to `engine` builds with: `auto` follows the engine; a fixed
/// BuildKit on an engine without it is an error saying so.
pub async fn choose_builder(
    engine: &crate::engine::Engine,
    choice: BuilderChoice,
) -> anyhow::Result<Builder> {
    let has_buildkit = engine.supports_buildkit().await?;
    match choice {
        BuilderChoice::Auto if has_buildkit => Ok(Builder::BuildKit),
        BuilderChoice::Auto => Ok(Builder::Classic),
        BuilderChoice::Fixed(Builder::BuildKit) if !has_buildkit => anyhow::bail!(
            "--builder buildkit: the engine at {} has no BuildKit (it needs a Linux engine with \
             API 1.39 or later); use --builder classic",
            engine.endpoint()
        ),
        BuilderChoice::Fixed(builder) => Ok(builder),
    }
}

impl ValueEnum for BuilderChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            BuilderChoice::Auto,
            BuilderChoice::Fixed(Builder::BuildKit),
            BuilderChoice::Fixed(Builder::Classic),
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            BuilderChoice::Auto => PossibleValue::new("auto")
                .help("BuildKit when the engine has it, else the classic builder"),
            BuilderChoice::Fixed(Builder::BuildKit) => PossibleValue::new("buildkit")
                .help("BuildKit: builds only the stages the target reaches"),
            BuilderChoice::Fixed(Builder::Classic) => PossibleValue::new("classic")
                .help("the classic builder: builds every stage up to the target; no BuildKit-only features"),
        })
    }
}

impl std::fmt::Display for BuilderChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuilderChoice::Auto => f.write_str("auto"),
            BuilderChoice::Fixed(builder) => std::fmt::Display::fmt(builder, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_the_cli_spells_them() {
        assert_eq!(
            BuilderChoice::from_str("buildkit", false),
            Ok(BuilderChoice::Fixed(Builder::BuildKit))
        );
        assert_eq!(
            BuilderChoice::from_str("auto", false),
            Ok(BuilderChoice::Auto)
        );
        assert!(BuilderChoice::from_str("kaniko", false).is_err());
        assert_eq!(
            BuilderChoice::Fixed(Builder::Classic).to_string(),
            "classic"
        );
    }

    #[test]
    fn without_an_engine_auto_is_buildkit() {
        assert_eq!(BuilderChoice::Auto.without_engine(), Builder::BuildKit);
        assert_eq!(
            BuilderChoice::Fixed(Builder::Classic).without_engine(),
            Builder::Classic
        );
    }
}

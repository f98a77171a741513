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

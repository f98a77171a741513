//! Property tests: arbitrary input never panics the pure parts of the loader.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::node::{FieldPath, convert_document};
use crate::template::{MAX_NESTING, Resolver, TemplateError};
use crate::{dotenv, merge, validate, yaml_depth};

fn lookup(k: &str) -> Option<String> {
    match k {
        "SET" => Some("value".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

proptest! {
    #[test]
    fn substitution_never_panics(template in "[$A-Z{}:?+\\-_ \n\u{e9}]{0,40}") {
        let _ = Resolver::new(&lookup).substitute(&template);
    }

    #[test]
    fn text_without_dollar_is_unchanged(text in "[^$]{0,60}") {
        prop_assert_eq!(Resolver::new(&lookup).substitute(&text), Ok(text));
    }

    #[test]
    fn dotenv_never_panics(text in "[A-Za-z_=:#'\"\\\\ \t\n$.{}\u{e9}-]{0,80}") {
        let mut out = BTreeMap::new();
        let mut unset = BTreeSet::new();
        let _ = dotenv::parse(&text, &lookup, &mut out, &mut unset);
    }

    #[test]
    fn yaml_models_never_panic(a in "[a-z:{}\\[\\], \n!<&*-]{0,80}", b in "[a-z:{}\\[\\], \n!<&*-]{0,80}") {
        let parse = |s: &str| serde_norway::from_str::<serde_norway::Value>(s).ok().and_then(|v| convert_document(v).ok());
        if let (Some(a), Some(b)) = (parse(&a), parse(&b)) {
            let _ = validate::validate(&a.root);
            let mut base = a.root;
            merge::apply_resets(&mut base, &b.reset_paths);
            if let Ok(mut merged) = merge::merge(base, b.root, &FieldPath::root()) {
                let _ = merge::enforce_unicity(&mut merged, &FieldPath::root());
            }
        }
    }

    /// Structure-aware: alternatives nested to a random depth around the limit, then a default
    /// that is never used, with a deep nest of its own that must not count.
    #[test]
    fn nested_substitution_succeeds_up_to_the_limit(
        used in proptest::collection::vec(proptest::sample::select(vec![":+", "+"]), 0..=MAX_NESTING + 20),
        unused in proptest::sample::select(vec![":-", "-", ":?", "?"]),
        hidden in 0usize..200,
    ) {
        // SET is set and not empty: `:+`/`+` substitute their alternative, one level deeper;
        // `:-`/`-`/`:?`/`?` give its value without reading their argument.
        let template = used.iter().map(|op| format!("${{SET{op}")).collect::<String>()
            + &format!("${{SET{unused}")
            + &"${A:-".repeat(hidden)
            + "x"
            + &"}".repeat(hidden + 1 + used.len());
        let result = Resolver::new(&lookup).substitute(&template);
        if used.len() > MAX_NESTING {
            prop_assert_eq!(result, Err(TemplateError::TooDeep));
        } else {
            prop_assert_eq!(result, Ok("value".to_string()));
        }
    }

    /// Structure-aware: flow collections of both kinds, JSON and YAML style, nested to a random
    /// depth around the limit, with scalars, quotes and comments between them.
    #[test]
    fn flow_nesting_is_refused_exactly_past_the_limit(
        levels in proptest::collection::vec(proptest::sample::select(vec!["[", "{a: ", "{\"a\": ", "['x]', ", "[# c\n", "[\"[{\", "]), 0..=yaml_depth::MAX_DEPTH + 40),
    ) {
        let closers: String = levels.iter().rev().map(|l| if l.starts_with('{') { "}" } else { "]" }).collect();
        let text = format!("a: {}1{closers}\n", levels.concat());
        let result = yaml_depth::check(&text);
        prop_assert_eq!(result.is_err(), levels.len() > yaml_depth::MAX_DEPTH);
        if result.is_ok() {
            // The parser agrees the text is YAML (the scan counted what it parses).
            prop_assert!(serde_norway::from_str::<serde_norway::Value>(&text).is_ok() || levels.len() >= yaml_depth::MAX_DEPTH);
        }
    }
}

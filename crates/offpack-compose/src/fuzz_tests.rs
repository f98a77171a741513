//! Property tests: arbitrary input never panics the pure parts of the loader.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::node::{FieldPath, convert_document};
use crate::template::Resolver;
use crate::{dotenv, merge, validate};

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
}

//! Any text is parsed and resolved for a few targets and platforms, and its digest pins rewritten;
//! errors are fine, panics are not.
#![no_main]

mod small_stack;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use offpack_dockerfile::{ImageRef, ResolveOptions, parse, resolve, rewrite_pins};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_owned();
    small_stack::run(move || parse_and_resolve(&text));
});

fn parse_and_resolve(text: &str) {
    let _ = ImageRef::parse(text.lines().next().unwrap_or_default());
    let Ok(dockerfile) = parse(text) else {
        return;
    };
    let build_args: BTreeMap<String, String> = [
        ("BASE".to_string(), "alpine:3.20".to_string()),
        ("VERSION".to_string(), "1.2".to_string()),
    ]
    .into_iter()
    .collect();
    let named: Vec<String> = dockerfile
        .stages
        .iter()
        .filter_map(|s| s.name.clone())
        .take(2)
        .collect();
    let targets = std::iter::once(None).chain(named.iter().map(|n| Some(n.as_str())));
    for target in targets {
        for platform in ["linux/amd64", "linux/arm/v7"] {
            if let Ok(resolved) = resolve(
                &dockerfile,
                &ResolveOptions {
                    target,
                    build_args: &build_args,
                    target_platform: platform,
                    build_platform: "linux/amd64",
                },
            ) {
                let _ = rewrite_pins(text, &dockerfile, &resolved);
            }
        }
    }
}

//! The `WWW-Authenticate` header of a registry's 401 answer (RFC 7235, as distribution and
//! Harbor write it): `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.

use std::collections::BTreeMap;

/// What a registry asks for before it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Send the username and password with every request.
    Basic,
    /// Fetch a token from `realm` for `service` and `scope`, then send it as `Bearer`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to send, when the registry gave one.
        service: Option<String>,
        /// The scope the registry named, when it gave one.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses one header value; `None` for a scheme offpack does not speak or a Bearer
    /// challenge without a realm.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            }),
            _ => None,
        }
    }
}

/// `key="value", key=token` pairs; keys lower-cased, quoted values unescaped.
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
            value = value.trim().to_string();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("basic"), Some(Challenge::Basic));
    }

    #[test]
    fn bearer_with_every_parameter() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/python:pull,push".into()),
            })
        );
    }

    #[test]
    fn bearer_with_spaces_unquoted_values_and_escapes() {
        let c = Challenge::parse(r#"Bearer realm=https://h/t , service="a \"b\"""#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://h/t".into(),
                service: Some(r#"a "b""#.into()),
                scope: None,
            })
        );
    }

    #[test]
    fn unknown_or_incomplete() {
        assert_eq!(Challenge::parse(r#"Negotiate abc"#), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
    }
}

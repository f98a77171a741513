//! PEP 508 environment markers, evaluated against what offpack knows of an image without running
//! it: the platform a service builds for, and the Python version a lock was made for. A marker
//! that needs anything else (an extra, the implementation, a full Python version) is unknown, not
//! false: the caller then leaves the decision to the installer.

/// What is known of the environment a tool installs into; `None`: unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkerEnvironment {
    /// `python_version` (`3.11`).
    pub python_version: Option<String>,
    /// `sys_platform` (`linux`).
    pub sys_platform: Option<String>,
    /// `platform_system` (`Linux`).
    pub platform_system: Option<String>,
    /// `os_name` (`posix`).
    pub os_name: Option<String>,
    /// `platform_machine` (`x86_64`, `aarch64`).
    pub platform_machine: Option<String>,
}

impl MarkerEnvironment {
    /// The environment of a Linux image of `platform` (`linux/amd64`, `linux/arm64`), with
    /// `python_version` when known; another OS leaves everything unknown.
    pub fn for_platform(platform: &str, python_version: Option<&str>) -> MarkerEnvironment {
        let mut parts = platform.split('/');
        let mut env = MarkerEnvironment {
            python_version: python_version.map(str::to_string),
            ..MarkerEnvironment::default()
        };
        if parts.next() != Some("linux") {
            return env;
        }
        env.sys_platform = Some("linux".into());
        env.platform_system = Some("Linux".into());
        env.os_name = Some("posix".into());
        env.platform_machine = match parts.next() {
            Some("amd64") => Some("x86_64".into()),
            Some("arm64") => Some("aarch64".into()),
            _ => None,
        };
        env
    }

    fn value(&self, variable: &str) -> Option<&str> {
        match variable {
            "python_version" => self.python_version.as_deref(),
            "sys_platform" => self.sys_platform.as_deref(),
            "platform_system" => self.platform_system.as_deref(),
            "os_name" => self.os_name.as_deref(),
            "platform_machine" => self.platform_machine.as_deref(),
            _ => None,
        }
    }
}

/// Whether `marker` holds in `env`: `None` when it depends on something `env` leaves unknown or
/// is not a marker this reads.
pub fn evaluate(marker: &str, env: &MarkerEnvironment) -> Option<bool> {
    let tokens = tokenize(marker)?;
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        env,
        depth: 0,
    };
    let value = parser.or_expression()?;
    if parser.at != tokens.len() {
        return None;
    }
    value
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Word(String),
    Quoted(String),
    Operator(String),
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Token::Close);
            i += 1;
        } else if c == '\'' || c == '"' {
            let end = chars[i + 1..].iter().position(|&d| d == c)? + i + 1;
            tokens.push(Token::Quoted(chars[i + 1..end].iter().collect()));
            i = end + 1;
        } else if "<>=!~".contains(c) {
            let start = i;
            while i < chars.len() && "<>=!~".contains(chars[i]) {
                i += 1;
            }
            tokens.push(Token::Operator(chars[start..i].iter().collect()));
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            return None;
        }
    }
    Some(tokens)
}

/// A recursive-descent reader of `or` / `and` / parentheses / comparisons. The outer `Option`
/// is `None` for text that is not a marker; the inner one for a value `env` does not know.
struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    env: &'a MarkerEnvironment,
    /// Parentheses open around the current atom: bounded, since a marker comes from a lock file
    /// and each level is a few stack frames.
    depth: usize,
}

/// Deeper parentheses are not read (the marker counts as unknown). uv.lock markers, combined
/// along a dependency chain, nest one level per edge.
const MAX_DEPTH: usize = 128;

impl Parser<'_> {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w == word)
    }

    fn or_expression(&mut self) -> Option<Option<bool>> {
        let mut value = self.and_expression()?;
        while self.peek_word("or") {
            self.at += 1;
            let right = self.and_expression()?;
            value = match (value, right) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            };
        }
        Some(value)
    }

    fn and_expression(&mut self) -> Option<Option<bool>> {
        let mut value = self.atom()?;
        while self.peek_word("and") {
            self.at += 1;
            let right = self.atom()?;
            value = match (value, right) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
        }
        Some(value)
    }

    fn atom(&mut self) -> Option<Option<bool>> {
        if self.tokens.get(self.at) == Some(&Token::Open) {
            if self.depth >= MAX_DEPTH {
                return None;
            }
            self.at += 1;
            self.depth += 1;
            let value = self.or_expression()?;
            self.depth -= 1;
            if self.tokens.get(self.at) != Some(&Token::Close) {
                return None;
            }
            self.at += 1;
            return Some(value);
        }
        let left = self.operand()?;
        let operator = match self.tokens.get(self.at)? {
            Token::Operator(op) => {
                self.at += 1;
                op.clone()
            }
            Token::Word(w) if w == "in" => {
                self.at += 1;
                "in".to_string()
            }
            Token::Word(w) if w == "not" => {
                self.at += 1;
                if !self.peek_word("in") {
                    return None;
                }
                self.at += 1;
                "not in".to_string()
            }
            _ => return None,
        };
        let right = self.operand()?;
        Some(self.compare(&left, &operator, &right))
    }

    fn operand(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at)?.clone();
        match token {
            Token::Word(_) | Token::Quoted(_) => {
                self.at += 1;
                Some(token)
            }
            _ => None,
        }
    }

    /// `variable op 'literal'` or `'literal' op variable`.
    fn compare(&self, left: &Token, operator: &str, right: &Token) -> Option<bool> {
        let (variable, literal, variable_first) = match (left, right) {
            (Token::Word(variable), Token::Quoted(literal)) => (variable, literal, true),
            (Token::Quoted(literal), Token::Word(variable)) => (variable, literal, false),
            _ => return None,
        };
        let value = self.env.value(variable)?;
        let (lhs, rhs) = if variable_first {
            (value, literal.as_str())
        } else {
            (literal.as_str(), value)
        };
        match operator {
            "in" => Some(rhs.contains(lhs)),
            "not in" => Some(!rhs.contains(lhs)),
            _ if variable == "python_version" => compare_versions(lhs, operator, rhs),
            "==" | "===" => Some(lhs == rhs),
            "!=" => Some(lhs != rhs),
            _ => None,
        }
    }
}

/// A release version (`3`, `3.11`) as its numbers; anything else (pre-releases, local versions)
/// is not read.
fn release(text: &str) -> Option<Vec<u64>> {
    text.split('.').map(|part| part.parse().ok()).collect()
}

fn compare_versions(lhs: &str, operator: &str, rhs: &str) -> Option<bool> {
    if let Some(prefix) = rhs.strip_suffix(".*") {
        let prefix = release(prefix)?;
        let value = release(lhs)?;
        let matches = value.len() >= prefix.len() && value[..prefix.len()] == prefix[..];
        return match operator {
            "==" => Some(matches),
            "!=" => Some(!matches),
            _ => None,
        };
    }
    let mut a = release(lhs)?;
    let mut b = release(rhs)?;
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    let ordering = a.cmp(&b);
    use std::cmp::Ordering::*;
    match operator {
        "==" | "===" => Some(ordering == Equal),
        "!=" => Some(ordering != Equal),
        "<" => Some(ordering == Less),
        "<=" => Some(ordering != Greater),
        ">" => Some(ordering == Greater),
        ">=" => Some(ordering != Less),
        "~=" => {
            let given = release(rhs)?;
            if given.len() < 2 {
                return None;
            }
            let prefix = &given[..given.len() - 1];
            Some(ordering != Less && a[..prefix.len()] == prefix[..])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux_311() -> MarkerEnvironment {
        MarkerEnvironment::for_platform("linux/amd64", Some("3.11"))
    }

    #[test]
    fn python_version_markers_pipenv_writes() {
        let env = linux_311();
        for (marker, expected) in [
            ("python_version >= '3.5'", true),
            ("python_version >= '3.12'", false),
            (
                "python_version >= '2.7' and python_version != '3.0' and python_version != '3.1' \
                 and python_version != '3.2'",
                true,
            ),
            ("python_version < '3.10' or python_version >= '3.11'", true),
            ("python_version ~= '3.9'", true),
            ("python_version ~= '3.12'", false),
            ("python_version == '3.*'", true),
            ("python_version != '3.11.*'", false),
            ("'3.8' < python_version", true),
            ("python_version in '3.10 3.11'", true),
        ] {
            assert_eq!(evaluate(marker, &env), Some(expected), "{marker}");
        }
    }

    #[test]
    fn platform_markers_for_a_linux_image() {
        let env = linux_311();
        assert_eq!(evaluate("sys_platform == 'win32'", &env), Some(false));
        assert_eq!(evaluate("sys_platform == \"linux\"", &env), Some(true));
        assert_eq!(evaluate("platform_system != 'Windows'", &env), Some(true));
        assert_eq!(
            evaluate("platform_machine == 'aarch64'", &env),
            Some(false),
            "amd64 is x86_64"
        );
        assert_eq!(
            evaluate(
                "(sys_platform == 'win32' or os_name == 'nt') and python_version >= '3.8'",
                &env
            ),
            Some(false)
        );
    }

    #[test]
    fn what_is_not_known_is_none_unless_the_rest_decides() {
        let env = linux_311();
        assert_eq!(evaluate("extra == 'test'", &env), None);
        assert_eq!(evaluate("python_full_version >= '3.8.1'", &env), None);
        assert_eq!(
            evaluate(
                "implementation_name == 'cpython' and python_version >= '3.8'",
                &env
            ),
            None
        );
        assert_eq!(
            evaluate(
                "implementation_name == 'pypy' and sys_platform == 'win32'",
                &env
            ),
            Some(false)
        );
        assert_eq!(
            evaluate(
                "implementation_name == 'pypy' or python_version >= '3.8'",
                &env
            ),
            Some(true)
        );
        let unknown_python = MarkerEnvironment::for_platform("linux/amd64", None);
        assert_eq!(evaluate("python_version >= '3.5'", &unknown_python), None);
        let windows = MarkerEnvironment::for_platform("windows/amd64", Some("3.11"));
        assert_eq!(evaluate("sys_platform == 'win32'", &windows), None);
    }

    #[test]
    fn text_that_is_not_a_marker_is_none() {
        let env = linux_311();
        for marker in [
            "",
            "python_version >=",
            "python_version >= '3.5",
            "(python_version >= '3.5'",
            "python_version >= '3.5')",
            "python_version >= '3.5' and",
            "python_version = '3.11' ; rm",
            "python_version >= 'a.b'",
            "'3.5' >= '3.6'",
        ] {
            assert_eq!(evaluate(marker, &env), None, "{marker:?}");
        }
    }

    #[test]
    fn deep_parentheses_are_unknown_not_a_crash() {
        let env = MarkerEnvironment::for_platform("linux/amd64", Some("3.11"));
        let nested =
            |n: usize| format!("{}sys_platform == 'linux'{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(evaluate(&nested(MAX_DEPTH), &env), Some(true));
        assert_eq!(evaluate(&nested(MAX_DEPTH + 1), &env), None);
        assert_eq!(evaluate(&nested(1_000_000), &env), None);
    }
}

//! What may be shown of a secret: a database URL or connection string with its password
//! replaced, for logs, `etl status` and the configuration's logged form. The configuration and
//! the connection both use it, so it sits below both.

use crate::config::error::SetupError;

/// `url` with any password replaced by `***`: the `user:password@` part and a `password`
/// parameter of a `postgres://` URL, or the `password=` of a `key=value` string.
pub fn redact(url: &str) -> String {
    const HIDDEN: &str = "***";
    if let Some(scheme_end) = url.find("://") {
        let (head, query) = url.split_at(url.find('?').unwrap_or(url.len()));
        let authority = scheme_end + 3;
        let mut out = match head[authority..].rfind('@') {
            Some(at) => {
                let userinfo = &head[authority..authority + at];
                let user = userinfo.split(':').next().unwrap_or_default();
                let hidden = if userinfo.contains(':') {
                    format!(":{HIDDEN}")
                } else {
                    String::new()
                };
                format!(
                    "{}{user}{hidden}{}",
                    &head[..authority],
                    &head[authority + at..]
                )
            }
            None => head.to_owned(),
        };
        if let Some(query) = query.strip_prefix('?') {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}={HIDDEN}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push('?');
            out.push_str(&pairs.join("&"));
        }
        return out;
    }
    match key_values(url) {
        Ok(tokens) => tokens
            .iter()
            .map(|t| {
                if t.key == "password" {
                    format!("password={HIDDEN}")
                } else {
                    t.text.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        // Not parseable: show nothing of it rather than risk a password.
        Err(_) => "(unparseable connection string)".into(),
    }
}

/// One `key=value` of a libpq connection string: the text as written, and its decoded parts.
pub struct KeyValue<'a> {
    pub text: &'a str,
    pub key: String,
    pub value: String,
}

/// Splits a libpq `key = value …` string (values may be 'quoted', with `\` escapes).
pub fn key_values(s: &str) -> Result<Vec<KeyValue<'_>>, SetupError> {
    let invalid = |what: &str| SetupError(format!("invalid database connection string: {what}"));
    let bytes = s.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            return Ok(tokens);
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = s[start..i].to_owned();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() || bytes[i] != b'=' {
            return Err(invalid(&format!("{key:?} has no value")));
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        let quoted = i < bytes.len() && bytes[i] == b'\'';
        if quoted {
            i += 1;
        }
        loop {
            match bytes.get(i) {
                None if quoted => return Err(invalid("unterminated quoted value")),
                None => break,
                Some(b'\'') if quoted => {
                    i += 1;
                    break;
                }
                Some(c) if !quoted && c.is_ascii_whitespace() => break,
                Some(b'\\') => {
                    if let Some(&next) = bytes.get(i + 1) {
                        value.push(next);
                    }
                    i += 2;
                }
                Some(&c) => {
                    value.push(c);
                    i += 1;
                }
            }
        }
        let end = i.min(bytes.len());
        tokens.push(KeyValue {
            text: &s[start..end],
            key,
            value: String::from_utf8_lossy(&value).into_owned(),
        });
    }
}

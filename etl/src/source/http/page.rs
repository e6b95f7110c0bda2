//! One response body: its items, byte for byte as the API wrote them, and the request for the
//! page after it (a cursor, a link or a page number), as the source's pagination style says.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::http::{HttpConfig, Pagination};

/// The request for a page after the first: what a position stores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Next {
    Cursor(String),
    Url(String),
    Page(u64),
}

/// A page as received.
#[derive(Debug)]
pub struct Page {
    /// Each item's JSON text, exactly as in the body.
    pub items: Vec<String>,
    /// The page after this one; none: this was the window's last.
    pub next: Option<Next>,
}

/// A page that is not what the configuration describes: the API's fault, never the events'.
#[derive(Debug, thiserror::Error)]
pub enum BadPage {
    #[error("the response body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the response has nothing at {0:?} (items)")]
    NoItems(String),
    #[error("the response's {0:?} (items) is not a list")]
    ItemsNotAList(String),
    #[error("the API answered the cursor {0:?} with the same cursor again (it would loop)")]
    SameCursor(String),
    #[error("the next-page link is not a URL: {0}")]
    LinkNotUrl(url::ParseError),
    #[error(
        "the next-page link leads to {0}, another origin than the configured URL's; the API key is never sent there"
    )]
    OtherOrigin(String),
    #[error("the next-page link is the page just read (it would loop)")]
    SameLink,
}

/// Reads `body`, the answer to the request for `asked` (none: the first page) sent to
/// `requested`. An error is the API's fault (a body that is not what the configuration
/// describes): the page is asked for again, and after the last attempt the pull stops.
pub fn parse(
    body: &[u8],
    config: &HttpConfig,
    asked: Option<&Next>,
    requested: &reqwest::Url,
) -> Result<Page, BadPage> {
    let root: &RawValue = serde_json::from_slice(body).map_err(BadPage::NotJson)?;
    let list = find(root, &config.items).ok_or_else(|| BadPage::NoItems(config.items.clone()))?;
    let items: Vec<&RawValue> = serde_json::from_str(list.get())
        .map_err(|_| BadPage::ItemsNotAList(config.items.clone()))?;
    let next = match &config.pagination {
        Pagination::None => None,
        Pagination::Cursor { field, .. } => {
            let cursor = match value_at(root, field) {
                Some(Value::String(s)) if !s.is_empty() => Some(s),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            if let (Some(c), Some(Next::Cursor(before))) = (&cursor, asked) {
                if c == before {
                    return Err(BadPage::SameCursor(c.clone()));
                }
            }
            cursor.map(Next::Cursor)
        }
        Pagination::Link { field } => match value_at(root, field) {
            Some(Value::String(link)) if !link.is_empty() => {
                let url = requested.join(&link).map_err(BadPage::LinkNotUrl)?;
                // The key, when sent as a parameter, is added to each request, never stored in
                // a position or compared (an API may copy it into its links).
                let url = match &config.api_key_param {
                    Some(param) => without_param(&url, param),
                    None => url,
                };
                let requested = &match &config.api_key_param {
                    Some(param) => without_param(requested, param),
                    None => requested.clone(),
                };
                if url.origin() != requested.origin() {
                    return Err(BadPage::OtherOrigin(url.origin().ascii_serialization()));
                }
                if url.as_str() == requested.as_str() {
                    return Err(BadPage::SameLink);
                }
                Some(Next::Url(url.into()))
            }
            _ => None,
        },
        Pagination::Page { first, .. } => {
            let current = match asked {
                Some(Next::Page(n)) => *n,
                _ => *first,
            };
            let short = config
                .page_size
                .is_some_and(|size| (items.len() as u64) < size);
            (!items.is_empty() && !short).then_some(Next::Page(current + 1))
        }
    };
    Ok(Page {
        items: items.iter().map(|item| item.get().to_owned()).collect(),
        next,
    })
}

/// `url` without its `name` query parameters.
pub fn without_param(url: &reqwest::Url, name: &str) -> reqwest::Url {
    let mut kept = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.is_empty() {
        kept.set_query(None);
    } else {
        kept.query_pairs_mut().clear().extend_pairs(pairs);
    }
    kept
}

/// The part of `raw` at the JSON pointer `pointer`, still as text (`""` is the whole).
fn find<'a>(raw: &'a RawValue, pointer: &str) -> Option<&'a RawValue> {
    let mut here = raw;
    if pointer.is_empty() {
        return Some(here);
    }
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text = here.get().trim_start();
        here = if text.starts_with('{') {
            let object: std::collections::HashMap<String, &RawValue> =
                serde_json::from_str(text).ok()?;
            object.get(&token).copied()?
        } else if text.starts_with('[') {
            let array: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            array.get(token.parse::<usize>().ok()?).copied()?
        } else {
            return None;
        };
    }
    Some(here)
}

/// The value at `pointer`, parsed.
fn value_at(raw: &RawValue, pointer: &str) -> Option<Value> {
    serde_json::from_str(find(raw, pointer)?.get()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> HttpConfig {
        toml::from_str(&format!(
            "name = \"crm\"\ntype = \"cards\"\nurl = \"http://api.test/v1/cards\"\n\
             item = {{ key = \"/id\", version = \"/v\" }}\n{extra}"
        ))
        .expect("valid")
    }

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).expect("url")
    }

    #[test]
    fn items_keep_their_bytes_and_the_cursor_leads_on() {
        let c = config(
            "items = \"/data\"\npagination = { style = \"cursor\", field = \"/meta/next\", param = \"c\" }",
        );
        let body = br#"{"data":[{"id":1,  "v":"x"},{"id":2,"v":1.50}],"meta":{"next":"abc"}}"#;
        let page = parse(body, &c, None, &url("http://api.test/v1/cards")).expect("page");
        assert_eq!(
            page.items,
            [r#"{"id":1,  "v":"x"}"#, r#"{"id":2,"v":1.50}"#]
        );
        assert_eq!(page.next, Some(Next::Cursor("abc".into())));

        let last = br#"{"data":[],"meta":{"next":null}}"#;
        let page = parse(last, &c, page.next.as_ref(), &url("http://api.test/")).expect("page");
        assert!(page.items.is_empty());
        assert_eq!(page.next, None);

        let looping = br#"{"data":[],"meta":{"next":"abc"}}"#;
        let asked = Next::Cursor("abc".into());
        assert!(parse(looping, &c, Some(&asked), &url("http://api.test/")).is_err());
    }

    #[test]
    fn links_resolve_and_stay_on_the_origin() {
        let c = config("items = \"/items\"\npagination = { style = \"link\", field = \"/next\" }");
        let here = url("http://api.test/v1/cards?page=1");
        let body = br#"{"items":[{"id":1}],"next":"/v1/cards?page=2"}"#;
        let page = parse(body, &c, None, &here).expect("page");
        assert_eq!(
            page.next,
            Some(Next::Url("http://api.test/v1/cards?page=2".into()))
        );
        let keyed = config(
            "items = \"/items\"\napi_key_param = \"key\"\npagination = { style = \"link\", field = \"/next\" }",
        );
        let asked = url("http://api.test/v1/cards?page=1&key=sk-1");
        let body = br#"{"items":[{"id":1}],"next":"/v1/cards?page=2&key=sk-1"}"#;
        let page = parse(body, &keyed, None, &asked).expect("page");
        assert_eq!(
            page.next,
            Some(Next::Url("http://api.test/v1/cards?page=2".into())),
            "the key is never stored"
        );
        let elsewhere = br#"{"items":[],"next":"http://evil.test/steal"}"#;
        let error = parse(elsewhere, &c, None, &here).expect_err("other origin");
        assert!(error.to_string().contains("another origin"), "{error}");
    }

    #[test]
    fn numbered_pages_end_at_a_short_page() {
        let c = config("page_size = 2\npagination = { style = \"page\", param = \"p\" }");
        let here = url("http://api.test/");
        let full = parse(br#"[{"id":1},{"id":2}]"#, &c, None, &here).expect("page");
        assert_eq!(full.next, Some(Next::Page(2)));
        let short = parse(br#"[{"id":3}]"#, &c, full.next.as_ref(), &here).expect("page");
        assert_eq!(short.next, None);
    }

    #[test]
    fn a_body_not_shaped_as_configured_is_the_apis_fault() {
        let c = config("items = \"/data\"");
        let here = url("http://api.test/");
        assert!(parse(b"<html>", &c, None, &here).is_err());
        assert!(parse(br#"{"error":"x"}"#, &c, None, &here).is_err());
        assert!(parse(br#"{"data":{"id":1}}"#, &c, None, &here).is_err());
    }
}

//! A sample event file as inference reads it: JSON kept in the order its keys were written (so
//! the drafts list fields as the producer does), with a repeated key refused as the daemon
//! refuses it, and integers beyond 64 bits told apart from decimals.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value with its object keys in written order.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    /// An integer that fits 64 bits (signed).
    Int(i64),
    /// An integer that does not: its text.
    BigInt(String),
    /// A number written with a fraction or an exponent.
    Decimal(f64),
    Text(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The member `key` of an object.
    pub fn member(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at `path` (object keys), if there is one.
    pub fn at(&self, path: &[String]) -> Option<&Node> {
        path.iter().try_fold(self, |here, key| here.member(key))
    }

    /// A text form that tells values apart (for "no two samples share (key, version)").
    pub fn identity(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => b.to_string(),
            Node::Int(n) => n.to_string(),
            Node::BigInt(text) => text.clone(),
            Node::Decimal(x) => x.to_string(),
            Node::Text(s) => format!("{s:?}"),
            Node::List(_) | Node::Map(_) => "(structure)".into(),
        }
    }
}

/// One sample: where it came from (as shown in the report) and its document.
#[derive(Clone, Debug)]
pub struct Sample {
    pub origin: String,
    pub document: Node,
}

/// Why a file is not a sample (it is skipped, and the report says so).
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("not UTF-8 text")]
    NotText,
    #[error("not JSON: {0}")]
    NotJson(String),
}

impl Sample {
    /// Parses `bytes` (a leading byte order mark is skipped, as the daemon skips it).
    pub fn parse(origin: impl Into<String>, bytes: &[u8]) -> Result<Sample, SampleError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SampleError::NotText)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let document =
            serde_json::from_str::<Node>(text).map_err(|e| SampleError::NotJson(e.to_string()))?;
        Ok(Sample {
            origin: origin.into(),
            document,
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

/// 2^63 as a float: a whole number at or beyond it does not fit 64 bits.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
        Ok(Node::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(i64::try_from(n).map_or_else(|_| Node::BigInt(n.to_string()), Node::Int))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Node, E> {
        // serde_json reads an integer too long for 64 bits as a float: it is still an integer.
        if x.fract() == 0.0 && x.abs() >= TWO_POW_63 && x.is_finite() {
            return Ok(Node::BigInt(format!("{x:.0}")));
        }
        Ok(Node::Decimal(x))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::Text(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(Node::Text(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("the key {key:?} is repeated")));
            }
            let value = map.next_value::<Node>()?;
            members.push((key, value));
        }
        Ok(Node::Map(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_order_and_numbers_their_kind() {
        let sample = Sample::parse(
            "a.json",
            br#"{"z": 1, "a": 2.5, "m": 99999999999999999999}"#,
        )
        .expect("JSON");
        let Node::Map(members) = &sample.document else {
            panic!("an object")
        };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(members[0].1, Node::Int(1));
        assert_eq!(members[1].1, Node::Decimal(2.5));
        assert!(matches!(members[2].1, Node::BigInt(_)));
    }

    #[test]
    fn a_repeated_key_is_not_a_sample() {
        let error = Sample::parse("a.json", br#"{"a": 1, "a": 2}"#).expect_err("refused");
        assert!(error.to_string().contains("repeated"), "{error}");
    }
}

//! A borrowed, read-only JSON tree for [`super::extract`]: strings point into the request body
//! (copied only when they contain escapes), objects are small vectors of members, and numbers,
//! booleans and null are not kept at all, since extraction never reads them.
//!
//! Why not `serde_json::Value`: for a 1 KB chat request, building a `Value` (a `BTreeMap` per
//! object, a `String` per string) and dropping it again cost about as much as half of the
//! detector's scan; this tree allocates a vector per object or array and nothing per string.
//! Both are read through [`JsonView`], so extraction is one piece of code for either.
//! Unlike `Value`, a duplicate key in any object is an error: JSON parsers disagree on which
//! member wins (most take the last, some the first, some refuse), so a body with one could show
//! the detector one text and the model another. The proxy refuses such a body.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value borrowed from the text it was parsed from.
#[derive(Debug, PartialEq)]
pub enum Doc<'a> {
    Str(Cow<'a, str>),
    Arr(Vec<Doc<'a>>),
    Obj(Vec<(Cow<'a, str>, Doc<'a>)>),
    /// A number, boolean or null.
    Scalar,
}

impl<'a> Doc<'a> {
    /// Parses JSON text (the whole input, as `serde_json::from_slice` does).
    ///
    /// # Errors
    /// The text is not one JSON value.
    pub fn parse(json: &'a [u8]) -> Result<Doc<'a>, serde_json::Error> {
        serde_json::from_slice(json)
    }
}

/// What extraction reads of a JSON value.
pub trait JsonView: Sized {
    /// The member `key` of an object (the last one, if repeated); `None` for non-objects.
    fn get(&self, key: &str) -> Option<&Self>;
    fn as_str(&self) -> Option<&str>;
    fn as_array(&self) -> Option<&[Self]>;
    fn is_object(&self) -> bool;
}

impl JsonView for serde_json::Value {
    fn get(&self, key: &str) -> Option<&Self> {
        serde_json::Value::get(self, key)
    }
    fn as_str(&self) -> Option<&str> {
        serde_json::Value::as_str(self)
    }
    fn as_array(&self) -> Option<&[Self]> {
        serde_json::Value::as_array(self).map(Vec::as_slice)
    }
    fn is_object(&self) -> bool {
        serde_json::Value::is_object(self)
    }
}

impl JsonView for Doc<'_> {
    fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Doc::Obj(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Doc::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[Self]> {
        match self {
            Doc::Arr(items) => Some(items),
            _ => None,
        }
    }
    fn is_object(&self) -> bool {
        matches!(self, Doc::Obj(_))
    }
}

impl<'de> Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Doc<'de>, E> {
        Ok(Doc::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Scalar)
    }
    fn visit_none<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Doc<'de>, D::Error> {
        Doc::deserialize(d)
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Doc::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some((Key(k), v)) = map.next_entry()? {
            members.push((k, v));
        }
        if let Some(k) = duplicate(&members) {
            return Err(serde::de::Error::custom(format_args!(
                "duplicate key {:?}",
                crate::redact::cap(k, 64)
            )));
        }
        Ok(Doc::Obj(members))
    }
}

/// A key that appears twice among `members`, if any (sorting only large objects, so a huge
/// object costs n log n, not n²).
fn duplicate<'m>(members: &'m [(Cow<'_, str>, Doc<'_>)]) -> Option<&'m str> {
    if members.len() <= 8 {
        return members
            .iter()
            .enumerate()
            .find_map(|(i, (k, _))| members[..i].iter().any(|(p, _)| p == k).then_some(&**k));
    }
    let mut keys: Vec<&str> = members.iter().map(|(k, _)| &**k).collect();
    keys.sort_unstable();
    keys.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// An object key, borrowed when it has no escapes (serde's own `Cow<str>` always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(DocVisitor)? {
            Doc::Str(s) => Ok(Key(s)),
            _ => Err(serde::de::Error::custom("object key is not a string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_value() {
        let text = br#"{"a":"x","n":1.5,"b":[true,null,"y\n"],"o":{"k":"v"}}"#;
        let doc = Doc::parse(text).expect("valid");
        let value: serde_json::Value = serde_json::from_slice(text).expect("valid");
        assert_eq!(doc.get("a").and_then(JsonView::as_str), value["a"].as_str());
        let arr = doc.get("b").and_then(JsonView::as_array).expect("array");
        assert_eq!(arr.len(), 3);
        assert_eq!(arr[2].as_str(), Some("y\n"));
        assert!(doc.get("o").is_some_and(JsonView::is_object));
        assert_eq!(doc.get("n"), Some(&Doc::Scalar));
        assert!(matches!(doc.get("a"), Some(Doc::Str(Cow::Borrowed(_)))));
        assert!(Doc::parse(b"{\"a\":1} x").is_err(), "trailing text");
        assert!(Doc::parse(b"{").is_err());
    }

    #[test]
    fn a_duplicate_key_anywhere_is_an_error() {
        let small = br#"{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}"#;
        let e = Doc::parse(small).expect_err("duplicate").to_string();
        assert!(e.contains("duplicate key \"content\""), "{e}");
        let members: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let big = format!("{{{},\"k42\":0}}", members.join(","));
        assert!(
            Doc::parse(big.as_bytes()).is_err(),
            "found among many by sorting"
        );
        assert!(
            Doc::parse(br#"{"a":{"k":1},"b":{"k":2}}"#).is_ok(),
            "same key, other objects"
        );
    }
}

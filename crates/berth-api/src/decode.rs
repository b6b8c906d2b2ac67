//! Request-body decoding with the rules of Go's `encoding/json`, which is what clients of
//! dockerd rely on: `null` anywhere is the zero value of the field, map value or array element it
//! stands for, unknown object members are ignored, struct field names match case-insensitively
//! (an exact match first), and only a JSON value of the wrong type is an error.
//!
//! The body is parsed to a [`serde_json::Value`] and then deserialized through [`Lenient`], a
//! deserializer over that value which applies those rules at every level.

use serde::de::{self, DeserializeSeed, Unexpected, Visitor};
use serde_json::{Map, Value};

/// Decode a JSON document as Go's `encoding/json` would decode it into `T`. For absent members to
/// get their zero value, `T`'s structs carry `#[serde(default)]`. As dockerd's `json.Decoder`,
/// it reads the first JSON value and ignores what follows it.
pub fn from_slice<T: de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let v = match serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .next()
    {
        Some(v) => v?,
        None => return Err(de::Error::custom("unexpected end of JSON input")),
    };
    T::deserialize(Lenient(v))
}

/// Decode an already parsed JSON value with the same rules as [`from_slice`].
pub fn from_value<T: de::DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Lenient(v))
}

/// A deserializer over a JSON value that turns `null` into zero values and matches struct
/// field names case-insensitively.
pub struct Lenient(pub Value);

fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (None, Some(i), _) => Unexpected::Signed(i),
            (None, None, Some(f)) => Unexpected::Float(f),
            _ => Unexpected::Other("number"),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

fn wrong_type<'de, V: Visitor<'de>>(v: &Value, visitor: &V) -> serde_json::Error {
    de::Error::invalid_type(unexpected(v), visitor)
}

/// A scalar target: `null` gives `$zero`, anything else is decoded by serde_json itself.
macro_rules! scalar {
    ($($method:ident => |$vis:ident| $zero:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, $vis: V) -> Result<V::Value, Self::Error> {
            match self.0 {
                Value::Null => $zero,
                v => v.$method($vis),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Lenient {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(a) => visitor.visit_seq(Seq(a.into_iter())),
            Value::Object(m) => visitor.visit_map(Members::new(m, None)),
            v => v.deserialize_any(visitor),
        }
    }

    scalar! {
        deserialize_bool => |visitor| visitor.visit_bool(false);
        deserialize_i8 => |visitor| visitor.visit_i8(0);
        deserialize_i16 => |visitor| visitor.visit_i16(0);
        deserialize_i32 => |visitor| visitor.visit_i32(0);
        deserialize_i64 => |visitor| visitor.visit_i64(0);
        deserialize_i128 => |visitor| visitor.visit_i128(0);
        deserialize_u8 => |visitor| visitor.visit_u8(0);
        deserialize_u16 => |visitor| visitor.visit_u16(0);
        deserialize_u32 => |visitor| visitor.visit_u32(0);
        deserialize_u64 => |visitor| visitor.visit_u64(0);
        deserialize_u128 => |visitor| visitor.visit_u128(0);
        deserialize_f32 => |visitor| visitor.visit_f32(0.0);
        deserialize_f64 => |visitor| visitor.visit_f64(0.0);
        deserialize_char => |visitor| visitor.visit_char('\0');
        deserialize_str => |visitor| visitor.visit_str("");
        deserialize_string => |visitor| visitor.visit_string(String::new());
        deserialize_bytes => |visitor| visitor.visit_bytes(&[]);
        deserialize_byte_buf => |visitor| visitor.visit_byte_buf(Vec::new());
        deserialize_unit => |visitor| visitor.visit_unit();
        deserialize_identifier => |visitor| visitor.visit_str("");
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            v => visitor.visit_some(Lenient(v)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_seq(Seq(Vec::new().into_iter())),
            Value::Array(a) => visitor.visit_seq(Seq(a.into_iter())),
            v => Err(wrong_type(&v, &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_map(Members::new(Map::new(), None)),
            Value::Object(m) => visitor.visit_map(Members::new(m, None)),
            v => Err(wrong_type(&v, &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_map(Members::new(Map::new(), None)),
            Value::Object(m) => visitor.visit_map(Members::new(m, Some(fields))),
            v => Err(wrong_type(&v, &visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }
}

/// Array elements, each decoded leniently.
struct Seq(std::vec::IntoIter<Value>);

impl<'de> de::SeqAccess<'de> for Seq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Lenient(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// Object members, each value decoded leniently. For a struct (`fields` given), a key that is
/// not a field name is replaced by the field name it equals case-insensitively, as Go matches,
/// or dropped when it equals none;
/// when two keys fall on one field, the exact spelling wins (instead of serde's "duplicate
/// field" error).
struct Members {
    iter: std::vec::IntoIter<(String, Value)>,
    value: Option<Value>,
}

impl Members {
    fn new(m: Map<String, Value>, fields: Option<&'static [&'static str]>) -> Members {
        let entries: Vec<(String, Value)> = match fields {
            None => m.into_iter().collect(),
            Some(fields) => {
                let mut out: Vec<(String, Value, bool)> = Vec::with_capacity(m.len());
                for (k, v) in m {
                    // A key that names no field is dropped here (serde would skip it): `out`
                    // then never holds more entries than the struct has fields, so a body of
                    // many unknown keys costs linear time.
                    let (name, exact) = if fields.contains(&k.as_str()) {
                        (k, true)
                    } else {
                        match fields.iter().find(|f| f.eq_ignore_ascii_case(&k)) {
                            Some(f) => ((*f).to_string(), false),
                            None => continue,
                        }
                    };
                    match out.iter_mut().find(|(n, _, _)| *n == name) {
                        Some(slot) if exact || !slot.2 => *slot = (name, v, exact),
                        Some(_) => {}
                        None => out.push((name, v, exact)),
                    }
                }
                out.into_iter().map(|(n, v, _)| (n, v)).collect()
            }
        };
        Members {
            iter: entries.into_iter(),
            value: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for Members {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(Value::String(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        seed.deserialize(Lenient(self.value.take().unwrap_or(Value::Null)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// Split the members of a JSON object into those whose names equal one of `names`
/// case-insensitively (under that name) and the rest, for bodies that nest some objects
/// beside members of their own (`POST /containers/create`).
pub fn take_members(
    m: &mut Map<String, Value>,
    names: &[&'static str],
) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for name in names {
        let exact = m.remove(*name);
        let folded: Vec<String> = m
            .keys()
            .filter(|k| k.eq_ignore_ascii_case(name))
            .cloned()
            .collect();
        let mut found = exact;
        for k in folded {
            if let Some(v) = m.remove(&k) {
                found.get_or_insert(v);
            }
        }
        if let Some(v) = found {
            out.push((*name, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Inner {
        interval: i64,
        name: String,
        on: bool,
        list: Vec<String>,
        opt: Option<Vec<u32>>,
        map: BTreeMap<String, String>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Outer {
        inner: Inner,
        maybe: Option<Inner>,
        items: Vec<Inner>,
        float: f64,
    }

    #[test]
    fn null_is_the_zero_value_everywhere() {
        let body = br#"{"Inner":{"Interval":null,"Name":null,"On":null,"List":null,"Opt":null,
            "Map":{"a":null,"b":"x"}},"Maybe":null,"Items":[null,{"List":["a",null]}],
            "Float":null,"Unknown":{"deep":[1,2]}}"#;
        let o: Outer = from_slice(body).unwrap();
        assert_eq!(o.inner.interval, 0);
        assert_eq!(o.inner.map["a"], "");
        assert_eq!(o.inner.map["b"], "x");
        assert_eq!(o.maybe, None);
        assert_eq!(o.items.len(), 2);
        assert_eq!(o.items[0], Inner::default());
        assert_eq!(o.items[1].list, vec!["a".to_string(), String::new()]);
        let whole: Outer = from_slice(b"null").unwrap();
        assert_eq!(whole, Outer::default());
        // What follows the first value is not read, as by Go's json.Decoder.
        let first: Outer = from_slice(br#"{"Float":1.5} {"Float":2} trailing"#).unwrap();
        assert_eq!(first.float, 1.5);
    }

    #[test]
    fn field_names_match_case_insensitively_exact_first() {
        let o: Inner = from_slice(br#"{"interval":5,"NAME":"n","on":true}"#).unwrap();
        assert_eq!((o.interval, o.name.as_str(), o.on), (5, "n", true));
        // Two spellings of one field: the exact one wins, whatever the order.
        let o: Inner = from_slice(br#"{"name":"folded","Name":"exact","NAME":"x"}"#).unwrap();
        assert_eq!(o.name, "exact");
        // Map keys are data: they keep their spelling.
        let o: Inner = from_slice(br#"{"map":{"Key":"v"}}"#).unwrap();
        assert_eq!(o.map["Key"], "v");
    }

    #[test]
    fn only_a_wrong_type_is_an_error() {
        for bad in [
            &br#"{"Inner":{"Interval":"5"}}"#[..],
            br#"{"Inner":{"Name":5}}"#,
            br#"{"Inner":{"On":"true"}}"#,
            br#"{"Inner":{"List":"a"}}"#,
            br#"{"Inner":[]}"#,
            br#"{"Items":{}}"#,
            br#"[]"#,
            br#"{"Inner":"#,
            b"",
        ] {
            assert!(
                from_slice::<Outer>(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn members_are_taken_by_folded_name() {
        let mut m = serde_json::json!({"hostconfig": {"A": 1}, "Image": "x"});
        let Value::Object(m) = &mut m else {
            unreachable!("an object literal")
        };
        let taken = take_members(m, &["HostConfig", "NetworkingConfig"]);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, "HostConfig");
        assert!(m.contains_key("Image") && !m.contains_key("hostconfig"));
    }
}

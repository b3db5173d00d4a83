//! An event's `Serialize`, refusing a NaN or infinite float.
//!
//! JSON has no such numbers: serde_json writes them as `null`, which then
//! does not read back as a float. An event recorded (history, audit log),
//! streamed as JSON or sent to a broker that way would be accepted now and
//! refused when read, replayed or received. [`Finite`] wraps a value's
//! `Serialize` so that such a float is an error where it is written, naming
//! the field it is in; everything else is passed through to the serializer
//! unchanged (the wrappers are inlined away).

use serde::ser::{self, Serialize, Serializer};
use std::fmt;

/// `value`, serialized by the same serializer, with every float checked.
pub(crate) struct Finite<'a, T: ?Sized> {
    value: &'a T,
    /// The struct field the value is in (the innermost), for the error.
    field: Option<&'static str>,
}

impl<'a, T: ?Sized> Finite<'a, T> {
    pub(crate) fn new(value: &'a T) -> Self {
        Finite { value, field: None }
    }
}

impl<T: ?Sized + Serialize> Serialize for Finite<'_, T> {
    #[inline]
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Checked {
            inner: serializer,
            field: self.field,
        })
    }
}

/// A serializer (or one of its compound parts) that checks floats and
/// passes everything else to `inner`.
struct Checked<S> {
    inner: S,
    field: Option<&'static str>,
}

impl<S> Checked<S> {
    #[inline]
    fn wrap<'a, T: ?Sized>(&self, value: &'a T) -> Finite<'a, T> {
        Finite {
            value,
            field: self.field,
        }
    }
}

#[cold]
fn not_finite<E: ser::Error>(value: f64, field: Option<&'static str>) -> E {
    let what = if value.is_nan() {
        "NaN"
    } else {
        "an infinite float"
    };
    match field {
        Some(field) => E::custom(format_args!(
            "field `{field}` is {what}, which JSON cannot hold (it would be written as null and \
             not read back)"
        )),
        None => E::custom(format_args!(
            "a value is {what}, which JSON cannot hold (it would be written as null and not read \
             back)"
        )),
    }
}

macro_rules! pass {
    ($($method:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.inner.$method(v)
        }
    )*};
}

impl<S: Serializer> Serializer for Checked<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Checked<S::SerializeSeq>;
    type SerializeTuple = Checked<S::SerializeTuple>;
    type SerializeTupleStruct = Checked<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Checked<S::SerializeTupleVariant>;
    type SerializeMap = Checked<S::SerializeMap>;
    type SerializeStruct = Checked<S::SerializeStruct>;
    type SerializeStructVariant = Checked<S::SerializeStructVariant>;

    pass! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_unit_struct(&'static str);
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        match v.is_finite() {
            true => self.inner.serialize_f32(v),
            false => Err(not_finite(f64::from(v), self.field)),
        }
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        match v.is_finite() {
            true => self.inner.serialize_f64(v),
            false => Err(not_finite(v, self.field)),
        }
    }

    #[inline]
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    #[inline]
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<S::Ok, S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_some(&value)
    }

    #[inline]
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }

    #[inline]
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_newtype_struct(name, &value)
    }

    #[inline]
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let value = self.wrap(value);
        self.inner
            .serialize_newtype_variant(name, index, variant, &value)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let field = self.field;
        Ok(Checked {
            inner: self.inner.serialize_seq(len)?,
            field,
        })
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let field = self.field;
        Ok(Checked {
            inner: self.inner.serialize_tuple(len)?,
            field,
        })
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let field = self.field;
        Ok(Checked {
            inner: self.inner.serialize_tuple_struct(name, len)?,
            field,
        })
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let field = self.field;
        Ok(Checked {
            inner: self
                .inner
                .serialize_tuple_variant(name, index, variant, len)?,
            field,
        })
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let field = self.field;
        Ok(Checked {
            inner: self.inner.serialize_map(len)?,
            field,
        })
    }

    #[inline]
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let field = self.field;
        Ok(Checked {
            inner: self.inner.serialize_struct(name, len)?,
            field,
        })
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let field = self.field;
        Ok(Checked {
            inner: self
                .inner
                .serialize_struct_variant(name, index, variant, len)?,
            field,
        })
    }

    #[inline]
    fn collect_str<T: ?Sized + fmt::Display>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(value)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// The compound parts: each element (field, key, value) is checked too.
macro_rules! elements {
    ($($trait:ident { $($method:ident),* })*) => {$(
        impl<S: ser::$trait> ser::$trait for Checked<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            $(
                #[inline]
                fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), S::Error> {
                    let value = self.wrap(value);
                    self.inner.$method(&value)
                }
            )*

            #[inline]
            fn end(self) -> Result<S::Ok, S::Error> {
                self.inner.end()
            }
        }
    )*};
}

elements! {
    SerializeSeq { serialize_element }
    SerializeTuple { serialize_element }
    SerializeTupleStruct { serialize_field }
    SerializeTupleVariant { serialize_field }
    SerializeMap { serialize_key, serialize_value }
}

/// Struct fields: the field's name is the one an error names.
macro_rules! fields {
    ($($trait:ident)*) => {$(
        impl<S: ser::$trait> ser::$trait for Checked<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            #[inline]
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), S::Error> {
                let value = Finite { value, field: Some(key) };
                self.inner.serialize_field(key, &value)
            }

            #[inline]
            fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
                self.inner.skip_field(key)
            }

            #[inline]
            fn end(self) -> Result<S::Ok, S::Error> {
                self.inner.end()
            }
        }
    )*};
}

fields! {
    SerializeStruct
    SerializeStructVariant
}

#[cfg(test)]
mod tests {
    use super::Finite;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Reading {
        sensor: &'static str,
        celsius: f64,
        history: Vec<f32>,
        extra: Option<BTreeMap<&'static str, (u8, f64)>>,
        inner: Inner,
    }

    #[derive(Serialize)]
    struct Inner {
        ratio: f64,
    }

    /// Flattened: serialized as a map, so with no field name to give.
    #[derive(Serialize)]
    struct Flattened {
        #[serde(flatten)]
        inner: Inner,
    }

    fn reading() -> Reading {
        Reading {
            sensor: "s1",
            celsius: 21.5,
            history: vec![1.0, 2.5],
            extra: Some(BTreeMap::from([("k", (1, 0.5))])),
            inner: Inner { ratio: 0.25 },
        }
    }

    fn json(value: &Reading) -> Result<String, String> {
        serde_json::to_string(&Finite::new(value)).map_err(|e| e.to_string())
    }

    #[test]
    fn finite_values_are_written_as_serde_json_writes_them() {
        let value = reading();
        assert_eq!(json(&value), Ok(serde_json::to_string(&value).unwrap()));
        assert_eq!(
            serde_json::to_value(Finite::new(&value)).unwrap(),
            serde_json::to_value(&value).unwrap()
        );
    }

    #[test]
    fn a_nan_or_infinite_float_is_an_error_naming_its_field() {
        type Change = fn(&mut Reading);
        let cases: [(Change, &str); 5] = [
            (|r| r.celsius = f64::NAN, "field `celsius` is NaN"),
            (
                |r| r.history[1] = f32::INFINITY,
                "field `history` is an infinite float",
            ),
            (
                |r| r.extra = Some(BTreeMap::from([("k", (1, f64::NEG_INFINITY))])),
                "field `extra` is an infinite float",
            ),
            (|r| r.inner.ratio = f64::NAN, "field `ratio` is NaN"),
            (|r| r.celsius = -0.0, ""),
        ];
        for (change, expected) in cases {
            let mut value = reading();
            change(&mut value);
            match (json(&value), expected) {
                (Ok(_), "") => {}
                (Err(message), expected) if !expected.is_empty() => {
                    assert!(message.contains(expected), "{message}");
                    assert!(message.contains("JSON cannot hold"), "{message}");
                }
                (result, expected) => panic!("{result:?}, expected {expected:?}"),
            }
            let as_value = serde_json::to_value(Finite::new(&value));
            assert_eq!(as_value.is_err(), !expected.is_empty());
        }
    }

    #[test]
    fn a_bare_or_flattened_float_has_no_field_to_name() {
        let err = serde_json::to_string(&Finite::new(&f64::NAN)).unwrap_err();
        assert!(err.to_string().starts_with("a value is NaN"), "{err}");
        let flattened = Flattened {
            inner: Inner { ratio: f64::NAN },
        };
        let err = serde_json::to_string(&Finite::new(&flattened)).unwrap_err();
        assert!(err.to_string().starts_with("a value is NaN"), "{err}");
    }
}

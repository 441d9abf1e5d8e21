//! The serde path: streams any self-describing deserializer (msgpack via rmp-serde,
//! `serde_json::Value`, JSON text) into the same sink as the scanner, in document order,
//! without building a DOM.

use crate::extract::{Extracted, Extractor};
use crate::fields::{Action, Matcher};
use crate::Scalar;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

struct Ctx<'x> {
    m: &'x Matcher,
    out: &'x mut Extracted,
}

/// Visits a map (the record, or an object on a wanted path).
struct MapSeed<'c, 'x> {
    ctx: &'c mut Ctx<'x>,
    mask: u128,
    off: usize,
    nested_ok: bool,
}

impl<'de> DeserializeSeed<'de> for MapSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MapSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some((leaf, desc, klen)) = map.next_key_seed(KeySeed {
            m: self.ctx.m,
            mask: self.mask,
            off: self.off,
        })? {
            if leaf == usize::MAX && desc == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            map.next_value_seed(ValueSeed {
                ctx: self.ctx,
                leaf,
                desc,
                off: self.off + klen + 1,
                nested_ok: self.nested_ok,
            })?;
        }
        Ok(())
    }
}

/// Matches a key; yields (leaf path index or MAX, descend mask, key length).
struct KeySeed<'x> {
    m: &'x Matcher,
    mask: u128,
    off: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = (usize, u128, usize);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = (usize, u128, usize);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<Self::Value, E> {
        let (leaf, desc) = self.m.step(self.mask, self.off, k.as_bytes());
        Ok((leaf, desc, k.len()))
    }
    fn visit_bytes<E: de::Error>(self, k: &[u8]) -> Result<Self::Value, E> {
        match std::str::from_utf8(k) {
            Ok(s) => self.visit_str(s),
            Err(_) => Ok((usize::MAX, 0, 0)),
        }
    }
    // Non-string keys (msgpack allows them) never match an alias.
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok((usize::MAX, 0, 0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok((usize::MAX, 0, 0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok((usize::MAX, 0, 0))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok((usize::MAX, 0, 0))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((usize::MAX, 0, 0))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok((usize::MAX, 0, 0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok((usize::MAX, 0, 0))
    }
}

struct ValueSeed<'c, 'x> {
    ctx: &'c mut Ctx<'x>,
    leaf: usize,
    desc: u128,
    off: usize,
    nested_ok: bool,
}

impl ValueSeed<'_, '_> {
    fn actions(&self) -> &[Action] {
        if self.leaf == usize::MAX {
            &[]
        } else {
            &self.ctx.m.actions[self.leaf]
        }
    }
    fn emit(&mut self, v: Scalar<'_>) {
        if self.leaf != usize::MAX {
            let m = self.ctx.m;
            self.ctx.out.on_value(&m.actions[self.leaf], &v);
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E: de::Error>(mut self, s: &str) -> Result<(), E> {
        self.emit(Scalar::Str(s));
        if self.nested_ok
            && self.actions().contains(&Action::Nested)
            && s.trim_start().starts_with('{')
        {
            // Validate first so a broken document changes nothing.
            if serde_json::from_str::<IgnoredAny>(s).is_ok() {
                let mut d = serde_json::Deserializer::from_str(s);
                let all = self.ctx.m.all;
                let seed = MapSeed {
                    ctx: self.ctx,
                    mask: all,
                    off: 0,
                    nested_ok: false,
                };
                seed.deserialize(&mut d).map_err(E::custom)?;
            }
        }
        Ok(())
    }
    fn visit_bytes<E: de::Error>(mut self, b: &[u8]) -> Result<(), E> {
        match std::str::from_utf8(b) {
            Ok(s) => self.visit_str(s),
            Err(_) => {
                self.emit(Scalar::Other);
                Ok(())
            }
        }
    }
    fn visit_u64<E: de::Error>(mut self, n: u64) -> Result<(), E> {
        self.emit(Scalar::UInt(n));
        Ok(())
    }
    fn visit_i64<E: de::Error>(mut self, n: i64) -> Result<(), E> {
        self.emit(Scalar::Int(n));
        Ok(())
    }
    fn visit_f64<E: de::Error>(mut self, f: f64) -> Result<(), E> {
        self.emit(Scalar::Float(f));
        Ok(())
    }
    fn visit_bool<E: de::Error>(mut self, b: bool) -> Result<(), E> {
        self.emit(Scalar::Bool(b));
        Ok(())
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.emit(Scalar::Null);
        Ok(())
    }
    fn visit_none<E: de::Error>(mut self) -> Result<(), E> {
        self.emit(Scalar::Null);
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(mut self, d: D) -> Result<(), D::Error> {
        IgnoredAny::deserialize(d)?;
        self.emit(Scalar::Other);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        if self.desc != 0 {
            MapSeed {
                ctx: &mut *self.ctx,
                mask: self.desc,
                off: self.off,
                nested_ok: self.nested_ok,
            }
            .visit_map(map)?;
        } else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        }
        self.emit(Scalar::Other);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.emit(Scalar::Other);
        Ok(())
    }
}

use serde::Deserialize as _;

impl Extractor {
    /// The serde path: reads one record (a map) from any self-describing deserializer.
    pub fn extract_de<'de, D: Deserializer<'de>>(&mut self, d: D) -> Result<&Extracted, D::Error> {
        self.out.reset();
        let mut ctx = Ctx {
            m: &self.m,
            out: &mut self.out,
        };
        let all = ctx.m.all;
        MapSeed {
            ctx: &mut ctx,
            mask: all,
            off: 0,
            nested_ok: true,
        }
        .deserialize(d)?;
        Ok(&self.out)
    }

    /// The serde path over an already-decoded value.
    pub fn extract_value(
        &mut self,
        v: &serde_json::Value,
    ) -> Result<&Extracted, serde_json::Error> {
        self.extract_de(v)
    }
}

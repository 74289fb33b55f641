//! Scalars that may be given literally or as `!env VAR` (PowerSync's config tag).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer, EnumAccess, VariantAccess, Visitor};

/// A config value of type `T`, written literally or as `!env VAR`. Environment lookups happen
/// while parsing, so a missing variable is reported with the line and column of the tag.
#[derive(Clone, PartialEq)]
pub struct Env<T>(pub T);

impl<T> Env<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Env<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de, T> Deserialize<'de> for Env<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EnvVisitor(PhantomData))
    }
}

struct EnvVisitor<T>(PhantomData<T>);

impl<T> EnvVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn parse<E: de::Error>(s: &str) -> Result<Env<T>, E> {
        s.parse::<T>()
            .map(Env)
            .map_err(|e| E::custom(format!("invalid value {s:?}: {e}")))
    }
}

impl<'de, T> Visitor<'de> for EnvVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = Env<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar value or `!env VARIABLE`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Self::parse(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Self::parse(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Self::parse(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Self::parse(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Self::parse(&v.to_string())
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let (tag, variant): (String, _) = data.variant()?;
        let tag = tag.trim_start_matches('!');
        if tag != "env" {
            return Err(de::Error::custom(format!(
                "unknown tag !{tag}; the only tag supported is !env VARIABLE"
            )));
        }
        let name: String = variant.newtype_variant()?;
        let value = std::env::var(&name).map_err(|_| {
            de::Error::custom(format!(
                "environment variable {name} (from !env) is not set"
            ))
        })?;
        Self::parse(&value)
    }
}

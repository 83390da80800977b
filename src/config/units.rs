//! Unit newtypes used by the configuration resources: [`Duration`] and [`ByteSize`].
//!
//! Both accept either a string with a unit (`"30s"`, `"10GB"`) or a bare
//! non-negative integer (seconds for durations, bytes for sizes), and both
//! serialize back to a string that parses to the same value.

use std::fmt;
use std::str::FromStr;

use schemars::gen::SchemaGenerator;
use schemars::schema::{
    InstanceType, Metadata, NumberValidation, Schema, SchemaObject, SubschemaValidation,
};
use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Error returned when a duration or size string cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The value is not a valid duration.
    #[error("invalid duration {0:?}: expected a number with a unit such as 30s, 1m, 1h")]
    Duration(String),
    /// The value is not a valid byte size.
    #[error(
        "invalid size {0:?}: expected a number with an optional unit such as 1024, 512MiB, 10GB \
         (KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024)"
    )]
    Size(String),
}

// ---------------------------------------------------------------------------
// Duration
// ---------------------------------------------------------------------------

/// A duration from the configuration.
///
/// Accepted forms:
/// - a humantime string: `"500ms"`, `"30s"`, `"1m"`, `"1h"`, `"1h30m"`, `"1h 30m"`;
/// - a bare non-negative integer (YAML number or all-digit string): seconds, so `ttl: 3600` is one hour.
///
/// Serializes as a humantime string (`"1h 30m"`), which parses back to the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The zero duration.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    /// The wrapped `std::time::Duration`.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whether this duration is zero.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = || UnitError::Duration(s.to_string());
        if t.is_empty() {
            return Err(err());
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse::<u64>().map(Duration::from_secs).map_err(|_| err());
        }
        humantime::parse_duration(t)
            .map(Duration)
            .map_err(|_| err())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 30s, 1m, 1h or a whole number of seconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(UnitError::Duration(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(UnitError::Duration(v.to_string())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> String {
        "Duration".to_string()
    }

    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        int_or_string_schema(
            "A duration such as \"500ms\", \"30s\", \"1m\", \"1h30m\", or a whole number of seconds.",
        )
    }
}

// ---------------------------------------------------------------------------
// ByteSize
// ---------------------------------------------------------------------------

/// A size in bytes from the configuration.
///
/// Accepted forms: a bare non-negative integer (bytes, YAML number or string
/// such as `"1024"`), or a number (integer or decimal) followed by a unit.
/// Units are case-insensitive and may be separated by a space:
///
/// | unit                      | bytes  |
/// |---------------------------|--------|
/// | `B`                       | 1      |
/// | `K`, `KB`                 | 10^3   |
/// | `M`, `MB`                 | 10^6   |
/// | `G`, `GB`                 | 10^9   |
/// | `T`, `TB`                 | 10^12  |
/// | `P`, `PB`                 | 10^15  |
/// | `Ki`, `KiB`               | 2^10   |
/// | `Mi`, `MiB`               | 2^20   |
/// | `Gi`, `GiB`               | 2^30   |
/// | `Ti`, `TiB`               | 2^40   |
/// | `Pi`, `PiB`               | 2^50   |
///
/// So `10GB` is 10 000 000 000 bytes while `10GiB` is 10 737 418 240 bytes
/// (SI vs IEC, the same convention as Kubernetes quantities). Fractions are
/// truncated to whole bytes (`1.5KB` = 1500, `0.5KiB` = 512).
///
/// Serializes as an exact string using the largest unit that divides the
/// value (`"10GB"`, `"512MiB"`, `"1234B"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// Units recognised by [`ByteSize`], lower-cased.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", bytesize::B),
    ("b", bytesize::B),
    ("k", bytesize::KB),
    ("kb", bytesize::KB),
    ("m", bytesize::MB),
    ("mb", bytesize::MB),
    ("g", bytesize::GB),
    ("gb", bytesize::GB),
    ("t", bytesize::TB),
    ("tb", bytesize::TB),
    ("p", bytesize::PB),
    ("pb", bytesize::PB),
    ("ki", bytesize::KIB),
    ("kib", bytesize::KIB),
    ("mi", bytesize::MIB),
    ("mib", bytesize::MIB),
    ("gi", bytesize::GIB),
    ("gib", bytesize::GIB),
    ("ti", bytesize::TIB),
    ("tib", bytesize::TIB),
    ("pi", bytesize::PIB),
    ("pib", bytesize::PIB),
];

/// Units used when formatting, largest first.
const DISPLAY_UNITS: &[(&str, u64)] = &[
    ("PiB", bytesize::PIB),
    ("PB", bytesize::PB),
    ("TiB", bytesize::TIB),
    ("TB", bytesize::TB),
    ("GiB", bytesize::GIB),
    ("GB", bytesize::GB),
    ("MiB", bytesize::MIB),
    ("MB", bytesize::MB),
    ("KiB", bytesize::KIB),
    ("KB", bytesize::KB),
];

impl ByteSize {
    /// `n` kibibytes (n * 1024).
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * bytesize::KIB)
    }

    /// `n` mebibytes (n * 2^20).
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * bytesize::MIB)
    }

    /// `n` gibibytes (n * 2^30).
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * bytesize::GIB)
    }

    /// The number of bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UnitError::Size(s.to_string());
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| u128::from(*m))
            .ok_or_else(err)?;
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty()
            || !digits_ok(int_part)
            || !digits_ok(frac_part)
            || (number.contains('.') && frac_part.is_empty())
        {
            return Err(err());
        }
        let int: u128 = int_part.parse().map_err(|_| err())?;
        let mut total = int.checked_mul(multiplier).ok_or_else(err)?;
        if !frac_part.is_empty() {
            // Keep at most 18 fractional digits: more cannot change the byte count.
            let frac_digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = frac_digits.parse().map_err(|_| err())?;
            let scale = 10u128.pow(u32::try_from(frac_digits.len()).map_err(|_| err())?);
            total = total
                .checked_add(frac * multiplier / scale)
                .ok_or_else(err)?;
        }
        u64::try_from(total).map(ByteSize).map_err(|_| err())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 {
            for (name, size) in DISPLAY_UNITS {
                if self.0.is_multiple_of(*size) {
                    return write!(f, "{}{}", self.0 / size, name);
                }
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as 512MiB, 10GB or a whole number of bytes")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom(UnitError::Size(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
        Err(E::custom(UnitError::Size(v.to_string())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> String {
        "ByteSize".to_string()
    }

    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        int_or_string_schema(
            "A size such as \"512MiB\" or \"10GB\" (GB = 10^9 bytes, GiB = 2^30 bytes), or a whole number of bytes.",
        )
    }
}

/// `anyOf: [integer >= 0, string]` marked `x-kubernetes-int-or-string`, so the
/// schema is also valid as a structural Kubernetes CRD schema.
fn int_or_string_schema(description: &str) -> Schema {
    let integer = SchemaObject {
        instance_type: Some(InstanceType::Integer.into()),
        number: Some(Box::new(NumberValidation {
            minimum: Some(0.0),
            ..Default::default()
        })),
        ..Default::default()
    };
    let string = SchemaObject {
        instance_type: Some(InstanceType::String.into()),
        ..Default::default()
    };
    let mut schema = SchemaObject {
        metadata: Some(Box::new(Metadata {
            description: Some(description.to_string()),
            ..Default::default()
        })),
        subschemas: Some(Box::new(SubschemaValidation {
            any_of: Some(vec![integer.into(), string.into()]),
            ..Default::default()
        })),
        ..Default::default()
    };
    schema
        .extensions
        .insert("x-kubernetes-int-or-string".to_string(), true.into());
    schema.into()
}

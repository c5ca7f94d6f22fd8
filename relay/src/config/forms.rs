//! How setting values are read, with errors in plain words: a list setting takes one value or
//! an array, each value parsed with a message that names it (`"10.0.0.300" is not an IP
//! address`), and booleans take coturn's spellings as well as TOML's (`yes`, `on`, `1`).

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// A value of a list setting.
pub trait ListItem: Sized {
    /// What a valid value is, as the end of "… is not": "an IP address".
    const WHAT: &'static str;
    fn from_text(text: &str) -> Option<Self>;
    fn from_integer(_: i64) -> Option<Self> {
        None
    }
}

impl ListItem for IpAddr {
    const WHAT: &'static str = "an IP address";
    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl ListItem for SocketAddr {
    const WHAT: &'static str = "an address with a port (192.0.2.10:3478, [2001:db8::10]:3478)";
    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl ListItem for IpNet {
    const WHAT: &'static str = "a network in CIDR form (10.9.0.0/24; a single host as /32 or /128)";
    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl ListItem for String {
    const WHAT: &'static str = "a quoted string";
    fn from_text(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl ListItem for PathBuf {
    const WHAT: &'static str = "a quoted file path";
    fn from_text(text: &str) -> Option<Self> {
        Some(text.into())
    }
}

impl ListItem for u16 {
    const WHAT: &'static str = "a port number (0 to 65535, unquoted)";
    fn from_text(_: &str) -> Option<Self> {
        None
    }
    fn from_integer(n: i64) -> Option<Self> {
        u16::try_from(n).ok()
    }
}

/// `deserialize_with` for list settings: one value or an array of them.
pub fn one_or_many<'de, D: Deserializer<'de>, T: ListItem>(d: D) -> Result<Vec<T>, D::Error> {
    d.deserialize_any(OneOrMany::<T>(PhantomData))
}

struct OneOrMany<T>(PhantomData<T>);

impl<'de, T: ListItem> Visitor<'de> for OneOrMany<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}, or an array of them", T::WHAT)
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<T>, E> {
        Item::<T>(PhantomData).visit_str(text).map(|item| vec![item])
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Vec<T>, E> {
        Item::<T>(PhantomData).visit_i64(n).map(|item| vec![item])
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Item::<T>(PhantomData))? {
            items.push(item);
        }
        Ok(items)
    }
}

/// One element of a list setting.
struct Item<T>(PhantomData<T>);

impl<'de, T: ListItem> DeserializeSeed<'de> for Item<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: ListItem> Visitor<'de> for Item<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::WHAT)
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        T::from_text(text).ok_or_else(|| E::custom(format_args!("{text:?} is not {}", T::WHAT)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        T::from_integer(n).ok_or_else(|| E::custom(format_args!("{n} is not {}", T::WHAT)))
    }
}

/// The boolean spellings accepted everywhere (TOML strings, flags, environment variables):
/// TOML's `true`/`false` and coturn's `yes`/`no`, `on`/`off`, `1`/`0`, in any case.
pub const BOOLEAN_WORDS: &str = "true, false, yes, no, on, off, 1 or 0";

/// A boolean written the way coturn or TOML write it.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{text:?} is not a yes/no value ({BOOLEAN_WORDS})")),
    }
}

/// `deserialize_with` for boolean settings: a TOML boolean, 0 or 1, or a string of
/// [`BOOLEAN_WORDS`].
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_any(Boolean).map(Some)
}

struct Boolean;

impl Visitor<'_> for Boolean {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a yes/no value ({BOOLEAN_WORDS})")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<bool, E> {
        Ok(b)
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<bool, E> {
        parse_bool(text).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<bool, E> {
        match n {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::custom(format_args!("{n} is not a yes/no value ({BOOLEAN_WORDS})"))),
        }
    }
}

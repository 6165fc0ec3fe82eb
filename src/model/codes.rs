//! [`code_list!`]: a closed enum of codes with its one spelling per variant, read with
//! `FromStr` and serde, written with `as_str`, `Display` and serde.

use std::fmt;

/// A text that is no code of the list it was read as. The text is cut to 40 characters: it
/// may come from anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCode {
    pub list: &'static str,
    pub text: String,
}

impl fmt::Display for UnknownCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a {}", self.text, self.list)
    }
}

impl std::error::Error for UnknownCode {}

impl UnknownCode {
    pub fn new(list: &'static str, text: &str) -> UnknownCode {
        UnknownCode {
            list,
            text: text.chars().take(40).collect(),
        }
    }
}

/// What every code list declared with [`code_list!`] offers generic code (reading a query
/// parameter as one, naming the allowed codes in an error).
pub trait Code: Copy + std::str::FromStr<Err = UnknownCode> + 'static {
    /// Every code, in order.
    fn all() -> &'static [Self];
    /// The code's one spelling.
    fn code(self) -> &'static str;
    /// Every code's spelling, comma-separated, for messages.
    fn listed() -> String {
        Self::all()
            .iter()
            .map(|c| c.code())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Declares a code list: `code_list! { /// doc  pub enum Name ("what it is") { Variant = "code", … } }`.
/// Variants keep their order (`Ord` follows it), and `ALL` lists them in it.
macro_rules! code_list {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every code, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code's one spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }
        }

        impl $crate::model::Code for $name {
            fn all() -> &'static [$name] {
                $name::ALL
            }
            fn code(self) -> &'static str {
                self.as_str()
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::model::UnknownCode;
            fn from_str(text: &str) -> Result<$name, $crate::model::UnknownCode> {
                match text {
                    $($code => Ok($name::$variant),)+
                    _ => Err($crate::model::UnknownCode::new($what, text)),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

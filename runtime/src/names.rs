//! Enums whose variants have one name each, written once: the name a config file, a
//! command line and an error message use (`"dpm-solver++"`, `"squaredcos_cap_v2"`).
//! [`named_enum!`](crate::named_enum) derives `NAMES`, `name`, `from_name`, `Display` and serde from one table.

/// Declares an enum with one name per variant: `NAMES` (in declaration order), `name()`,
/// `from_name()`, `expected()` ("one of a, b, c"), `Display`, `Serialize` and
/// `Deserialize` (an unknown name is an error listing the names). The crate using it needs
/// `serde` as a dependency.
///
/// ```
/// ddpm_runtime::named_enum! {
///     /// A block of the down path.
///     pub enum DownBlock {
///         DownBlock2D => "DownBlock2D",
///         AttnDownBlock2D => "AttnDownBlock2D",
///     }
/// }
/// assert_eq!(DownBlock::from_name("AttnDownBlock2D"), Some(DownBlock::AttnDownBlock2D));
/// assert_eq!(DownBlock::expected(), "one of DownBlock2D, AttnDownBlock2D");
/// let e = serde_json::from_str::<DownBlock>("\"CrossAttnDownBlock2D\"").unwrap_err();
/// assert!(e.to_string().contains("expected one of DownBlock2D, AttnDownBlock2D"));
/// ```
#[macro_export]
macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $var),+
        }

        impl $name {
            /// The names of the variants, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            /// The name of this variant.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$var => $s),+
                }
            }
            /// The variant of this name, if any.
            pub fn from_name(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($name::$var),)+
                    _ => None,
                }
            }
            /// "one of a, b, c": the names, for error messages.
            pub fn expected() -> String {
                format!("one of {}", Self::NAMES.join(", "))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Self::from_name(&s).ok_or_else(|| {
                    <D::Error as serde::de::Error>::custom(format!("found \"{s}\", expected {}", Self::expected()))
                })
            }
        }
    };
}

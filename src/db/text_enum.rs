//! `text_enum!`: a Rust enum stored in a TEXT column (guarded by a CHECK
//! constraint in the migration). One table of variant ⇄ text generates
//! `as_str`, `parse`, `Display` and diesel's `ToSql`/`FromSql` for `Text`, so
//! models hold the enum and queries filter with it. The texts are the stored
//! values: changing one needs a migration.

/// Declares a `Copy` enum mapped to a TEXT column:
///
/// ```text
/// text_enum! {
///     pub enum Status { Draft = "draft", Live = "live" }
/// }
/// ```
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            #[allow(dead_code)]
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The variant stored as `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg>>::to_sql(
                    self.as_str(),
                    out,
                )
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = std::str::from_utf8(value.as_bytes())?;
                $name::parse(text).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?}"), text).into()
                })
            }
        }
    };
}

pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use crate::db::{
        bans, channels, grants, notifications, orders, passes, recordings, streams, webhooks,
    };

    /// Every variant reads back from its text, and no two share one (a copy
    /// and paste slip would store one variant as another).
    macro_rules! round_trip {
        ($($t:ty),+ $(,)?) => {$({
            let mut texts = std::collections::HashSet::new();
            for v in <$t>::ALL {
                assert_eq!(<$t>::parse(v.as_str()), Some(*v), "{}", stringify!($t));
                assert_eq!(v.to_string(), v.as_str());
                assert!(texts.insert(v.as_str()), "{}: {} twice", stringify!($t), v);
            }
            assert_eq!(<$t>::parse("no such text"), None);
        })+};
    }

    #[test]
    fn every_variant_reads_back_from_its_one_text() {
        round_trip!(
            streams::Status,
            streams::AccessKind,
            streams::IngressKind,
            channels::Role,
            recordings::Status,
            recordings::Backend,
            recordings::PartStatus,
            orders::Status,
            orders::ProviderKind,
            bans::Kind,
            grants::Source,
            notifications::Kind,
            passes::Scope,
            webhooks::DeliveryStatus,
        );
    }
}

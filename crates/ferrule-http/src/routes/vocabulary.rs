//! The API's closed vocabularies as OpenAPI enums.
//!
//! The domain types (`Role`, ACL `Effect`…) live in crates that do not know
//! OpenAPI; these mirrors only describe their serialized names, so clients
//! and schemathesis see the exact values the server accepts. A test below
//! keeps each list equal to what the domain type parses.

use utoipa::ToSchema;

/// A role, lowest first: viewers read, editors change devices and data,
/// owners also manage users and keys, admins run the instance.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RoleName {
    Viewer,
    Editor,
    Owner,
    Admin,
}

/// Whether an ACL rule allows or denies.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum EffectName {
    Allow,
    Deny,
}

/// What an ACL rule governs.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ActionName {
    Publish,
    Subscribe,
    All,
}

/// Whom an ACL rule governs: devices, users (users and API keys),
/// anonymous clients or all.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum SubjectName {
    Devices,
    Users,
    Anonymous,
    All,
}

/// How a device proves who it is.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum CredentialType {
    Token,
    Password,
    X509,
}

/// How points are combined per bucket.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum AggName {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    First,
    Last,
}

/// Which end of a range a limited read keeps.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum OrderName {
    Asc,
    Desc,
}

/// The export's format.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

/// A retention in days, 1 to 36,500 (a hundred years).
pub struct Days;

impl utoipa::PartialSchema for Days {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(36_500))
            .description(Some("Days, 1 to 36,500"))
            .into()
    }
}

impl ToSchema for Days {}

/// [`Days`], or `null` (in a merge patch: remove it).
pub struct DaysOrNull;

impl utoipa::PartialSchema for DaysOrNull {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .minimum(Some(1))
            .maximum(Some(36_500))
            .description(Some("Days, 1 to 36,500; null removes the profile"))
            .into()
    }
}

impl ToSchema for DaysOrNull {}

/// A map of device profiles (1 to 256 characters) to [`Days`], or to
/// [`DaysOrNull`] in a merge patch.
fn profiles(nullable: bool) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let names = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(256));
    let kinds: Vec<Type> = if nullable {
        vec![Type::Object, Type::Null]
    } else {
        vec![Type::Object]
    };
    let days = if nullable {
        <DaysOrNull as utoipa::PartialSchema>::schema()
    } else {
        <Days as utoipa::PartialSchema>::schema()
    };
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter(kinds))
        .property_names(Some(names))
        .additional_properties(Some(days))
        .description(Some("Retention in days per device profile"))
        .into()
}

/// [`profiles`] as in `PUT`.
pub fn profiles_put() -> utoipa::openapi::schema::Schema {
    profiles(false)
}

/// [`profiles`] as in a merge patch.
pub fn profiles_patch() -> utoipa::openapi::schema::Schema {
    profiles(true)
}

/// A time parameter: milliseconds since the Unix epoch or RFC 3339.
pub fn time_param() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^-?[0-9]{1,15}$"))
                .description(Some("Milliseconds since the Unix epoch")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some("An RFC 3339 time")),
        )
        .into()
}

#[cfg(test)]
mod tests {
    use ferrule_core::Role;
    use ferrule_core::acl::{AclAction, AclSubject, Effect};
    use ferrule_store::telemetry::Agg;
    use serde::de::DeserializeOwned;

    fn names<T: ToSchemaNames>() -> Vec<String> {
        T::names()
    }

    trait ToSchemaNames {
        fn names() -> Vec<String>;
    }

    impl<T: utoipa::ToSchema> ToSchemaNames for T {
        fn names() -> Vec<String> {
            let schema = serde_json::to_value(T::schema()).unwrap();
            schema["enum"]
                .as_array()
                .expect("an enum schema")
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        }
    }

    fn all_parse<D: DeserializeOwned>(names: &[String]) {
        for n in names {
            serde_json::from_value::<D>(serde_json::Value::String(n.clone()))
                .unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn each_vocabulary_is_exactly_what_the_domain_parses() {
        let roles = names::<super::RoleName>();
        all_parse::<Role>(&roles);
        assert_eq!(roles.len(), 4);
        all_parse::<Effect>(&names::<super::EffectName>());
        all_parse::<AclAction>(&names::<super::ActionName>());
        all_parse::<AclSubject>(&names::<super::SubjectName>());
        assert_eq!(
            names::<super::CredentialType>(),
            ["token", "password", "x509"]
        );
        all_parse::<Agg>(&names::<super::AggName>());
        // Nothing outside the documented names parses.
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}

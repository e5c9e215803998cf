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

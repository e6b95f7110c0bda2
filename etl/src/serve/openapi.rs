//! The OpenAPI 3.1 document of the read API, built at start-up from the served tables with
//! utoipa's builders: the types are data, so their paths and row schemas are data too.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Ref, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, RefOr, Required,
};

use super::query::{Field, Shape, Table, DEFAULT_LIMIT, MAX_LIMIT};

/// The name of the bearer scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";
/// The error body's schema (`{"error": code, "message": sentence}`).
const ERROR: &str = "Error";

/// The document for `tables`; `secured` when the server requires the API token (the document
/// then says so on every data operation, and lists 401 among its answers).
pub fn document(tables: &[&Table], secured: bool) -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut components = ComponentsBuilder::new().schema(ERROR, error_schema());
    for table in tables {
        let name = table.name();
        components = components
            .schema(name, row_schema(table))
            .schema(format!("{name}_page"), page_schema(name))
            .schema(format!("{name}_history"), history_schema(table));
        let key = &table.fields[table.key];
        let id = ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(format!("The {name} entity's key ({})", key.name)))
            .schema(Some(integer()))
            .build();

        let get = operation(
            secured,
            format!("get_{name}"),
            format!("The current {name} row"),
            &format!("#/components/schemas/{name}"),
        )
        .parameter(id.clone())
        .response("404", error_response("No such id"))
        .build();
        paths = paths.path(
            format!("/api/v1/{name}/{{id}}"),
            PathItem::new(HttpMethod::Get, get),
        );

        let mut list = operation(
            secured,
            format!("list_{name}"),
            format!(
                "{name} rows in key order, a page at a time (keyset pagination: pass the \
                 answer's next_after as after)"
            ),
            &format!("#/components/schemas/{name}_page"),
        );
        for &i in &table.filters {
            let field = &table.fields[i];
            list = list.parameter(
                ParameterBuilder::new()
                    .name(&field.name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(format!("Only rows whose {} equals this", field.name)))
                    .schema(Some(value_schema(field, false)))
                    .build(),
            );
        }
        list = list
            .parameter(
                ParameterBuilder::new()
                    .name("after")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(format!(
                        "Only rows whose {} is greater (the previous page's next_after)",
                        key.name
                    )))
                    .schema(Some(integer()))
                    .build(),
            )
            .parameter(
                ParameterBuilder::new()
                    .name("limit")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(format!(
                        "Rows per page (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})"
                    )))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .maximum(Some(MAX_LIMIT))
                            .build(),
                    ))
                    .build(),
            );
        paths = paths.path(
            format!("/api/v1/{name}"),
            PathItem::new(HttpMethod::Get, list.build()),
        );

        let history = operation(
            secured,
            format!("history_{name}"),
            format!(
                "Every version of a {name} entity the warehouse's raw zone still holds, in \
                 version order; older versions retired to the lake are counted, not listed"
            ),
            &format!("#/components/schemas/{name}_history"),
        )
        .parameter(id)
        .response(
            "404",
            error_response("Neither a row nor a version of this id"),
        )
        .build();
        paths = paths.path(
            format!("/api/v1/{name}/{{id}}/history"),
            PathItem::new(HttpMethod::Get, history),
        );
    }
    if secured {
        components = components.security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The API token (api_token_file or ETL_API_TOKEN) as a bearer token",
                    ))
                    .build(),
            ),
        );
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("etl read API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The warehouse's current rows, keyset lists and raw version histories of \
                     every declared event type. Timestamps are RFC 3339 (the warehouse's \
                     zone-less times read as UTC); numeric columns are exact decimal strings.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}

/// A GET operation answering `ok_schema` (a `$ref`) with 200, and the errors every data
/// operation may answer.
fn operation(secured: bool, id: String, summary: String, ok_schema: &str) -> OperationBuilder {
    let mut op = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary))
        .response(
            "200",
            ResponseBuilder::new().description("OK").content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::new(ok_schema)))
                    .build(),
            ),
        )
        .response(
            "400",
            error_response("A bad parameter (the message names it)"),
        )
        .response(
            "503",
            error_response(
                "Too many requests in flight, the statement timeout, or the warehouse is down",
            ),
        );
    if secured {
        op = op
            .security(SecurityRequirement::new(BEARER, Vec::<String>::new()))
            .response(
                "401",
                error_response("Without the API token, or a wrong one"),
            );
    }
    op
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ERROR)))
                .build(),
        )
        .build()
}

fn error_schema() -> Schema {
    ObjectBuilder::new()
        .property("error", string())
        .property("message", string())
        .required("error")
        .required("message")
        .build()
        .into()
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .build()
        .into()
}

/// A row: every field, always present, typed from its SQL type; `[type, "null"]` where the
/// table allows NULL.
fn row_schema(table: &Table) -> Schema {
    let mut row = ObjectBuilder::new()
        .description(Some(format!(
            "A row of the warehouse table {} (type {})",
            table.kind.table,
            table.name()
        )))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for field in &table.fields {
        row = row
            .property(&field.name, value_schema(field, field.nullable))
            .required(&field.name);
    }
    row.build().into()
}

/// The JSON schema of one field's value (see [`Shape`]).
pub fn value_schema(field: &Field, nullable: bool) -> RefOr<Schema> {
    let (kind, format) = match field.shape {
        Shape::Int8 => (
            Type::Integer,
            Some(SchemaFormat::KnownFormat(KnownFormat::Int64)),
        ),
        Shape::Int4 => (
            Type::Integer,
            Some(SchemaFormat::KnownFormat(KnownFormat::Int32)),
        ),
        Shape::Float8 => (
            Type::Number,
            Some(SchemaFormat::KnownFormat(KnownFormat::Double)),
        ),
        Shape::Bool => (Type::Boolean, None),
        Shape::Text | Shape::AsText => (Type::String, None),
        Shape::Timestamp | Shape::TimestampTz => (
            Type::String,
            Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
        ),
        Shape::Date => (
            Type::String,
            Some(SchemaFormat::KnownFormat(KnownFormat::Date)),
        ),
        Shape::Uuid => (Type::String, Some(SchemaFormat::Custom("uuid".into()))),
        Shape::Decimal => (Type::String, Some(SchemaFormat::Custom("decimal".into()))),
        Shape::Json => {
            return ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .build()
                .into()
        }
    };
    let schema_type = if nullable {
        [kind, Type::Null].into_iter().collect()
    } else {
        SchemaType::new(kind)
    };
    let mut schema = ObjectBuilder::new().schema_type(schema_type).format(format);
    if field.shape == Shape::Decimal {
        schema = schema.pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$|^NaN$"));
    }
    schema.build().into()
}

fn page_schema(name: &str) -> Schema {
    ObjectBuilder::new()
        .property(
            "items",
            ArrayBuilder::new().items(Ref::from_schema_name(name)),
        )
        .property(
            "next_after",
            ObjectBuilder::new()
                .schema_type(
                    [Type::Integer, Type::Null]
                        .into_iter()
                        .collect::<SchemaType>(),
                )
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .description(Some(
                    "The after of the next page; null on the last page".to_owned(),
                )),
        )
        .required("items")
        .required("next_after")
        .build()
        .into()
}

fn history_schema(table: &Table) -> Schema {
    let version = ObjectBuilder::new()
        .property(
            "event_id",
            string().format(Some(SchemaFormat::Custom("uuid".into()))),
        )
        .property(
            "event_at",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .property(
            "payload",
            ObjectBuilder::new().schema_type(SchemaType::AnyValue),
        )
        .required("event_id")
        .required("event_at")
        .required("payload");
    ObjectBuilder::new()
        .property("type", string())
        .property("id", integer())
        .property(
            "versions",
            ArrayBuilder::new().items(version).description(Some(format!(
                "The raw {} events of this entity, in version order",
                table.name()
            ))),
        )
        .property(
            "retired_versions",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0)),
        )
        .property(
            "complete",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some(
                    "false when older versions are in the lake only, or when only the newest \
                     1000 versions are answered",
                )),
        )
        .property(
            "note",
            ObjectBuilder::new().schema_type(
                [Type::String, Type::Null]
                    .into_iter()
                    .collect::<SchemaType>(),
            ),
        )
        .required("type")
        .required("id")
        .required("versions")
        .required("retired_versions")
        .required("complete")
        .required("note")
        .build()
        .into()
}

//! A JSON object's fields, read one at a time with errors that name the field in `param`.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// A JSON object's fields, read with errors that name the field.
pub(super) struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// Prefix of `param` names (`messages[0].` for a message's fields).
    prefix: String,
}

pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The body must be a JSON object.
pub(super) fn as_object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "The request body must be a JSON object, got {}.",
                type_name(body)
            ),
        )
    })
}

/// An array's item that must be an object, read as fields named `param.…`.
pub(super) fn item_fields<'a>(param: &str, item: &'a Value) -> Result<Fields<'a>, ApiError> {
    match item.as_object() {
        Some(map) => Ok(Fields::new(map, format!("{param}."))),
        None => Err(ApiError::invalid_param(
            param.to_string(),
            format!("'{param}' must be an object, got {}.", type_name(item)),
        )
        .with_code("invalid_type")),
    }
}

impl<'a> Fields<'a> {
    pub(super) fn new(map: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self {
            map,
            prefix: prefix.into(),
        }
    }

    pub(super) fn param(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The field's value; `null` counts as absent (clients send `null` for "default").
    pub(super) fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|value| !value.is_null())
    }

    pub(super) fn wrong_type(&self, name: &str, expected: &str, value: &Value) -> ApiError {
        ApiError::invalid_param(
            self.param(name),
            format!(
                "'{}' must be {expected}, got {}.",
                self.param(name),
                type_name(value)
            ),
        )
        .with_code("invalid_type")
    }

    pub(super) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(other) => Err(self.wrong_type(name, "a boolean", other)),
        }
    }

    pub(super) fn string(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value)),
            Some(other) => Err(self.wrong_type(name, "a string", other)),
        }
    }

    /// A finite number within `[min, max]`.
    pub(super) fn number(
        &self,
        name: &str,
        (min, max): (f64, f64),
    ) -> Result<Option<f64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let Some(number) = value.as_f64() else {
            return Err(self.wrong_type(name, "a number", value));
        };
        if !number.is_finite() || number < min || number > max {
            return Err(ApiError::invalid_param(
                self.param(name),
                format!(
                    "'{}' must be between {min} and {max}, got {number}.",
                    self.param(name)
                ),
            ));
        }
        Ok(Some(number))
    }

    /// An integer within `[min, max]` (an integral float such as `16.0` is accepted).
    pub(super) fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let integer = match value {
            Value::Number(number) => number.as_i64().or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            }),
            _ => None,
        };
        let out_of_range = || {
            ApiError::invalid_param(
                self.param(name),
                format!(
                    "'{}' must be an integer between {min} and {max}, got {value}.",
                    self.param(name)
                ),
            )
        };
        match integer {
            Some(integer) if (min..=max).contains(&integer) => Ok(Some(integer)),
            Some(_) => Err(out_of_range()),
            None if value.is_number() => Err(out_of_range()),
            None => Err(self.wrong_type(name, "an integer", value)),
        }
    }

    pub(super) fn object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(self.wrong_type(name, "an object", other)),
        }
    }

    /// Refuses a feature Hearth does not have when the field is present and not empty.
    pub(super) fn unsupported_unless_empty(&self, name: &str, what: &str) -> Result<(), ApiError> {
        let empty = match self.get(name) {
            None | Some(Value::Null) => true,
            Some(Value::String(text)) => text.is_empty(),
            Some(Value::Array(items)) => items.is_empty(),
            Some(Value::Object(map)) => map.is_empty(),
            Some(_) => false,
        };
        if empty {
            Ok(())
        } else {
            Err(ApiError::invalid_param(
                self.param(name),
                format!("{what} is not supported by Hearth."),
            )
            .with_code("unsupported_parameter"))
        }
    }
}

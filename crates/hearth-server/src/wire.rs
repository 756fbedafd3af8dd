//! What the wire types of every route share.
//!
//! The answers were once built as `serde_json::json!` objects, whose keys serde_json keeps in
//! sorted order (it is built without `preserve_order`). So that nothing changes on the wire,
//! the typed shapes declare their fields in that same sorted order, and the objects of other
//! crates that used to go through `json!` (the store's conversations and messages) are sent
//! as [`SortedKeys`]. [`assert_sorted`] checks it: the OpenAI shapes against what the
//! `json!` code wrote (`openai/golden.txt`), every other shape in `ui_contract.rs`.

use serde::{Serialize, Serializer};

/// A list: `{"data": [...], "object": "list"}` (`/v1/models`, `/api/conversations`).
#[derive(Debug, Serialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub object: &'static str,
}

impl<T> List<T> {
    pub fn new(data: Vec<T>) -> Self {
        Self {
            data,
            object: "list",
        }
    }
}

/// A value serialized with its object keys in sorted order, at every depth, whatever the
/// order its type declares them in.
#[derive(Debug, Clone, Copy)]
pub struct SortedKeys<T>(pub T);

impl<T: Serialize> Serialize for SortedKeys<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::to_value(&self.0)
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// Test helper: `value`'s JSON text has every object's keys in sorted order (the order of the
/// `json!` objects the typed shapes replaced), and the numbers `json!` would have written.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_sorted(value: &impl Serialize) {
    let direct = serde_json::to_string(value).unwrap();
    let through_value = serde_json::to_value(value).unwrap().to_string();
    assert_eq!(
        direct, through_value,
        "a wire type's fields are not declared in sorted order (or an f32 is sent as such)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Unsorted {
        zebra: u32,
        apple: u32,
    }

    #[test]
    fn sorted_keys_sorts_every_object() {
        let nested = vec![Unsorted { zebra: 1, apple: 2 }];
        assert_eq!(
            serde_json::to_string(&SortedKeys(&nested)).unwrap(),
            r#"[{"apple":2,"zebra":1}]"#
        );
        assert_sorted(&SortedKeys(&nested));
        assert_sorted(&List::new(vec![SortedKeys(Unsorted {
            zebra: 1,
            apple: 2,
        })]));
    }

    #[test]
    #[should_panic(expected = "sorted order")]
    fn unsorted_fields_are_caught() {
        assert_sorted(&Unsorted { zebra: 1, apple: 2 });
    }
}

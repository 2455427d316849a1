//! Writing children: server-side apply with the operator's field manager,
//! but only when the live object differs from the desired one, so a resync
//! of an unchanged ChatBot performs reads only.

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub const FIELD_MANAGER: &str = "chat-platform-operator";

/// Whether every field the operator sets already has that value in `live`.
/// Fields the API server adds (defaults, status, managed fields) are
/// ignored; an empty desired list/map matches an absent one (the server
/// drops them); quantities compare by value ("0.5" = "500m").
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => {
            want.iter().all(|(key, value)| match have.get(key) {
                Some(live) => is_subset(value, live),
                None => is_empty(value),
            })
        }
        (Value::Object(want), Value::Null) => want.values().all(is_empty),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        (Value::Array(want), Value::Null) => want.is_empty(),
        (Value::String(want), Value::String(have)) => {
            want == have || quantity(want).is_some_and(|w| quantity(have) == Some(w))
        }
        (Value::Number(want), Value::Number(have)) => want.as_f64() == have.as_f64(),
        (want, have) => want == have,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.values().all(is_empty),
        _ => false,
    }
}

/// A Kubernetes quantity in millis of its unit ("1.5Gi", "250m", "2k"), to
/// compare what the operator wrote with the server's canonical form.
pub fn quantity(text: &str) -> Option<i128> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    #[allow(clippy::cast_possible_truncation)] // millis of a quantity fit easily
    Some((value * multiplier * 1000.0).round() as i128)
}

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Applied,
}

/// Makes the live object match `desired`: one GET, and a server-side apply
/// only when something differs. Returns the live object afterwards.
pub async fn ensure<K>(api: &Api<K>, desired: &K) -> Result<(K, Outcome), kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    if let Some(live) = api.get_opt(&name).await? {
        let want = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
        let have = serde_json::to_value(&live).map_err(kube::Error::SerdeError)?;
        if is_subset(&want, &have) {
            return Ok((live, Outcome::Unchanged));
        }
    }
    // `force`: the operator owns these fields; a hand edit is reverted,
    // as a controller should (a conflict would only stall it).
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api.patch(&name, &params, &Patch::Apply(desired)).await?;
    Ok((applied, Outcome::Applied))
}

/// Deletes `name` if it exists and is controlled by `owner_uid` (an object
/// someone else made under the same name is left alone). Returns whether
/// it deleted something.
pub async fn remove_owned<K>(api: &Api<K>, name: &str, owner_uid: &str) -> Result<bool, kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    match api.get_opt(name).await? {
        Some(live) => delete_owned(api, &live, owner_uid).await,
        None => Ok(false),
    }
}

/// Deletes `live` if `owner_uid` controls it. Returns whether it did.
pub async fn delete_owned<K>(api: &Api<K>, live: &K, owner_uid: &str) -> Result<bool, kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let owned = live
        .owner_references()
        .iter()
        .any(|owner| owner.uid == owner_uid && owner.controller == Some(true));
    if !owned {
        return Ok(false);
    }
    match api
        .delete(&live.name_any(), &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_and_extra_fields_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}});
        let live = json!({"spec": {"replicas": 2, "progressDeadlineSeconds": 600, "template": {"containers": [{"name": "a", "terminationMessagePath": "/dev/termination-log", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}, "status": {"replicas": 2}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_value_or_list_is_drift() {
        let desired = json!({"spec": {"replicas": 3}});
        assert!(!is_subset(&desired, &json!({"spec": {"replicas": 2}})));
        let desired = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        assert!(!is_subset(
            &desired,
            &json!({"env": [{"name": "A", "value": "1"}]})
        ));
        assert!(!is_subset(&json!({"a": "x"}), &json!({})));
    }

    #[test]
    fn empty_collections_match_absent_ones_and_quantities_compare_by_value() {
        assert!(is_subset(&json!({"a": [], "b": {}}), &json!({})));
        assert!(is_subset(
            &json!({"cpu": "0.5", "memory": "1Gi"}),
            &json!({"cpu": "500m", "memory": "1024Mi"})
        ));
        assert!(!is_subset(&json!({"cpu": "1"}), &json!({"cpu": "100m"})));
        assert_eq!(quantity("1.5Gi"), Some(1_610_612_736_000));
        assert_eq!(quantity("abc"), None);
    }
}

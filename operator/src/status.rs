//! Status of a ChatBot and its Bots from what the reconciler observed: pure,
//! so "which condition, which reason" is unit-tested. A condition keeps its
//! `lastTransitionTime` while its status stays the same, so an unchanged
//! world yields an identical status (and no write).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::bots::{Aggregate, Verdict};
use crate::crd::{BotStatus, ChatBotStatus, SecretKeyRef, ServiceStatus};
use crate::desired::Component;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const DATABASES_BOUND: &str = "DatabasesBound";
pub const ACCEPTED: &str = "Accepted";

/// Why a Secret key could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingReason {
    SecretNotFound,
    KeyMissing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBinding {
    pub secret: SecretKeyRef,
    pub reason: MissingReason,
}

/// What a component's Deployment reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RolloutState {
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
    /// The Deployment controller has seen the latest spec.
    pub observed: bool,
}

impl RolloutState {
    fn complete(&self) -> bool {
        self.observed && self.updated >= self.desired && self.available >= self.desired
    }
}

#[derive(Debug, Clone, Default)]
pub struct Observations {
    pub generation: Option<i64>,
    pub missing: Vec<MissingBinding>,
    /// Per component; `None` when its Deployment does not exist (yet).
    pub rollouts: BTreeMap<Component, Option<RolloutState>>,
    /// Things that work, but not as asked (reason, message).
    pub warnings: Vec<(String, String)>,
}

/// Builds a condition list against the previous one.
struct Conditions<'a> {
    previous: &'a [Condition],
    generation: Option<i64>,
    now: &'a Time,
    out: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    fn new(previous: &'a [Condition], generation: Option<i64>, now: &'a Time) -> Self {
        Self {
            previous,
            generation,
            now,
            out: Vec::new(),
        }
    }

    fn set(&mut self, kind: &str, ok: bool, reason: &str, message: String) {
        let status = if ok { "True" } else { "False" }.to_owned();
        let since = self
            .previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .map_or_else(|| self.now.clone(), |c| c.last_transition_time.clone());
        self.out.push(Condition {
            type_: kind.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            observed_generation: self.generation,
            last_transition_time: since,
        });
    }
}

fn describe_missing(missing: &[MissingBinding]) -> String {
    missing
        .iter()
        .map(|m| match m.reason {
            MissingReason::SecretNotFound => format!("Secret {} not found", m.secret.name),
            MissingReason::KeyMissing => {
                format!("Secret {} has no key {}", m.secret.name, m.secret.key)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn chatbot_status(
    previous: Option<&ChatBotStatus>,
    observed: &Observations,
    bots: &Aggregate,
    now: &Time,
) -> ChatBotStatus {
    let old = previous.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let generation = observed.generation;
    let mut conditions = Conditions::new(old, generation, now);

    let bound = observed.missing.is_empty();
    let (reason, message) = match observed.missing.first().map(|m| &m.reason) {
        None => ("SecretsFound", "every database binding resolves".to_owned()),
        Some(MissingReason::SecretNotFound) => {
            ("SecretNotFound", describe_missing(&observed.missing))
        }
        Some(MissingReason::KeyMissing) => ("KeyMissing", describe_missing(&observed.missing)),
    };
    conditions.set(DATABASES_BOUND, bound, reason, message);

    let mut services = BTreeMap::new();
    let mut not_ready = Vec::new();
    let mut rolling = Vec::new();
    for component in Component::ALL {
        let state = observed.rollouts.get(&component).copied().flatten();
        let state_or_default = state.unwrap_or_default();
        services.insert(
            component.name().to_owned(),
            ServiceStatus {
                desired_replicas: state_or_default.desired,
                ready_replicas: state_or_default.ready,
                updated_replicas: state_or_default.updated,
            },
        );
        match state {
            None => not_ready.push(format!("{} not deployed", component.name())),
            Some(state) => {
                if !state.complete() {
                    rolling.push(component.name());
                }
                if state.available < state.desired.max(1) {
                    not_ready.push(format!(
                        "{} {}/{} ready",
                        component.name(),
                        state.ready,
                        state.desired
                    ));
                }
            }
        }
    }

    let progressing = !rolling.is_empty() && bound;
    conditions.set(
        PROGRESSING,
        progressing,
        if progressing {
            "RollingOut"
        } else {
            "RolloutComplete"
        },
        if progressing {
            format!("rolling out: {}", rolling.join(", "))
        } else {
            "every service runs its latest configuration".to_owned()
        },
    );

    let mut problems: Vec<(String, String)> = observed.warnings.clone();
    if !bots.invalid.is_empty() {
        let names: Vec<_> = bots
            .invalid
            .iter()
            .map(|bot| format!("{} ({})", bot.name, bot.source))
            .collect();
        problems.push((
            "InvalidBots".to_owned(),
            format!("not running: {}", names.join(", ")),
        ));
    }
    let degraded = !problems.is_empty();
    conditions.set(
        DEGRADED,
        degraded,
        problems.first().map_or("AsExpected", |p| p.0.as_str()),
        if degraded {
            problems
                .iter()
                .map(|p| p.1.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            "nothing to report".to_owned()
        },
    );

    let ready = bound && not_ready.is_empty();
    let (reason, message) = if !bound {
        ("DatabasesNotBound", describe_missing(&observed.missing))
    } else if !not_ready.is_empty() {
        ("ServicesNotReady", not_ready.join(", "))
    } else {
        ("AllServicesReady", "every service is available".to_owned())
    };
    conditions.set(READY, ready, reason, message);

    ChatBotStatus {
        observed_generation: generation,
        conditions: conditions.out,
        services,
        bots: i32::try_from(bots.accepted).unwrap_or(i32::MAX),
        invalid_bots: bots.invalid.clone(),
    }
}

/// A `Bot`'s status as decided by its ChatBot's reconcile.
pub fn bot_status(
    previous: Option<&BotStatus>,
    verdict: &Verdict,
    generation: Option<i64>,
    now: &Time,
) -> BotStatus {
    let (ok, reason, message) = match verdict {
        Verdict::Accepted => (true, "Valid", "the bot runs".to_owned()),
        Verdict::Invalid(message) => (false, "Invalid", message.clone()),
        Verdict::DuplicateName(message) => (false, "DuplicateName", message.clone()),
    };
    orphan_or_verdict(previous, ok, reason, message, generation, now)
}

/// A `Bot` whose ChatBot does not exist.
pub fn orphan_bot_status(
    previous: Option<&BotStatus>,
    chatbot: &str,
    generation: Option<i64>,
    now: &Time,
) -> BotStatus {
    orphan_or_verdict(
        previous,
        false,
        "ChatBotNotFound",
        format!("no ChatBot {chatbot} in this namespace"),
        generation,
        now,
    )
}

fn orphan_or_verdict(
    previous: Option<&BotStatus>,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> BotStatus {
    let old = previous.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let mut conditions = Conditions::new(old, generation, now);
    conditions.set(ACCEPTED, ok, reason, message);
    BotStatus {
        observed_generation: generation,
        conditions: conditions.out,
    }
}

/// The status of one condition type, if present.
pub fn condition<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::InvalidBot;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap())
    }

    fn later() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(2_000).unwrap())
    }

    fn all_ready() -> BTreeMap<Component, Option<RolloutState>> {
        Component::ALL
            .into_iter()
            .map(|c| {
                (
                    c,
                    Some(RolloutState {
                        desired: 2,
                        ready: 2,
                        updated: 2,
                        available: 2,
                        observed: true,
                    }),
                )
            })
            .collect()
    }

    fn get<'a>(status: &'a ChatBotStatus, kind: &str) -> &'a Condition {
        condition(&status.conditions, kind).unwrap()
    }

    #[test]
    fn a_missing_secret_or_key_is_named_and_blocks_ready() {
        let observed = Observations {
            generation: Some(3),
            missing: vec![MissingBinding {
                secret: SecretKeyRef {
                    name: "pg".into(),
                    key: "url".into(),
                },
                reason: MissingReason::SecretNotFound,
            }],
            ..Observations::default()
        };
        let status = chatbot_status(None, &observed, &Aggregate::default(), &now());
        let bound = get(&status, DATABASES_BOUND);
        assert_eq!(
            (bound.status.as_str(), bound.reason.as_str()),
            ("False", "SecretNotFound")
        );
        assert!(bound.message.contains("Secret pg not found"));
        assert_eq!(get(&status, READY).reason, "DatabasesNotBound");
        assert_eq!(status.observed_generation, Some(3));

        let observed = Observations {
            missing: vec![MissingBinding {
                secret: SecretKeyRef {
                    name: "pg".into(),
                    key: "auth-url".into(),
                },
                reason: MissingReason::KeyMissing,
            }],
            ..observed
        };
        let status = chatbot_status(None, &observed, &Aggregate::default(), &now());
        let bound = get(&status, DATABASES_BOUND);
        assert_eq!(bound.reason, "KeyMissing");
        assert!(bound.message.contains("has no key auth-url"), "{bound:?}");
    }

    #[test]
    fn ready_when_every_service_is_available_and_transition_times_stick() {
        let observed = Observations {
            generation: Some(1),
            rollouts: all_ready(),
            ..Observations::default()
        };
        let first = chatbot_status(None, &observed, &Aggregate::default(), &now());
        assert_eq!(get(&first, READY).status, "True");
        assert_eq!(get(&first, PROGRESSING).status, "False");
        assert_eq!(get(&first, DEGRADED).status, "False");
        assert_eq!(first.services["gateway"].ready_replicas, 2);

        // Same world later: identical status, so nothing is written.
        let again = chatbot_status(Some(&first), &observed, &Aggregate::default(), &later());
        assert_eq!(again, first);

        // One service loses a pod: Ready flips with a new transition time.
        let mut rollouts = all_ready();
        rollouts.insert(
            Component::Chat,
            Some(RolloutState {
                desired: 2,
                ready: 1,
                updated: 2,
                available: 1,
                observed: true,
            }),
        );
        let observed = Observations {
            rollouts,
            ..observed
        };
        let degraded = chatbot_status(Some(&first), &observed, &Aggregate::default(), &later());
        let ready = get(&degraded, READY);
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "ServicesNotReady");
        assert!(ready.message.contains("chat 1/2 ready"), "{ready:?}");
        assert_eq!(ready.last_transition_time, later());
        assert_eq!(get(&degraded, DATABASES_BOUND).last_transition_time, now());
    }

    #[test]
    fn invalid_bots_and_warnings_degrade_without_unreadying() {
        let bots = Aggregate {
            accepted: 1,
            invalid: vec![InvalidBot {
                name: "bad_bot".into(),
                source: "Bot/bad".into(),
                reason: "x".into(),
            }],
            ..Aggregate::default()
        };
        let observed = Observations {
            rollouts: all_ready(),
            warnings: vec![("AutoscalingUnavailable".into(), "no autoscaling/v2".into())],
            ..Observations::default()
        };
        let status = chatbot_status(None, &observed, &bots, &now());
        let degraded = get(&status, DEGRADED);
        assert_eq!(degraded.status, "True");
        assert_eq!(degraded.reason, "AutoscalingUnavailable");
        assert!(
            degraded.message.contains("bad_bot (Bot/bad)"),
            "{degraded:?}"
        );
        assert_eq!(get(&status, READY).status, "True");
        assert_eq!(status.bots, 1);
        assert_eq!(status.invalid_bots.len(), 1);
    }

    #[test]
    fn a_rollout_in_progress_is_progressing() {
        let mut rollouts = all_ready();
        rollouts.insert(
            Component::Gateway,
            Some(RolloutState {
                desired: 2,
                ready: 2,
                updated: 1,
                available: 2,
                observed: true,
            }),
        );
        let observed = Observations {
            rollouts,
            ..Observations::default()
        };
        let status = chatbot_status(None, &observed, &Aggregate::default(), &now());
        let progressing = get(&status, PROGRESSING);
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", "RollingOut")
        );
        assert!(progressing.message.contains("gateway"));
    }

    #[test]
    fn bot_verdicts_map_to_accepted_reasons() {
        let accepted = bot_status(None, &Verdict::Accepted, Some(2), &now());
        assert_eq!(accepted.conditions[0].status, "True");
        let duplicate = bot_status(
            Some(&accepted),
            &Verdict::DuplicateName("taken".into()),
            Some(2),
            &later(),
        );
        assert_eq!(duplicate.conditions[0].reason, "DuplicateName");
        assert_eq!(duplicate.conditions[0].last_transition_time, later());
        let orphan = orphan_bot_status(None, "demo", Some(1), &now());
        assert_eq!(orphan.conditions[0].reason, "ChatBotNotFound");
        assert!(orphan.conditions[0].message.contains("demo"));
    }
}

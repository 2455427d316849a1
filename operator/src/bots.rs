//! The bots file of a ChatBot: its inline bots plus the `Bot` resources that
//! name it, each validated on its own so one broken bot (or one name taken
//! twice) is reported on its resource and left out, instead of the bots
//! service rejecting the whole file.

use std::collections::BTreeMap;

use bot_definition::definition::{BotSpec, DefinitionsFile, compile};
use kube::ResourceExt;

use crate::crd::{Bot, InvalidBot};

/// Why a `Bot` resource is or is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Its definition does not compile; the message names the place.
    Invalid(String),
    /// Another bot (inline, or an older `Bot`) has its name.
    DuplicateName(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    /// The bots definitions file (JSON, which YAML readers accept), sorted by
    /// bot name so the same bots always render the same bytes.
    pub file: String,
    /// How many bots run.
    pub accepted: usize,
    pub invalid: Vec<InvalidBot>,
    /// Per `Bot` resource name.
    pub verdicts: BTreeMap<String, Verdict>,
}

fn check(spec: &BotSpec) -> Result<(), String> {
    compile(&DefinitionsFile {
        bots: vec![spec.clone()],
    })
    .map(|_| ())
    .map_err(|error| error.to_string())
}

/// Inline bots win over `Bot` resources; among resources the oldest wins
/// (then the name), so an existing bot never loses its name to a newcomer.
pub fn aggregate(inline: &[BotSpec], resources: &[Bot]) -> Aggregate {
    let mut out = Aggregate::default();
    let mut taken: BTreeMap<String, (String, BotSpec)> = BTreeMap::new();

    for spec in inline {
        let source = "inline".to_owned();
        if let Some((owner, _)) = taken.get(&spec.name) {
            out.invalid.push(InvalidBot {
                name: spec.name.clone(),
                source,
                reason: format!("the name is already used by {owner}"),
            });
            continue;
        }
        match check(spec) {
            Ok(()) => {
                taken.insert(spec.name.clone(), (source, spec.clone()));
            }
            Err(reason) => out.invalid.push(InvalidBot {
                name: spec.name.clone(),
                source,
                reason,
            }),
        }
    }

    let mut ordered: Vec<&Bot> = resources.iter().collect();
    ordered.sort_by(|a, b| {
        (a.creation_timestamp(), a.name_any()).cmp(&(b.creation_timestamp(), b.name_any()))
    });
    for bot in ordered {
        let spec = &bot.spec.definition;
        let source = format!("Bot/{}", bot.name_any());
        let verdict = if let Some((owner, _)) = taken.get(&spec.name) {
            Verdict::DuplicateName(format!("bot name {} is already used by {owner}", spec.name))
        } else {
            match check(spec) {
                Ok(()) => {
                    taken.insert(spec.name.clone(), (source.clone(), spec.clone()));
                    Verdict::Accepted
                }
                Err(reason) => Verdict::Invalid(reason),
            }
        };
        if let Verdict::Invalid(reason) | Verdict::DuplicateName(reason) = &verdict {
            out.invalid.push(InvalidBot {
                name: spec.name.clone(),
                source: source.clone(),
                reason: reason.clone(),
            });
        }
        out.verdicts.insert(bot.name_any(), verdict);
    }

    out.accepted = taken.len();
    let bots = taken
        .into_values()
        .map(|(source, mut spec)| {
            spec.source = Some(source);
            spec
        })
        .collect();
    out.file = serde_json::to_string_pretty(&DefinitionsFile { bots }).unwrap_or_default();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BotResourceSpec, ChatBotRef};
    use bot_definition::definition::load;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn spec(name: &str, reply: &str) -> BotSpec {
        BotSpec {
            name: name.to_owned(),
            fallback: Some(reply.to_owned()),
            ..BotSpec::default()
        }
    }

    fn resource(name: &str, created_secs: i64, spec: BotSpec) -> Bot {
        let mut bot = Bot::new(
            name,
            BotResourceSpec {
                chat_bot_ref: ChatBotRef {
                    name: "demo".into(),
                },
                definition: spec,
            },
        );
        bot.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created_secs).unwrap(),
        ));
        bot
    }

    #[test]
    fn inline_and_resources_render_one_valid_sorted_file() {
        let out = aggregate(
            &[spec("zeta_bot", "z")],
            &[resource("alpha", 10, spec("alpha_bot", "a"))],
        );
        assert_eq!(out.accepted, 2);
        assert!(out.invalid.is_empty());
        assert_eq!(out.verdicts["alpha"], Verdict::Accepted);
        let set = load(&out.file).unwrap();
        let names: Vec<_> = set.bots.iter().map(|bot| bot.name.clone()).collect();
        assert_eq!(names, ["alpha_bot", "zeta_bot"]);
        assert!(
            out.file.contains("\"source\": \"Bot/alpha\""),
            "{}",
            out.file
        );
        assert!(out.file.contains("\"source\": \"inline\""), "{}", out.file);
    }

    #[test]
    fn the_oldest_holder_of_a_name_keeps_it_and_inline_beats_resources() {
        let out = aggregate(
            &[spec("taken_bot", "inline")],
            &[
                resource("late", 20, spec("shared_bot", "late")),
                resource("early", 10, spec("shared_bot", "early")),
                resource("clash", 5, spec("taken_bot", "clash")),
            ],
        );
        assert_eq!(out.verdicts["early"], Verdict::Accepted);
        assert!(
            matches!(&out.verdicts["late"], Verdict::DuplicateName(m) if m.contains("Bot/early"))
        );
        assert!(
            matches!(&out.verdicts["clash"], Verdict::DuplicateName(m) if m.contains("inline"))
        );
        assert_eq!(out.accepted, 2);
        assert_eq!(out.invalid.len(), 2);
        assert!(out.file.contains("\"early\""), "{}", out.file);
    }

    #[test]
    fn an_invalid_bot_is_left_out_with_a_reason_naming_the_place() {
        let mut broken = spec("broken_bot", "x");
        broken.fallback = Some("Hi {{nobody}}".into());
        let out = aggregate(&[], &[resource("broken", 1, broken)]);
        let Verdict::Invalid(reason) = &out.verdicts["broken"] else {
            panic!("{:?}", out.verdicts)
        };
        assert!(reason.contains("bots[broken_bot]"), "{reason}");
        assert_eq!(out.accepted, 0);
        assert_eq!(out.invalid[0].source, "Bot/broken");
        assert!(load(&out.file).unwrap().bots.is_empty());
    }
}

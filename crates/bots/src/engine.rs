//! How a bot answers one message: a pure function of the bot's definition,
//! the message, and the sender's dialogue state (if any). I/O — Redis for
//! the state, chat for replies, webhooks — stays in the caller, so the same
//! code serves live messages and `Preview`.
//!
//! Order, as in Telegram: commands (`/cmd`, `/cmd@bot` in groups), then an
//! active dialogue, then — in private chats, or in groups when the bot is
//! mentioned ("privacy mode") — rules, intents, the webhook, the fallback.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::definition::{Action, Answers, Argument, Bot, Dialogue, Matcher, ValueType};
use crate::template::Template;

/// The longest answer or argument accepted (longer text is a usage error).
const MAX_VALUE_CHARS: usize = 500;

/// One incoming message, as the bot sees it.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub text: &'a str,
    pub sender_name: &'a str,
    /// A group conversation (commands must be addressed; other text needs a mention).
    pub group: bool,
}

/// A sender's place in a dialogue, kept in Redis between messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialogueState {
    pub dialogue: String,
    pub step: usize,
    pub answers: Answers,
    /// Unix milliseconds after which the dialogue has timed out.
    pub deadline_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DialogueChange {
    Unchanged,
    Set(DialogueState),
    Clear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    Nothing,
    Command,
    Rule,
    Dialogue,
    Intent,
    Fallback,
    Webhook,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nothing => "",
            Self::Command => "command",
            Self::Rule => "rule",
            Self::Dialogue => "dialogue",
            Self::Intent => "intent",
            Self::Fallback => "fallback",
            Self::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub replies: Vec<String>,
    pub matched_by: MatchedBy,
    pub matched_name: String,
    pub confidence: f32,
    pub dialogue: DialogueChange,
    /// The caller forwards the message to the bot's webhook.
    pub forward_to_webhook: bool,
}

impl Response {
    fn silent() -> Self {
        Self {
            replies: Vec::new(),
            matched_by: MatchedBy::Nothing,
            matched_name: String::new(),
            confidence: 0.0,
            dialogue: DialogueChange::Unchanged,
            forward_to_webhook: false,
        }
    }

    fn reply(matched_by: MatchedBy, name: &str, text: String) -> Self {
        Self {
            replies: vec![text],
            matched_by,
            matched_name: name.to_owned(),
            confidence: 1.0,
            ..Self::silent()
        }
    }
}

/// A `/command` line: name, `@target` if any, and the text after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine<'a> {
    pub name: String,
    pub target: Option<String>,
    pub args: &'a str,
}

pub fn parse_command(text: &str) -> Option<CommandLine<'_>> {
    let rest = text.trim_start().strip_prefix('/')?;
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (head, args) = rest.split_at(end);
    let (name, target) = match head.split_once('@') {
        Some((name, target)) => (name, Some(target.to_lowercase())),
        None => (head, None),
    };
    let valid = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| CommandLine {
        name: name.to_ascii_lowercase(),
        target,
        args: args.trim(),
    })
}

/// Whether `text` mentions `@name` as a word.
fn mentions(text: &str, name: &str) -> bool {
    let needle = format!("@{name}");
    let lower = text.to_lowercase();
    lower.match_indices(&needle).any(|(at, _)| {
        lower[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

fn strip_mention(text: &str, name: &str) -> String {
    let needle = format!("@{name}");
    let lower = text.to_lowercase();
    match lower.find(&needle) {
        // Lowercasing ASCII keeps byte offsets; bot names are ASCII.
        Some(at) if text.is_char_boundary(at) && text.is_char_boundary(at + needle.len()) => {
            format!("{}{}", &text[..at], &text[at + needle.len()..])
                .trim()
                .trim_start_matches([',', ':'])
                .trim()
                .to_owned()
        }
        _ => text.to_owned(),
    }
}

/// Splits arguments on whitespace, keeping "quoted text" together.
fn tokens(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut token = String::new();
        if c == '"' {
            chars.next();
            for (_, c) in chars.by_ref() {
                if c == '"' {
                    break;
                }
                token.push(c);
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                token.push(c);
                chars.next();
            }
        }
        out.push((start, token));
    }
    out
}

/// Checks one value against a type; returns its normal form or what is wrong.
fn typed_value(
    raw: &str,
    kind: ValueType,
    choices: &[String],
    min: Option<f64>,
    max: Option<f64>,
) -> Result<String, String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err("an answer is needed".to_owned());
    }
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(format!("at most {MAX_VALUE_CHARS} characters"));
    }
    let in_range = |n: f64| -> Result<(), String> {
        match (min, max) {
            (Some(min), _) if n < min => Err(range_text(min, max)),
            (_, Some(max)) if n > max => Err(range_text(min.unwrap_or(f64::MIN), Some(max))),
            _ => Ok(()),
        }
    };
    match kind {
        ValueType::Text => Ok(value.to_owned()),
        ValueType::Integer => {
            let n: i64 = value
                .parse()
                .map_err(|_| "must be a whole number".to_owned())?;
            in_range(n as f64)?;
            Ok(n.to_string())
        }
        ValueType::Number => {
            let n: f64 = value
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| "must be a number".to_owned())?;
            in_range(n)?;
            Ok(value.to_owned())
        }
        ValueType::YesNo => match value.to_lowercase().as_str() {
            "yes" | "y" | "yeah" | "yep" | "sure" | "ok" | "true" => Ok("yes".to_owned()),
            "no" | "n" | "nope" | "false" => Ok("no".to_owned()),
            _ => Err("answer yes or no".to_owned()),
        },
        ValueType::Choice => {
            let lower = value.to_lowercase();
            let by_number = lower
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| choices.get(i));
            choices
                .iter()
                .find(|c| **c == lower)
                .or(by_number)
                .cloned()
                .ok_or_else(|| format!("choose one of: {}", choices.join(", ")))
        }
    }
}

fn range_text(min: f64, max: Option<f64>) -> String {
    match max {
        Some(max) if min > f64::MIN => format!("must be between {min} and {max}"),
        Some(max) => format!("must be at most {max}"),
        None => format!("must be at least {min}"),
    }
}

/// Binds a command's arguments, or explains the mistake.
fn bind_args(args: &[Argument], text: &str) -> Result<HashMap<String, String>, String> {
    let tokens = tokens(text);
    let mut values = HashMap::new();
    let mut next = 0;
    for arg in args {
        let raw = if arg.rest {
            let rest = tokens
                .get(next)
                .map(|(at, _)| text[*at..].trim().to_owned());
            next = tokens.len();
            rest.map(|r| r.trim_matches('"').to_owned())
        } else {
            let token = tokens.get(next).map(|(_, t)| t.clone());
            next += 1;
            token
        };
        match raw {
            Some(raw) => {
                let value = typed_value(&raw, arg.kind, &arg.choices, arg.min, arg.max)
                    .map_err(|problem| format!("{}: {problem}", arg.name))?;
                values.insert(arg.name.clone(), value);
            }
            None if arg.required => return Err(format!("{} is missing", arg.name)),
            None => {
                values.insert(arg.name.clone(), String::new());
            }
        }
    }
    if tokens.len() > next {
        return Err(format!("unexpected {:?}", tokens[next].1));
    }
    Ok(values)
}

fn base_values(bot: &Bot, incoming: &Incoming<'_>) -> HashMap<String, String> {
    HashMap::from([
        ("sender".to_owned(), incoming.sender_name.to_owned()),
        ("bot".to_owned(), bot.display_name.clone()),
    ])
}

fn deadline(dialogue: &Dialogue, now_ms: i64) -> i64 {
    now_ms.saturating_add(i64::try_from(dialogue.timeout.as_millis()).unwrap_or(i64::MAX))
}

fn render_with(template: &Template, base: &HashMap<String, String>, extra: &Answers) -> String {
    let mut values = base.clone();
    values.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    template.render(&values)
}

fn start_dialogue(
    bot: &Bot,
    name: &str,
    base: &HashMap<String, String>,
    now_ms: i64,
    matched_by: MatchedBy,
    matched_name: &str,
) -> Response {
    let Some(dialogue) = bot.dialogue(name) else {
        return Response::silent();
    };
    let state = DialogueState {
        dialogue: dialogue.name.clone(),
        step: 0,
        answers: Answers::new(),
        deadline_ms: deadline(dialogue, now_ms),
    };
    let prompt = render_with(&dialogue.steps[0].prompt, base, &state.answers);
    Response {
        dialogue: DialogueChange::Set(state),
        ..Response::reply(matched_by, matched_name, prompt)
    }
}

fn run_action(
    bot: &Bot,
    action: &Action,
    values: &HashMap<String, String>,
    now_ms: i64,
    matched_by: MatchedBy,
    name: &str,
) -> Response {
    match action {
        Action::Reply(template) => Response::reply(matched_by, name, template.render(values)),
        Action::StartDialogue(dialogue) => {
            start_dialogue(bot, dialogue, values, now_ms, matched_by, name)
        }
    }
}

fn command(
    bot: &Bot,
    line: &CommandLine<'_>,
    incoming: &Incoming<'_>,
    state: Option<&DialogueState>,
    now_ms: i64,
) -> Response {
    let base = base_values(bot, incoming);
    match line.name.as_str() {
        "start" => {
            let text = bot.start.as_ref().map_or_else(
                || {
                    format!(
                        "Hi {}! I am {}.\n\n{}",
                        incoming.sender_name,
                        bot.display_name,
                        bot.help()
                    )
                },
                |start| start.render(&base),
            );
            Response::reply(MatchedBy::Command, "start", text)
        }
        "help" => Response::reply(MatchedBy::Command, "help", bot.help()),
        "cancel" => match state.and_then(|s| bot.dialogue(&s.dialogue).map(|d| (s, d))) {
            Some((state, dialogue)) => Response {
                dialogue: DialogueChange::Clear,
                ..Response::reply(
                    MatchedBy::Command,
                    "cancel",
                    render_with(&dialogue.cancelled, &base, &state.answers),
                )
            },
            None => Response::reply(
                MatchedBy::Command,
                "cancel",
                "Nothing to cancel.".to_owned(),
            ),
        },
        name => match bot.command(name) {
            Some(command) => match bind_args(&command.args, line.args) {
                Ok(args) => {
                    let mut values = base;
                    values.extend(args);
                    run_action(
                        bot,
                        &command.action,
                        &values,
                        now_ms,
                        MatchedBy::Command,
                        name,
                    )
                }
                Err(problem) => Response::reply(
                    MatchedBy::Command,
                    name,
                    format!("Usage: {} — {problem}", command.usage()),
                ),
            },
            None => Response::reply(
                MatchedBy::Command,
                name,
                format!("I don't know /{name}. Try /help."),
            ),
        },
    }
}

fn continue_dialogue(
    bot: &Bot,
    state: &DialogueState,
    text: &str,
    base: &HashMap<String, String>,
    now_ms: i64,
) -> Option<Response> {
    let dialogue = bot.dialogue(&state.dialogue)?;
    let step = dialogue.steps.get(state.step)?;
    if now_ms > state.deadline_ms {
        return Some(Response {
            dialogue: DialogueChange::Clear,
            ..Response::reply(
                MatchedBy::Dialogue,
                &dialogue.name,
                dialogue.timed_out.render(base),
            )
        });
    }
    let expect = &step.expect;
    let checked =
        typed_value(text, expect.kind, &expect.choices, expect.min, expect.max).and_then(|value| {
            match &expect.pattern {
                Some(pattern) if !pattern.is_match(&value) => {
                    Err("that doesn't look right".to_owned())
                }
                _ => Ok(value),
            }
        });
    let answer = match checked {
        Ok(answer) => answer,
        Err(problem) => {
            let again = render_with(&step.prompt, base, &state.answers);
            let mut problem = problem;
            if let Some(first) = problem.get(0..1) {
                problem = format!("{}{}", first.to_uppercase(), &problem[1..]);
            }
            return Some(Response {
                dialogue: DialogueChange::Set(DialogueState {
                    deadline_ms: deadline(dialogue, now_ms),
                    ..state.clone()
                }),
                ..Response::reply(
                    MatchedBy::Dialogue,
                    &dialogue.name,
                    format!("{problem}. {again}"),
                )
            });
        }
    };
    let mut answers = state.answers.clone();
    let next = step
        .branches
        .iter()
        .find(|(when, _)| *when == answer.to_lowercase())
        .map_or(step.next, |(_, target)| *target);
    answers.insert(step.save_as.clone(), answer);
    Some(match next {
        None => Response {
            dialogue: DialogueChange::Clear,
            ..Response::reply(
                MatchedBy::Dialogue,
                &dialogue.name,
                render_with(&dialogue.done, base, &answers),
            )
        },
        Some(next) => {
            let prompt = render_with(&dialogue.steps[next].prompt, base, &answers);
            Response {
                dialogue: DialogueChange::Set(DialogueState {
                    dialogue: dialogue.name.clone(),
                    step: next,
                    answers,
                    deadline_ms: deadline(dialogue, now_ms),
                }),
                ..Response::reply(MatchedBy::Dialogue, &dialogue.name, prompt)
            }
        }
    })
}

/// How `bot` answers `incoming`, given the sender's dialogue `state`.
pub fn respond(
    bot: &Bot,
    incoming: &Incoming<'_>,
    state: Option<&DialogueState>,
    now_ms: i64,
) -> Response {
    let text = incoming.text.trim();
    if let Some(line) = parse_command(text) {
        let addressed = match &line.target {
            Some(target) => *target == bot.name,
            // Unaddressed in a group: every bot that knows the command answers.
            None => {
                !incoming.group
                    || crate::definition::RESERVED_COMMANDS.contains(&line.name.as_str())
                    || bot.command(&line.name).is_some()
            }
        };
        return if addressed {
            command(bot, &line, incoming, state, now_ms)
        } else {
            Response::silent()
        };
    }
    let base = base_values(bot, incoming);
    if let Some(state) = state
        && let Some(response) = continue_dialogue(bot, state, text, &base, now_ms)
    {
        return response;
    }
    if incoming.group && !mentions(text, &bot.name) {
        return Response::silent();
    }
    let text = strip_mention(text, &bot.name);
    for rule in &bot.rules {
        let values = match &rule.matcher {
            Matcher::Keywords(regex) => regex.is_match(&text).then(|| base.clone()),
            Matcher::Pattern(regex) => regex.captures(&text).map(|captures| {
                let mut values = base.clone();
                for (i, name) in regex.capture_names().enumerate().skip(1) {
                    let value = captures.get(i).map_or("", |m| m.as_str()).to_owned();
                    if let Some(name) = name {
                        values.insert(name.to_owned(), value.clone());
                    }
                    values.insert(i.to_string(), value);
                }
                values
            }),
        };
        if let Some(values) = values {
            return Response::reply(MatchedBy::Rule, &rule.name, rule.reply.render(&values));
        }
    }
    let mut best_guess = 0.0;
    if let Some(intents) = &bot.intents
        && let Some((index, confidence)) = intents.index.best(&text)
    {
        best_guess = confidence;
        if confidence >= intents.threshold
            && let Some(intent) = intents.items.get(index)
        {
            let mut response = run_action(
                bot,
                &intent.action,
                &base,
                now_ms,
                MatchedBy::Intent,
                &intent.name,
            );
            response.confidence = confidence;
            return response;
        }
    }
    if bot.webhook.is_some() {
        return Response {
            matched_by: MatchedBy::Webhook,
            matched_name: bot.name.clone(),
            forward_to_webhook: true,
            ..Response::silent()
        };
    }
    match &bot.fallback {
        Some(fallback) => Response {
            confidence: best_guess,
            ..Response::reply(MatchedBy::Fallback, "fallback", fallback.render(&base))
        },
        None => Response::silent(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::load;

    const BOTS: &str = r#"
bots:
  - name: pizza_bot
    displayName: Pizza
    commands:
      - name: weather
        args:
          - { name: days, type: integer, min: 1, max: 7 }
          - { name: city, rest: true }
        reply: "{{days}} days in {{city}}"
      - name: order
        dialogue: order
    rules:
      - name: price
        pattern: "(?i)how much is (?P<item>\\w+)"
        reply: "{{item}} costs 5"
    dialogues:
      - name: order
        steps:
          - id: size
            prompt: "Size?"
            expect: { type: choice, choices: [small, large] }
            branches: [{ when: large, goto: confirm }]
          - id: count
            prompt: "How many?"
            expect: { type: integer, min: 1, max: 5 }
          - id: confirm
            prompt: "Sure?"
            expect: { type: yes_no }
            branches: [{ when: "no", goto: size }]
        done: "Ordered {{size}} ({{count}})"
    fallback: "Try /help"
"#;

    fn bot() -> std::sync::Arc<Bot> {
        load(BOTS).unwrap().get("pizza_bot").unwrap().clone()
    }

    fn say(bot: &Bot, text: &str, group: bool, state: Option<&DialogueState>) -> Response {
        respond(
            bot,
            &Incoming {
                text,
                sender_name: "Ann",
                group,
            },
            state,
            1_000,
        )
    }

    #[test]
    fn commands_bind_typed_arguments_or_explain_usage() {
        let bot = bot();
        assert_eq!(
            say(&bot, "/weather 3 New York", false, None).replies,
            ["3 days in New York"]
        );
        assert_eq!(
            say(&bot, "/weather soon Paris", false, None).replies,
            ["Usage: /weather <days> <city...> — days: must be a whole number"]
        );
        assert_eq!(
            say(&bot, "/weather 9 Paris", false, None).replies,
            ["Usage: /weather <days> <city...> — days: must be between 1 and 7"]
        );
        assert!(say(&bot, "/help", false, None).replies[0].contains("/weather <days> <city...>"));
    }

    #[test]
    fn groups_need_addressing() {
        let bot = bot();
        assert!(
            say(&bot, "/weather@other_bot 1 x", true, None)
                .replies
                .is_empty()
        );
        assert_eq!(
            say(&bot, "/weather@pizza_bot 1 x", true, None).replies,
            ["1 days in x"]
        );
        assert!(say(&bot, "/unknown", true, None).replies.is_empty());
        assert!(say(&bot, "how much is tea", true, None).replies.is_empty());
        assert_eq!(
            say(&bot, "@pizza_bot how much is tea", true, None).replies,
            ["tea costs 5"]
        );
    }

    #[test]
    fn a_dialogue_validates_branches_and_finishes() {
        let bot = bot();
        let started = say(&bot, "/order", false, None);
        let DialogueChange::Set(state) = started.dialogue else {
            panic!()
        };
        let wrong = say(&bot, "medium", false, Some(&state));
        assert_eq!(wrong.replies, ["Choose one of: small, large. Size?"]);
        let small = say(&bot, "Small", false, Some(&state));
        let DialogueChange::Set(state) = small.dialogue else {
            panic!()
        };
        assert_eq!(small.replies, ["How many?"]);
        let counted = say(&bot, "2", false, Some(&state));
        let DialogueChange::Set(state) = counted.dialogue else {
            panic!()
        };
        let done = say(&bot, "yes", false, Some(&state));
        assert_eq!(done.replies, ["Ordered small (2)"]);
        assert_eq!(done.dialogue, DialogueChange::Clear);
        // /cancel ends it; an expired state times out.
        assert_eq!(
            say(&bot, "/cancel", false, Some(&state)).dialogue,
            DialogueChange::Clear
        );
        let expired = DialogueState {
            deadline_ms: 0,
            ..state
        };
        assert_eq!(
            say(&bot, "yes", false, Some(&expired)).dialogue,
            DialogueChange::Clear
        );
    }

    #[test]
    fn command_lines_parse() {
        let line = parse_command("/Weather@Pizza_Bot 3 x").unwrap();
        assert_eq!(
            (line.name.as_str(), line.target.as_deref(), line.args),
            ("weather", Some("pizza_bot"), "3 x")
        );
        assert!(parse_command("/").is_none());
        assert!(parse_command("not a command").is_none());
        assert_eq!(say(&bot(), "hmm", false, None).replies, ["Try /help"]);
    }
}

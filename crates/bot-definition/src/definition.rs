//! The definitions file: which bots run and how they answer. YAML or JSON
//! (JSON is YAML), the same locally and in a cluster, where the operator
//! renders it from `ChatBot.spec.bots` and `Bot` resources into a ConfigMap.
//!
//! Parsing checks shapes; [`compile`] checks meaning (unique names, regexes,
//! template placeholders, dialogue step references) and produces the form
//! the engine runs. A file either compiles whole or is rejected whole.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::intent::IntentIndex;
use crate::template::Template;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefinitionsFile {
    #[serde(default)]
    pub bots: Vec<BotSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BotSpec {
    /// The bot's username: 3-32 characters, lowercase letters, digits, `_`.
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Where the definition came from ("inline", "Bot/<name>"); set by the operator.
    #[serde(default)]
    pub source: Option<String>,
    /// Reply to `/start` (default: a greeting with the help text).
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub commands: Vec<CommandSpec>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub dialogues: Vec<DialogueSpec>,
    #[serde(default)]
    pub intents: Option<IntentsSpec>,
    /// Reply in private chats when nothing else matched.
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub webhook: Option<WebhookSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    /// Template with `{{sender}}`, `{{bot}}` and the argument names.
    #[serde(default)]
    pub reply: Option<String>,
    /// Starts this dialogue instead of replying.
    #[serde(default)]
    pub dialogue: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    #[default]
    Text,
    Integer,
    Number,
    YesNo,
    Choice,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgSpec {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: ValueType,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub choices: Vec<String>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// The last argument may take the rest of the line ("New York").
    #[serde(default)]
    pub rest: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSpec {
    pub name: String,
    /// Matches when any keyword appears as a whole word (case-insensitive).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Or a regular expression; its groups are `{{1}}`, `{{name}}`.
    #[serde(default)]
    pub pattern: Option<String>,
    pub reply: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DialogueSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Idle time after which the dialogue is abandoned.
    #[serde(default = "default_dialogue_timeout")]
    pub timeout_seconds: u64,
    pub steps: Vec<StepSpec>,
    /// Sent when the last step is answered; placeholders name saved answers.
    pub done: String,
    #[serde(default)]
    pub cancelled: Option<String>,
    #[serde(default)]
    pub timed_out: Option<String>,
}

fn default_dialogue_timeout() -> u64 {
    600
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepSpec {
    pub id: String,
    pub prompt: String,
    #[serde(default)]
    pub expect: ExpectSpec,
    /// The answer's name in later templates (default: the step id).
    #[serde(default)]
    pub save_as: Option<String>,
    /// The next step (default: the following one; `done` finishes).
    #[serde(default)]
    pub next: Option<String>,
    /// Answers that lead elsewhere: the first whose `when` equals the answer.
    #[serde(default)]
    pub branches: Vec<BranchSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectSpec {
    #[serde(default, rename = "type")]
    pub kind: ValueType,
    #[serde(default)]
    pub choices: Vec<String>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// For text answers: a regular expression the whole answer must match.
    #[serde(default)]
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BranchSpec {
    pub when: String,
    pub goto: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IntentsSpec {
    /// Minimum similarity (0-1) to accept the best intent.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    pub items: Vec<IntentSpec>,
}

fn default_threshold() -> f32 {
    0.45
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IntentSpec {
    pub name: String,
    pub examples: Vec<String>,
    #[serde(default)]
    pub reply: Option<String>,
    #[serde(default)]
    pub dialogue: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookSpec {
    pub url: String,
    /// Environment variable holding the HMAC secret (from a Kubernetes Secret).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Or a file holding it (a mounted Secret key).
    #[serde(default)]
    pub secret_file: Option<String>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
}

fn default_webhook_timeout() -> u64 {
    5_000
}

fn default_webhook_attempts() -> u32 {
    3
}

/// What is wrong with a definitions file, naming the place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DefinitionError {
    /// Where: `bots[weather].commands[forecast].args[days]`.
    pub path: String,
    pub message: String,
}

fn error(path: impl Into<String>, message: impl Into<String>) -> DefinitionError {
    DefinitionError {
        path: path.into(),
        message: message.into(),
    }
}

/// Parses YAML or JSON.
pub fn parse(text: &str) -> Result<DefinitionsFile, DefinitionError> {
    if text.trim().is_empty() {
        return Ok(DefinitionsFile::default());
    }
    serde_saphyr::from_str(text).map_err(|e| error("file", e.to_string()))
}

// ---- the compiled form ----

#[derive(Debug, Clone)]
pub struct Argument {
    pub name: String,
    pub kind: ValueType,
    pub required: bool,
    pub choices: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub rest: bool,
}

#[derive(Debug, Clone)]
pub enum Action {
    Reply(Template),
    StartDialogue(String),
}

#[derive(Debug, Clone)]
pub struct Command {
    pub name: String,
    pub description: String,
    pub args: Vec<Argument>,
    pub action: Action,
}

impl Command {
    /// `/weather <city> [days]`
    pub fn usage(&self) -> String {
        let mut usage = format!("/{}", self.name);
        for arg in &self.args {
            let name = if arg.rest {
                format!("{}...", arg.name)
            } else {
                arg.name.clone()
            };
            if arg.required {
                usage.push_str(&format!(" <{name}>"));
            } else {
                usage.push_str(&format!(" [{name}]"));
            }
        }
        usage
    }
}

#[derive(Debug, Clone)]
pub enum Matcher {
    Keywords(Regex),
    Pattern(Regex),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub matcher: Matcher,
    pub reply: Template,
}

#[derive(Debug, Clone)]
pub struct Expectation {
    pub kind: ValueType,
    pub choices: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub pattern: Option<Regex>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub prompt: Template,
    pub expect: Expectation,
    pub save_as: String,
    /// Index of the next step; None finishes the dialogue.
    pub next: Option<usize>,
    /// (answer, step index or None for done)
    pub branches: Vec<(String, Option<usize>)>,
}

#[derive(Debug, Clone)]
pub struct Dialogue {
    pub name: String,
    pub description: String,
    pub timeout: Duration,
    pub steps: Vec<Step>,
    pub done: Template,
    pub cancelled: Template,
    pub timed_out: Template,
}

#[derive(Debug, Clone)]
pub struct Intent {
    pub name: String,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct Intents {
    pub threshold: f32,
    pub items: Vec<Intent>,
    pub index: IntentIndex,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: url::Url,
    /// Where the secret comes from (read when calling, so a rotated Secret applies).
    pub secret: SecretSource,
    pub timeout: Duration,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(String),
}

#[derive(Debug, Clone)]
pub struct Bot {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub source: String,
    pub start: Option<Template>,
    pub commands: Vec<Command>,
    pub rules: Vec<Rule>,
    pub dialogues: Vec<Dialogue>,
    pub intents: Option<Intents>,
    pub fallback: Option<Template>,
    pub webhook: Option<Webhook>,
}

impl Bot {
    pub fn command(&self, name: &str) -> Option<&Command> {
        self.commands.iter().find(|c| c.name == name)
    }

    pub fn dialogue(&self, name: &str) -> Option<&Dialogue> {
        self.dialogues.iter().find(|d| d.name == name)
    }

    /// The `/help` text, generated from the definition.
    pub fn help(&self) -> String {
        let mut help = self.display_name.clone();
        if !self.description.is_empty() {
            help.push_str(&format!(" — {}", self.description));
        }
        help.push_str("\n\nCommands:\n/start — start talking to me\n/help — this list");
        for command in &self.commands {
            help.push_str(&format!("\n{}", command.usage()));
            if !command.description.is_empty() {
                help.push_str(&format!(" — {}", command.description));
            }
        }
        if !self.dialogues.is_empty() {
            help.push_str("\n/cancel — stop the current conversation");
        }
        help
    }
}

/// A compiled definitions file, shared by every worker until the next reload.
#[derive(Debug, Clone, Default)]
pub struct BotSet {
    pub bots: Vec<Arc<Bot>>,
}

impl BotSet {
    pub fn get(&self, name: &str) -> Option<&Arc<Bot>> {
        self.bots.iter().find(|bot| bot.name == name)
    }
}

pub const RESERVED_COMMANDS: &[&str] = &["start", "help", "cancel"];

fn valid_name(name: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
}

fn regex(path: &str, source: &str) -> Result<Regex, DefinitionError> {
    regex::RegexBuilder::new(source)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| error(path, format!("invalid regular expression: {e}")))
}

fn template(
    path: &str,
    source: &str,
    known: &BTreeSet<String>,
) -> Result<Template, DefinitionError> {
    let template = Template::parse(source).map_err(|message| error(path, message))?;
    if let Some(unknown) = template.placeholders().find(|name| !known.contains(*name)) {
        return Err(error(
            path,
            format!(
                "unknown placeholder {{{{{unknown}}}}} (known here: {})",
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(template)
}

fn unique<'a>(
    path: &str,
    what: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), DefinitionError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(error(path, format!("duplicate {what} name {name:?}")));
        }
    }
    Ok(())
}

fn base_placeholders() -> BTreeSet<String> {
    ["sender", "bot"].into_iter().map(str::to_owned).collect()
}

fn action(
    path: &str,
    reply: Option<&String>,
    dialogue: Option<&String>,
    known: &BTreeSet<String>,
    dialogues: &BTreeSet<&str>,
) -> Result<Action, DefinitionError> {
    match (reply, dialogue) {
        (Some(reply), None) => Ok(Action::Reply(template(
            &format!("{path}.reply"),
            reply,
            known,
        )?)),
        (None, Some(dialogue)) if dialogues.contains(dialogue.as_str()) => {
            Ok(Action::StartDialogue(dialogue.clone()))
        }
        (None, Some(dialogue)) => Err(error(
            format!("{path}.dialogue"),
            format!("no dialogue named {dialogue:?}"),
        )),
        _ => Err(error(path, "needs exactly one of reply or dialogue")),
    }
}

fn bounds(path: &str, min: Option<f64>, max: Option<f64>) -> Result<(), DefinitionError> {
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(error(
            path,
            format!("min ({min}) is greater than max ({max})"),
        ));
    }
    Ok(())
}

fn choices(
    path: &str,
    kind: ValueType,
    choices: &[String],
) -> Result<Vec<String>, DefinitionError> {
    match kind {
        ValueType::Choice if choices.is_empty() => {
            Err(error(path, "type choice needs a non-empty choices list"))
        }
        ValueType::Choice => Ok(choices.iter().map(|c| c.trim().to_lowercase()).collect()),
        _ if !choices.is_empty() => Err(error(path, "choices are only for type choice")),
        _ => Ok(Vec::new()),
    }
}

fn compile_command(
    path: &str,
    spec: &CommandSpec,
    dialogues: &BTreeSet<&str>,
) -> Result<Command, DefinitionError> {
    if !valid_name(&spec.name, 1, 32) {
        return Err(error(
            format!("{path}.name"),
            "command names are 1-32 lowercase letters, digits or _, starting with a letter",
        ));
    }
    if RESERVED_COMMANDS.contains(&spec.name.as_str()) {
        return Err(error(
            format!("{path}.name"),
            format!("/{} is built in", spec.name),
        ));
    }
    unique(path, "argument", spec.args.iter().map(|a| a.name.as_str()))?;
    let mut known = base_placeholders();
    let mut args = Vec::with_capacity(spec.args.len());
    let mut optional_seen = false;
    for (i, arg) in spec.args.iter().enumerate() {
        let arg_path = format!("{path}.args[{}]", arg.name);
        if !valid_name(&arg.name, 1, 32) {
            return Err(error(&arg_path, "argument names are lowercase identifiers"));
        }
        if arg.rest && (i + 1 != spec.args.len() || arg.kind != ValueType::Text) {
            return Err(error(
                &arg_path,
                "only the last argument, of type text, may take the rest of the line",
            ));
        }
        if arg.required && optional_seen {
            return Err(error(
                &arg_path,
                "a required argument follows an optional one",
            ));
        }
        optional_seen |= !arg.required;
        bounds(&arg_path, arg.min, arg.max)?;
        known.insert(arg.name.clone());
        args.push(Argument {
            name: arg.name.clone(),
            kind: arg.kind,
            required: arg.required,
            choices: choices(&arg_path, arg.kind, &arg.choices)?,
            min: arg.min,
            max: arg.max,
            rest: arg.rest,
        });
    }
    Ok(Command {
        name: spec.name.clone(),
        description: spec.description.trim().to_owned(),
        args,
        action: action(
            path,
            spec.reply.as_ref(),
            spec.dialogue.as_ref(),
            &known,
            dialogues,
        )?,
    })
}

fn compile_rule(path: &str, spec: &RuleSpec) -> Result<Rule, DefinitionError> {
    let mut known = base_placeholders();
    let matcher = match (&spec.pattern, spec.keywords.is_empty()) {
        (Some(pattern), true) => {
            let compiled = regex(&format!("{path}.pattern"), pattern)?;
            for (i, name) in compiled.capture_names().enumerate().skip(1) {
                known.insert(i.to_string());
                if let Some(name) = name {
                    known.insert(name.to_owned());
                }
            }
            Matcher::Pattern(compiled)
        }
        (None, false) => {
            let words: Vec<String> = spec
                .keywords
                .iter()
                .map(|k| regex::escape(k.trim()))
                .filter(|k| !k.is_empty())
                .collect();
            if words.is_empty() {
                return Err(error(format!("{path}.keywords"), "keywords are empty"));
            }
            Matcher::Keywords(regex(
                &format!("{path}.keywords"),
                &format!(r"(?i)\b(?:{})\b", words.join("|")),
            )?)
        }
        _ => return Err(error(path, "needs exactly one of keywords or pattern")),
    };
    Ok(Rule {
        name: spec.name.clone(),
        matcher,
        reply: template(&format!("{path}.reply"), &spec.reply, &known)?,
    })
}

fn compile_dialogue(path: &str, spec: &DialogueSpec) -> Result<Dialogue, DefinitionError> {
    if spec.steps.is_empty() {
        return Err(error(
            format!("{path}.steps"),
            "a dialogue needs at least one step",
        ));
    }
    if spec.timeout_seconds == 0 {
        return Err(error(format!("{path}.timeoutSeconds"), "must be positive"));
    }
    unique(path, "step", spec.steps.iter().map(|s| s.id.as_str()))?;
    let index: HashMap<&str, usize> = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let target = |path: &str, id: &str| -> Result<Option<usize>, DefinitionError> {
        if id == "done" {
            return Ok(None);
        }
        index
            .get(id)
            .copied()
            .map(Some)
            .ok_or_else(|| error(path, format!("no step named {id:?}")))
    };
    // Placeholders: earlier answers may appear in later prompts; all in `done`.
    let mut known = base_placeholders();
    let mut steps = Vec::with_capacity(spec.steps.len());
    for (i, step) in spec.steps.iter().enumerate() {
        let step_path = format!("{path}.steps[{}]", step.id);
        if step.id == "done" || step.id.is_empty() {
            return Err(error(
                &step_path,
                "step ids must be non-empty and not \"done\"",
            ));
        }
        let save_as = step.save_as.clone().unwrap_or_else(|| step.id.clone());
        bounds(&step_path, step.expect.min, step.expect.max)?;
        let pattern = match &step.expect.pattern {
            Some(p) if step.expect.kind == ValueType::Text => Some(regex(
                &format!("{step_path}.expect.pattern"),
                &format!("^(?:{p})$"),
            )?),
            Some(_) => {
                return Err(error(
                    format!("{step_path}.expect.pattern"),
                    "patterns are only for text answers",
                ));
            }
            None => None,
        };
        let choices = choices(
            &format!("{step_path}.expect"),
            step.expect.kind,
            &step.expect.choices,
        )?;
        let next = match &step.next {
            Some(id) => target(&format!("{step_path}.next"), id)?,
            None => (i + 1 < spec.steps.len()).then_some(i + 1),
        };
        let branches = step
            .branches
            .iter()
            .map(|b| {
                Ok((
                    b.when.trim().to_lowercase(),
                    target(&format!("{step_path}.branches[{}].goto", b.when), &b.goto)?,
                ))
            })
            .collect::<Result<Vec<_>, DefinitionError>>()?;
        steps.push(Step {
            id: step.id.clone(),
            prompt: template(&format!("{step_path}.prompt"), &step.prompt, &known)?,
            expect: Expectation {
                kind: step.expect.kind,
                choices,
                min: step.expect.min,
                max: step.expect.max,
                pattern,
            },
            save_as: save_as.clone(),
            next,
            branches,
        });
        known.insert(save_as);
    }
    let base = base_placeholders();
    Ok(Dialogue {
        name: spec.name.clone(),
        description: spec.description.clone(),
        timeout: Duration::from_secs(spec.timeout_seconds),
        steps,
        done: template(&format!("{path}.done"), &spec.done, &known)?,
        cancelled: template(
            &format!("{path}.cancelled"),
            spec.cancelled.as_deref().unwrap_or("Cancelled."),
            &known,
        )?,
        timed_out: template(
            &format!("{path}.timedOut"),
            spec.timed_out
                .as_deref()
                .unwrap_or("That conversation timed out; start again when you are ready."),
            &base,
        )?,
    })
}

fn compile_webhook(path: &str, spec: &WebhookSpec) -> Result<Webhook, DefinitionError> {
    let url = url::Url::parse(&spec.url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| error(format!("{path}.url"), "must be an http(s) URL"))?;
    let secret = match (&spec.secret_env, &spec.secret_file) {
        (Some(var), None) if !var.is_empty() => SecretSource::Env(var.clone()),
        (None, Some(file)) if !file.is_empty() => SecretSource::File(file.clone()),
        _ => {
            return Err(error(
                path,
                "needs exactly one of secretEnv or secretFile (the HMAC signing secret)",
            ));
        }
    };
    if !(100..=60_000).contains(&spec.timeout_ms) {
        return Err(error(format!("{path}.timeoutMs"), "must be 100-60000"));
    }
    if !(1..=10).contains(&spec.max_attempts) {
        return Err(error(format!("{path}.maxAttempts"), "must be 1-10"));
    }
    Ok(Webhook {
        url,
        secret,
        timeout: Duration::from_millis(spec.timeout_ms),
        max_attempts: spec.max_attempts,
    })
}

fn compile_bot(spec: &BotSpec) -> Result<Bot, DefinitionError> {
    let path = format!("bots[{}]", spec.name);
    if !valid_name(&spec.name, 3, 32) {
        return Err(error(
            format!("{path}.name"),
            "bot names are 3-32 lowercase letters, digits or _, starting with a letter",
        ));
    }
    unique(
        &path,
        "command",
        spec.commands.iter().map(|c| c.name.as_str()),
    )?;
    unique(&path, "rule", spec.rules.iter().map(|r| r.name.as_str()))?;
    unique(
        &path,
        "dialogue",
        spec.dialogues.iter().map(|d| d.name.as_str()),
    )?;
    let dialogues = spec
        .dialogues
        .iter()
        .map(|d| compile_dialogue(&format!("{path}.dialogues[{}]", d.name), d))
        .collect::<Result<Vec<_>, _>>()?;
    let dialogue_names: BTreeSet<&str> = spec.dialogues.iter().map(|d| d.name.as_str()).collect();
    let commands = spec
        .commands
        .iter()
        .map(|c| compile_command(&format!("{path}.commands[{}]", c.name), c, &dialogue_names))
        .collect::<Result<Vec<_>, _>>()?;
    let rules = spec
        .rules
        .iter()
        .map(|r| compile_rule(&format!("{path}.rules[{}]", r.name), r))
        .collect::<Result<Vec<_>, _>>()?;
    let base = base_placeholders();
    let intents = match &spec.intents {
        None => None,
        Some(intents) => {
            let intents_path = format!("{path}.intents");
            if !(0.0..=1.0).contains(&intents.threshold) {
                return Err(error(
                    format!("{intents_path}.threshold"),
                    "must be within 0-1",
                ));
            }
            if intents.items.is_empty() {
                return Err(error(
                    format!("{intents_path}.items"),
                    "no intents declared",
                ));
            }
            unique(
                &intents_path,
                "intent",
                intents.items.iter().map(|i| i.name.as_str()),
            )?;
            let mut items = Vec::new();
            let mut examples = Vec::new();
            for (i, item) in intents.items.iter().enumerate() {
                let item_path = format!("{intents_path}.items[{}]", item.name);
                if item.examples.iter().all(|e| e.trim().is_empty()) {
                    return Err(error(
                        format!("{item_path}.examples"),
                        "needs example utterances",
                    ));
                }
                examples.extend(item.examples.iter().map(|e| (i, e.as_str())));
                items.push(Intent {
                    name: item.name.clone(),
                    action: action(
                        &item_path,
                        item.reply.as_ref(),
                        item.dialogue.as_ref(),
                        &base,
                        &dialogue_names,
                    )?,
                });
            }
            Some(Intents {
                threshold: intents.threshold,
                items,
                index: IntentIndex::build(&examples),
            })
        }
    };
    let optional = |name: &str, source: &Option<String>| {
        source
            .as_deref()
            .map(|s| template(&format!("{path}.{name}"), s, &base))
            .transpose()
    };
    Ok(Bot {
        name: spec.name.clone(),
        display_name: spec
            .display_name
            .clone()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| spec.name.clone()),
        description: spec.description.clone().unwrap_or_default(),
        source: spec.source.clone().unwrap_or_else(|| "file".to_owned()),
        start: optional("start", &spec.start)?,
        commands,
        rules,
        dialogues,
        intents,
        fallback: optional("fallback", &spec.fallback)?,
        webhook: spec
            .webhook
            .as_ref()
            .map(|w| compile_webhook(&format!("{path}.webhook"), w))
            .transpose()?,
    })
}

/// Checks the whole file and builds what the engine runs.
pub fn compile(file: &DefinitionsFile) -> Result<BotSet, DefinitionError> {
    unique("bots", "bot", file.bots.iter().map(|b| b.name.as_str()))?;
    Ok(BotSet {
        bots: file
            .bots
            .iter()
            .map(|spec| compile_bot(spec).map(Arc::new))
            .collect::<Result<_, _>>()?,
    })
}

/// Parses and compiles file contents.
pub fn load(text: &str) -> Result<BotSet, DefinitionError> {
    compile(&parse(text)?)
}

/// The saved answers of a dialogue, by name.
pub type Answers = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
bots:
  - name: helper_bot
    displayName: Helper
    commands:
      - name: weather
        description: Weather for a city
        args:
          - { name: city, rest: true }
        reply: "Sunny in {{city}}, {{sender}}"
      - name: order
        dialogue: pizza
    rules:
      - name: hello
        keywords: [hello, hi]
        reply: "Hello {{sender}}!"
    dialogues:
      - name: pizza
        steps:
          - id: size
            prompt: "Size?"
            expect: { type: choice, choices: [small, large] }
          - id: count
            prompt: "How many {{size}}?"
            expect: { type: integer, min: 1, max: 5 }
        done: "{{count}} x {{size}}"
"#;

    #[test]
    fn a_sample_compiles_and_generates_help() {
        let set = load(SAMPLE).unwrap();
        let bot = set.get("helper_bot").unwrap();
        assert_eq!(
            bot.command("weather").unwrap().usage(),
            "/weather <city...>"
        );
        let help = bot.help();
        assert!(
            help.contains("/weather <city...> — Weather for a city"),
            "{help}"
        );
        assert!(help.contains("/cancel"), "{help}");
    }

    #[test]
    fn errors_name_the_place() {
        let cases = [
            (
                SAMPLE.replace("{{city}}, {{sender}}", "{{town}}"),
                "bots[helper_bot].commands[weather].reply",
            ),
            (
                SAMPLE.replace("dialogue: pizza", "dialogue: pasta"),
                "bots[helper_bot].commands[order].dialogue",
            ),
            (
                SAMPLE.replace("How many {{size}}?", "How many {{count}}?"),
                "bots[helper_bot].dialogues[pizza].steps[count].prompt",
            ),
            (
                SAMPLE.replace("min: 1, max: 5", "min: 5, max: 1"),
                "bots[helper_bot].dialogues[pizza].steps[count]",
            ),
            (
                SAMPLE.replace("name: hello", "name: hello\n        pattern: '('"),
                "bots[helper_bot].rules[hello]",
            ),
            (
                SAMPLE.replace("name: helper_bot", "name: Helper Bot"),
                "bots[Helper Bot].name",
            ),
            (
                SAMPLE.replace("name: weather", "name: help"),
                "bots[helper_bot].commands[help].name",
            ),
        ];
        for (text, path) in cases {
            let error = load(&text).unwrap_err();
            assert_eq!(error.path, path, "{error}");
        }
        assert_eq!(load("bots: [1, 2").unwrap_err().path, "file");
        assert_eq!(
            load("bots:\n  - name: a_bot\n    colour: red\n")
                .unwrap_err()
                .path,
            "file"
        );
    }

    #[test]
    fn the_documented_example_is_valid() {
        let set = load(include_str!("../../bots/bots.example.yaml")).unwrap();
        assert_eq!(set.bots[0].name, "helper_bot");
    }

    #[test]
    fn json_is_accepted_too() {
        let set =
            load(r#"{"bots": [{"name": "echo_bot", "fallback": "You said something"}]}"#).unwrap();
        assert_eq!(set.bots.len(), 1);
    }
}

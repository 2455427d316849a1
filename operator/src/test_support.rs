//! Fixtures for unit tests.

use crate::crd::{ChatBot, ChatBotSpec, DatabaseBindings};

/// A ChatBot as the API server would hand it over: namespace `chat`, a uid
/// (owner references need one) and default database bindings.
pub fn chatbot(name: &str) -> ChatBot {
    let mut chatbot = ChatBot::new(
        name,
        ChatBotSpec {
            databases: DatabaseBindings::default(),
            ..ChatBotSpec::default()
        },
    );
    chatbot.metadata.namespace = Some("chat".into());
    chatbot.metadata.uid = Some(format!("uid-{name}"));
    chatbot.metadata.generation = Some(1);
    chatbot
}

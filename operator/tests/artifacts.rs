//! The files generated from or written for the operator stay true to it:
//! the CRD YAML under `crds/` (and the chart's copy) equals what the Rust
//! types generate, the samples are valid ChatBot/Bot objects whose bots
//! compile, and the chart and every manifest pass `scripts/validate-k8s.sh`
//! (helm lint + render, Kubernetes schema validation, policy checks).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use operator::crd::{Bot, ChatBot, crd_file_name, crd_yaml, crds};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_committed_crds_equal_the_generated_ones() {
    for crd in crds() {
        let generated = crd_yaml(&crd).unwrap();
        let name = crd_file_name(&crd);
        for dir in ["crds", "charts/chat-platform/crds"] {
            let committed = read(&root().join(dir).join(&name));
            assert!(
                committed == generated,
                "{dir}/{name} differs from the Rust types: run \
                 `cargo run -p operator -- crds --dir crds && scripts/render-manifests.sh`"
            );
        }
    }
}

fn documents(file: &str) -> Vec<serde_json::Value> {
    let text = read(&root().join("manifests/samples").join(file));
    serde_saphyr::from_str_multiple::<serde_json::Value, Vec<_>>(&text).unwrap()
}

#[test]
fn the_samples_are_valid_and_their_bots_compile() {
    let chatbot: ChatBot = serde_json::from_value(documents("chatbot.yaml").remove(0)).unwrap();
    let bot: Bot = serde_json::from_value(documents("bot.yaml").remove(0)).unwrap();
    let aggregate = operator::bots::aggregate(&chatbot.spec.bots, &[bot]);
    assert!(aggregate.invalid.is_empty(), "{:?}", aggregate.invalid);
    assert_eq!(aggregate.accepted, 2);
}

#[test]
fn the_chart_and_manifests_validate_against_the_kubernetes_schemas() {
    let output = Command::new("bash")
        .arg(root().join("scripts/validate-k8s.sh"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "validate-k8s.sh failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("objects valid"), "{stdout}");
}

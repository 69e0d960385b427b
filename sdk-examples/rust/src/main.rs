//! An agent loop with Cairn as its long-term memory.
//!
//! It plays a short conversation turn by turn, remembering every turn (with speaker and turn number as
//! metadata), and before answering each user question it recalls the most relevant earlier turns and shows
//! the context it would put into its language model's prompt.
//!
//! Run a node (`scripts/run`), then: `cargo run -p cairn-agent-example [-- --node URL --ns NAMESPACE]`.

use anyhow::Result;
use cairn_client::{CairnClient, NewMemory};

/// The conversation: (speaker, text). Lines from the user ending in `?` are questions the agent answers.
const CONVERSATION: &[(&str, &str)] = &[
    (
        "user",
        "Hi! I'm planning a trip to Japan in April with my sister Mia.",
    ),
    (
        "agent",
        "Lovely! April is cherry blossom season. Where are you flying into?",
    ),
    (
        "user",
        "We land in Osaka on April 3rd and leave from Tokyo on the 15th.",
    ),
    ("user", "Mia is vegetarian, and I can't eat shellfish."),
    (
        "agent",
        "Noted. Kyoto has many shojin ryori (Buddhist vegetarian) restaurants.",
    ),
    ("user", "My budget for hotels is about 150 dollars a night."),
    ("user", "What should we eat in Kyoto?"),
    ("user", "Which airport do we arrive at?"),
    ("user", "How much can I spend on accommodation?"),
];

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<()> {
    let node = arg("--node")
        .or_else(|| std::env::var("CAIRN_NODE").ok())
        .unwrap_or_else(|| cairn_client::DEFAULT_NODE.to_owned());
    let ns = arg("--ns").unwrap_or_else(|| format!("examples/agent-{}", std::process::id()));
    // A capability token (`cairn token mint --ns examples --rights read,write`); CAIRN_TOKEN by default.
    let token = arg("--token")
        .or_else(|| std::env::var("CAIRN_TOKEN").ok())
        .unwrap_or_default();
    let memory = CairnClient::connect_with_token(node.clone(), token).await?;
    println!("agent memory: {node}, namespace {ns}\n");

    for (turn, (speaker, text)) in CONVERSATION.iter().enumerate() {
        println!("[{turn}] {speaker}: {text}");
        if *speaker == "user" && text.ends_with('?') {
            // Recall before answering: only earlier turns, best first.
            let hits = memory.recall(&ns, *text).k(3).send().await?;
            println!("      context recalled for the prompt:");
            for h in &hits {
                println!(
                    "        {:.3}  (turn {}, {}) {}",
                    h.score,
                    h.metadata.get("turn").map(String::as_str).unwrap_or("?"),
                    h.metadata.get("speaker").map(String::as_str).unwrap_or("?"),
                    h.text
                );
            }
        }
        let item = NewMemory::new(*text)
            .meta("speaker", *speaker)
            .meta("turn", turn.to_string());
        memory.remember(&ns, vec![item]).await?;
    }
    let stats = memory.stats(Some(&ns)).await?;
    println!("\n{} memories in {ns}", stats.total_memories);
    Ok(())
}

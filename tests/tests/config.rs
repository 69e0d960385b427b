//! `cairn serve --config FILE`: settings come from a TOML file, command-line flags win, unknown settings are
//! refused, `--print-config` shows the effective settings, and a node started from a file runs with them.

use cairn_client::NewMemory;
use cairn_tests::{cairn_bin, temp_dir, Node};

fn print_config(args: &[&str]) -> std::process::Output {
    std::process::Command::new(cairn_bin())
        .arg("serve")
        .args(args)
        .arg("--print-config")
        .env("CAIRN_LOG", "warn")
        .output()
        .expect("run cairn")
}

#[tokio::test]
async fn settings_come_from_the_file_and_flags_win() {
    let dir = temp_dir();
    let file = dir.path().join("cairn.toml");
    let witness = "22fc297792f0b6ffc0bfcfdb7edb0c0aa14e025a365ec0e342e86e3829cb74b6";
    std::fs::write(
        &file,
        format!(
            "# a node's settings\nmax-watchers = 7\nscrub_secs = 3\ntls = true\nwitness = [\"{witness}\"]\nmax-page-mb = 2\n"
        ),
    )
    .expect("write config");
    let f = file.to_str().expect("path");
    let out = print_config(&["--config", f, "--max-watchers", "9"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "max-watchers = 9".to_owned(),
        "scrub-secs = 3".to_owned(),
        "tls = true".to_owned(),
        "max-page-mb = 2".to_owned(),
        format!("witness = [\"{witness}\"]"),
        "max-in-flight = 256".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    // Without the file, the defaults.
    let out = print_config(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l == "max-watchers = 1024"), "{text}");
    assert!(text.lines().any(|l| l == "tls = false"), "{text}");

    // A setting that is not a flag is refused, naming it.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "max_in_fligth = 3\n").expect("write");
    let out = print_config(&["--config", bad.to_str().expect("path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown setting") && err.contains("max_in_fligth"),
        "{err}"
    );

    // A node started from the file runs with its settings: here TLS, so the harness finds a certificate.
    let data = temp_dir();
    let node = Node::start_with(data.path(), &["--config", f]).expect("node from config");
    assert!(node.url.starts_with("https://"), "{}", node.url);
    let c = node.client().await.expect("client");
    c.remember(
        "config",
        vec![NewMemory::new("Started from a config file.")],
    )
    .await
    .expect("remember");
}

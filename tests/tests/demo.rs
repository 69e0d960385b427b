//! The three-node demo script in sdk-examples runs end to end: replicate, kill the owner, verified recalls
//! with a witness from a replica.

#[test]
fn replication_demo_script_runs() {
    let script = cairn_tests::repo_dir().join("sdk-examples/replication-demo.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("CAIRN", cairn_tests::cairn_bin())
        .output()
        .expect("run the demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("peanuts"), "{text}");
    assert!(
        text.contains("with 1 witness") || text.contains("witness cosignatures"),
        "{text}"
    );
    assert!(text.contains("read-only replica"), "{text}");
    assert!(text.contains("demo ok"), "{text}");
}

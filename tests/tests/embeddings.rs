//! The embedding pipeline against independent reference vectors, through the real CLI and a real node.

use cairn_tests::{cosine, fixture, temp_dir, Node};

fn vectors(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        })
        .collect()
}

#[test]
fn cli_embed_matches_reference_fixture() {
    let fixture: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture("minilm-reference.json")).expect("fixture file"),
    )
    .expect("fixture JSON");
    let items = fixture["items"].as_array().expect("items");
    assert!(items.len() >= 5);
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let texts: Vec<&str> = items
        .iter()
        .map(|i| i["text"].as_str().expect("text"))
        .collect();
    let mut args = vec!["embed"];
    args.extend(texts.iter().copied());
    let out = node.cli_json(&args);
    assert_eq!(out["dim"], 384);
    assert!(out["model"]
        .as_str()
        .expect("model")
        .starts_with("all-MiniLM-L6-v2@"));
    let got = vectors(&out);
    assert_eq!(got.len(), items.len());
    for (item, v) in items.iter().zip(&got) {
        let want: Vec<f32> = item["embedding"]
            .as_array()
            .expect("embedding")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect();
        let c = cosine(&want, v);
        assert!(c >= 0.9999, "cosine {c} for {:?}", item["text"]);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not unit length: {norm}");
    }
}

#[test]
fn published_similarities_and_truncation_at_256_word_pieces() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let out = node.cli_json(&[
        "embed",
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome",
        "The new movie is so great",
    ]);
    let v = vectors(&out);
    assert!(
        (cosine(&v[0], &v[1]) - 0.7553).abs() < 0.001,
        "{}",
        cosine(&v[0], &v[1])
    );
    assert!(
        (cosine(&v[2], &v[3]) - 0.8939).abs() < 0.001,
        "{}",
        cosine(&v[2], &v[3])
    );

    // 300 single-piece words, then two different endings: both endings fall past piece 256 (254 + [CLS]/[SEP]),
    // so the vectors must be identical; a truncation at 128 or none at all would differ elsewhere.
    let head = "word ".repeat(300);
    let a = format!("{head} the cat sat on the mat");
    let b = format!("{head} quantum chromodynamics lattice");
    // Same ending moved inside the window must change the vector (guards against truncating too early).
    let short_head = "word ".repeat(200);
    let c = format!("{short_head} the cat sat on the mat");
    let d = format!("{short_head} quantum chromodynamics lattice");
    let out = node.cli_json(&["embed", &a, &b, &c, &d]);
    let v = vectors(&out);
    assert!(cosine(&v[0], &v[1]) > 0.99999, "{}", cosine(&v[0], &v[1]));
    assert!(cosine(&v[2], &v[3]) < 0.9999, "{}", cosine(&v[2], &v[3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_embeds_equal_single_embeds() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let client = node.client().await.expect("client");
    let texts: Vec<String> = (0..24)
        .map(|i| {
            format!(
                "Sentence number {i} talks about topic {} in some detail.",
                i % 5
            )
        })
        .collect();
    let mut alone = Vec::new();
    for t in &texts {
        alone.push(
            client
                .embed(vec![t.clone()])
                .await
                .expect("embed")
                .vectors
                .remove(0)
                .values,
        );
    }
    let mut tasks = Vec::new();
    for t in texts.clone() {
        let c = client.clone();
        tasks.push(tokio::spawn(async move { c.embed(vec![t]).await }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let v = task
            .await
            .expect("join")
            .expect("embed")
            .vectors
            .remove(0)
            .values;
        assert!(cosine(&v, &alone[i]) > 0.99999, "text {i}");
    }
}

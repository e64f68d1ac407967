//! The OpenAI-compatible API server on the real models: SSE framing, the whole-answer
//! shape, reasoning kept out of `content`, errors, keys and origins, concurrent requests on
//! two models, a disconnecting client freeing its model, and opt-in history saving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use conclave_core::api::{ApiConfig, ApiServeError, ApiServer};
use conclave_core::history::History;
use conclave_core::models::Library;
use conclave_core::session::Conclave;
use conclave_tests::{engine, model, GEMMA3, SMOLLM2};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1";

struct Server {
    server: ApiServer,
    app: std::sync::Arc<Conclave>,
    _dir: tempfile::TempDir,
}

async fn start(tweak: impl FnOnce(&mut ApiConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path().join("history.sqlite3"))
        .await
        .unwrap();
    let app = Conclave::new(engine(), history, Library::with_root(dir.path()));
    let mut config = ApiConfig {
        port: 0,
        models: vec![model(SMOLLM2), model(GEMMA3)],
        n_ctx: 2048,
        threads: Some(1),
        ..ApiConfig::default()
    };
    tweak(&mut config);
    let server = ApiServer::start(config, app.clone()).await.unwrap();
    Server {
        server,
        app,
        _dir: dir,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    async fn stop(self) {
        self.server.shutdown().await.unwrap();
        for m in self.app.loaded().await {
            self.app.unload(&m.path).await;
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

fn ask(model: &str, question: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "temperature": 0,
        "max_tokens": 32,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let res = client().post(url).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Splits an SSE body into its `data:` payloads, checking the framing byte for byte.
fn sse_events(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("data: [DONE]\n\n"),
        "body must end with [DONE]: {body:?}"
    );
    let events: Vec<&str> = body.split_terminator("\n\n").collect();
    for e in &events {
        assert!(e.starts_with("data: "), "event without data prefix: {e:?}");
        assert!(!e.contains('\n'), "one line per event: {e:?}");
    }
    assert_eq!(events.iter().filter(|e| **e == "data: [DONE]").count(), 1);
    events
        .iter()
        .map(|e| e["data: ".len()..].to_owned())
        .collect()
}

fn assert_usage(u: &Value) {
    let p = u["prompt_tokens"].as_u64().unwrap();
    let c = u["completion_tokens"].as_u64().unwrap();
    assert!(p > 10 && c > 0, "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    assert!(u["prompt_tokens_details"]["cached_tokens"].is_u64(), "{u}");
    assert!(
        u["completion_tokens_details"]["reasoning_tokens"].is_u64(),
        "{u}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_and_whole_answers_have_openai_shapes() {
    let s = start(|_| {}).await;
    let url = s.url("/v1/chat/completions");

    // Streaming, with the usage chunk.
    let body = ask(
        SMOL,
        "What is the capital of France?",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let res = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = res.text().await.unwrap();
    let events = sse_events(&text);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.len() >= 4, "{text}");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], SMOL);
        assert!(c["created"].as_u64().unwrap() > 1_600_000_000);
        assert!(c["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (usage_chunk, with_choices) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_usage(&usage_chunk["usage"]);
    let finishes: Vec<&Value> = with_choices
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(
        finishes,
        [&json!("stop")],
        "one finish_reason, on the last chunk"
    );
    assert!(!with_choices.last().unwrap()["choices"][0]["finish_reason"].is_null());
    for c in &with_choices[1..] {
        assert!(
            c["choices"][0]["delta"].get("role").is_none(),
            "role only in the first chunk"
        );
        assert!(
            c["usage"].is_null(),
            "usage null on content chunks when include_usage"
        );
    }
    let streamed: String = with_choices
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(streamed.contains("Paris"), "{streamed}");

    // The same question whole.
    let (status, r) = post(
        &url,
        &ask(SMOL, "What is the capital of France?", json!({})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(r["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
    let choice = &r["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["finish_reason"], "stop");
    assert!(
        choice["message"].get("reasoning_content").is_none(),
        "no thinking, no field"
    );
    assert_eq!(
        choice["message"]["content"].as_str().unwrap(),
        streamed,
        "greedy: same text both ways"
    );
    assert_usage(&r["usage"]);
    assert!(
        r["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "the system prefix is reused: {r}"
    );

    // Without include_usage: no usage chunk, no usage keys, [DONE] last.
    let body = ask(SMOL, "Say hello.", json!({"stream": true, "max_tokens": 4}));
    let text = client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert!(last.get("usage").is_none());

    // /v1/models lists both served models by usable ids, without paths.
    let models: Value = client()
        .get(s.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"SmolLM2-135M-Instruct.Q4_1.gguf")
            && ids.contains(&"gemma-3-270m-q4_k_m.gguf"),
        "{ids:?}"
    );
    assert!(
        !models.to_string().contains("/models/"),
        "no paths: {models}"
    );
    let (status, _) = post(&url, &ask(ids[1], "Hi", json!({"max_tokens": 2}))).await;
    assert_eq!(status, 200);
    let health: Value = client()
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_goes_to_reasoning_content_and_json_modes_parse() {
    let s = start(|_| {}).await;
    let url = s.url("/v1/chat/completions");
    // An explicit effort makes even SmolLM2 think (the engine's generic <think> block).
    let body = ask(
        SMOL,
        "Is 17 a prime number?",
        json!({"reasoning_effort": "low", "max_tokens": 48, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let text = client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!reasoning.trim().is_empty(), "{text}");
    assert!(
        !content.contains("<think>") && !content.contains("</think>"),
        "{content}"
    );
    assert!(!reasoning.contains("<think>"), "{reasoning}");
    let usage = &chunks.last().unwrap()["usage"];
    assert!(
        usage["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{usage}"
    );

    // JSON mode: the grammar makes even a 135M model answer with an object.
    let (status, r) = post(
        &url,
        &ask(
            SMOL,
            "Give a JSON object with the name and age of Alice, 30.",
            json!({"response_format": {"type": "json_object"}, "max_tokens": 100}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let content = r["choices"][0]["message"]["content"].as_str().unwrap();
    let v: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content}"));
    assert!(v.is_object());

    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
        "pet": {"enum": ["cat", "dog", "none"]}}, "required": ["name", "age", "pet"]});
    let (status, r) = post(&url, &ask(SMOL, "Describe Alice, 30, who has a cat, as JSON.", json!({"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}, "max_tokens": 80}))).await;
    assert_eq!(status, 200, "{r}");
    let content = r["choices"][0]["message"]["content"].as_str().unwrap();
    let v: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content}"));
    assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
    assert!(
        ["cat", "dog", "none"].contains(&v["pet"].as_str().unwrap()),
        "{v}"
    );
    s.stop().await;
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: Option<&str>) {
    assert_eq!(status, want_status, "{body}");
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        e["type"].is_string() && e.get("param").is_some() && e.get("code").is_some(),
        "{body}"
    );
    if let Some(code) = want_code {
        assert_eq!(e["code"], code, "{body}");
    }
    let text = body.to_string();
    assert!(
        !text.contains("/work/")
            && !text.contains("/tmp/")
            && !text.contains("/home/")
            && !text.contains("panicked"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_openai_shaped_and_safe() {
    let s = start(|c| c.api_key = Some("sekrit-0123456789abcdef".into())).await;
    let url = s.url("/v1/chat/completions");
    let c = client();
    let send = |body: Vec<u8>, key: Option<&'static str>| {
        let mut rb = c
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        async move {
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let ok = serde_json::to_vec(&ask("no-such-model", "x", json!({}))).unwrap();

    let (st, b) = send(ok.clone(), None).await;
    assert_error(st, &b, 401, Some("invalid_api_key"));
    let (st, b) = send(ok.clone(), Some("wrong")).await;
    assert_error(st, &b, 401, Some("invalid_api_key"));
    let (st, b) = send(b"{not json".to_vec(), Some("sekrit-0123456789abcdef")).await;
    assert_error(st, &b, 400, None);
    assert_eq!(b["error"]["type"], "invalid_request_error");
    let (st, b) = send(ok.clone(), Some("sekrit-0123456789abcdef")).await;
    assert_error(st, &b, 404, Some("model_not_found"));
    assert_eq!(b["error"]["param"], "model");
    let path_model =
        serde_json::to_vec(&ask(&model(SMOLLM2).display().to_string(), "x", json!({}))).unwrap();
    let (st, _) = send(path_model, Some("sekrit-0123456789abcdef")).await;
    assert_eq!(st, 404, "a client cannot name files by path");
    let bad_param = serde_json::to_vec(&ask(SMOL, "x", json!({"temperature": 9}))).unwrap();
    let (st, b) = send(bad_param, Some("sekrit-0123456789abcdef")).await;
    assert_error(st, &b, 400, Some("invalid_value"));
    assert_eq!(b["error"]["param"], "temperature");
    let image = serde_json::to_vec(&json!({"model": SMOL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})).unwrap();
    let (st, b) = send(image, Some("sekrit-0123456789abcdef")).await;
    assert_error(st, &b, 400, Some("unsupported_parameter"));
    let schema = serde_json::to_vec(&ask(SMOL, "x", json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "string", "pattern": "a+"}}}}))).unwrap();
    let (st, b) = send(schema, Some("sekrit-0123456789abcdef")).await;
    assert_error(st, &b, 400, Some("invalid_value"));

    // Over the 4 MiB limit: announced by Content-Length, and chunked with none.
    let big = vec![b'a'; 5 * 1024 * 1024];
    // The server answers 413 from the Content-Length alone and closes without reading the
    // body, so a client still writing may see the close (a broken pipe) before the answer:
    // both mean the body was refused. The chunked case below always reads the 413.
    let announced = c
        .post(&url)
        .header("content-type", "application/json")
        .bearer_auth("sekrit-0123456789abcdef")
        .body(big.clone())
        .send()
        .await;
    match announced {
        Ok(r) => {
            let st = r.status().as_u16();
            assert_error(st, &r.json().await.unwrap(), 413, Some("request_too_large"));
        }
        Err(e) => {
            let text = format!("{e:?}");
            assert!(
                text.contains("BrokenPipe") || text.contains("ConnectionReset"),
                "not a refusal: {text}"
            );
        }
    }
    let chunks = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    // Refused while the body still streams: the server may answer and close before the
    // client has written it all, which the client sees as a broken pipe (a race on a busy
    // machine). Either way nothing past the limit was read.
    let streamed = c
        .post(&url)
        .header("content-type", "application/json")
        .bearer_auth("sekrit-0123456789abcdef")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    match streamed {
        Ok(r) => {
            assert_eq!(r.status(), 413);
            // The connection is done (its body was not read): the same pooled client goes
            // on below.
            assert_eq!(
                r.headers().get("connection").map(|v| v.as_bytes()),
                Some(&b"close"[..])
            );
            assert_error(
                413,
                &r.json().await.unwrap(),
                413,
                Some("request_too_large"),
            );
        }
        Err(e) => {
            let text = format!("{e:?}");
            assert!(
                text.contains("BrokenPipe") || text.contains("ConnectionReset"),
                "not a refusal: {text}"
            );
        }
    }

    // Unknown routes, /health without a key, the models list with one.
    let r = c
        .get(s.url("/v1/nothing"))
        .bearer_auth("sekrit-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);
    assert_eq!(
        c.get(s.url("/v1/models")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        c.get(s.url("/v1/models"))
            .bearer_auth("sekrit-0123456789abcdef")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // With a key, any browser origin may call (the key is the gate).
    let r = c
        .get(s.url("/v1/models"))
        .bearer_auth("sekrit-0123456789abcdef")
        .header("origin", "https://ui.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    s.stop().await;

    // Without a key: loopback origins only, loopback Host only.
    let s = start(|_| {}).await;
    let r = c
        .get(s.url("/v1/models"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(s.url("/v1/models"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let r = c
        .get(s.url("/v1/models"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "DNS rebinding");
    s.stop().await;

    // Beyond loopback, no key, no server.
    let dir = tempfile::tempdir().unwrap();
    let app = Conclave::new(
        engine(),
        History::open(dir.path().join("h.sqlite3")).await.unwrap(),
        Library::with_root(dir.path()),
    );
    let cfg = ApiConfig {
        host: "0.0.0.0".into(),
        port: 0,
        ..ApiConfig::default()
    };
    assert!(matches!(
        ApiServer::start(cfg, app).await,
        Err(ApiServeError::KeyRequired(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_two_models_all_complete() {
    let s = start(|_| {}).await;
    let url = s.url("/v1/chat/completions");
    let jobs = [
        (SMOLLM2, "What is the capital of France?", false),
        (GEMMA3, "The capital of France is", true),
        (SMOLLM2, "Name a colour.", true),
        (GEMMA3, "One, two, three,", false),
    ];
    let t0 = Instant::now();
    let futs = jobs.iter().map(|(m, q, stream)| {
        let body = ask(m, q, json!({"stream": stream, "max_tokens": 12}));
        let url = url.clone();
        async move {
            let res = client().post(&url).json(&body).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let text = res.text().await.unwrap();
            if *stream {
                let events = sse_events(&text);
                let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
                assert!(last["choices"][0]["finish_reason"].is_string(), "{text}");
                events.len()
            } else {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert!(v["choices"][0]["finish_reason"].is_string(), "{v}");
                assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");
                1
            }
        }
    });
    let done = futures::future::join_all(futs).await;
    assert_eq!(done.len(), 4);
    assert!(t0.elapsed() < Duration::from_secs(240));
    assert_eq!(s.app.loaded().await.len(), 2, "each model loaded once");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnecting_client_frees_the_model() {
    let s = start(|c| c.models.truncate(1)).await;
    let url = s.url("/v1/chat/completions");
    let long = ask(
        SMOL,
        "Count from 1 to 1000, separated by commas.",
        json!({"stream": true, "max_tokens": 1800}),
    );
    let mut res = client().post(&url).json(&long).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut seen = 0;
    while seen < 300 {
        let chunk = res.chunk().await.unwrap().expect("the answer goes on");
        seen += chunk.len();
    }
    drop(res);
    let t0 = Instant::now();
    let (status, r) = post(&url, &ask(SMOL, "Say hello.", json!({"max_tokens": 6}))).await;
    assert_eq!(status, 200, "{r}");
    // 1800 tokens of counting take far longer than this on SmolLM2 with one thread.
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "waited {:?}: the abandoned answer kept the model",
        t0.elapsed()
    );

    // A client waiting for a whole answer that gives up: hyper drops the handler, which
    // drops the answer's stream.
    let whole = ask(
        SMOL,
        "Count from 1 to 1000, separated by commas.",
        json!({"max_tokens": 1800}),
    );
    let gave_up = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .post(&url)
        .json(&whole)
        .send()
        .await;
    assert!(gave_up.is_err(), "1800 tokens in under 2 s?");
    let t0 = Instant::now();
    let (status, r) = post(&url, &ask(SMOL, "Say hello.", json!({"max_tokens": 6}))).await;
    assert_eq!(status, 200, "{r}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "waited {:?} after a non-streaming client gave up",
        t0.elapsed()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_saved_only_when_enabled() {
    for save in [false, true] {
        let s = start(|c| {
            c.save_history = save;
            c.models.truncate(1);
        })
        .await;
        let body = ask(
            SMOL,
            "What is the capital of France?",
            json!({"max_tokens": 8}),
        );
        let (status, r) = post(&s.url("/v1/chat/completions"), &body).await;
        assert_eq!(status, 200, "{r}");
        // The finish is written as the answer ends; give the writer a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let convs = s.app.history.list_conversations(100, None).await.unwrap();
        if save {
            assert_eq!(convs.len(), 1);
            let tree = s.app.history.get_conversation(&convs[0].id).await.unwrap();
            let answer = r["choices"][0]["message"]["content"].as_str().unwrap();
            assert!(
                tree.messages.iter().any(|m| m.content == answer),
                "{tree:?}"
            );
            assert_eq!(
                tree.conversation.settings.system_prompt.as_deref(),
                Some("You are a helpful assistant.")
            );
        } else {
            assert!(convs.is_empty(), "saved without being asked: {convs:?}");
        }
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429() {
    let s = start(|c| {
        c.max_queue_per_model = 1;
        c.models.truncate(1);
    })
    .await;
    let url = s.url("/v1/chat/completions");
    let long = ask(
        SMOL,
        "Count from 1 to 1000, separated by commas.",
        json!({"stream": true, "max_tokens": 1800}),
    );
    let mut first = client().post(&url).json(&long).send().await.unwrap();
    assert_eq!(first.status(), 200);
    first.chunk().await.unwrap();
    let res = client()
        .post(&url)
        .json(&ask(SMOL, "Hi", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = res.json().await.unwrap();
    assert_error(429, &body, 429, Some("queue_full"));
    drop(first);
    // The place frees with the dropped stream.
    let t0 = Instant::now();
    loop {
        let (status, _) = post(&url, &ask(SMOL, "Hi", json!({"max_tokens": 2}))).await;
        if status == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the queue place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_for_browsers_and_bodies() {
    let s = start(|c| c.models.truncate(1)).await;
    let url = s.url("/v1/chat/completions");
    let c = client();
    let body = serde_json::to_vec(&ask("no-such-model", "x", json!({}))).unwrap();

    // A POST body must say it is JSON: a "simple" cross-origin POST cannot.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut rb = c.post(&url).body(body.clone());
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        let r = rb.send().await.unwrap();
        let st = r.status().as_u16();
        assert_error(
            st,
            &r.json().await.unwrap(),
            415,
            Some("unsupported_media_type"),
        );
    }
    let r = c
        .post(&url)
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "JSON with parameters is JSON (the model is unknown)"
    );

    // The browser says another site sent it and names no origin (an <img>, a <script>).
    let r = c
        .get(s.url("/v1/models"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    assert_error(
        st,
        &r.json().await.unwrap(),
        403,
        Some("cross_site_not_allowed"),
    );
    for site in ["same-origin", "same-site", "none"] {
        let r = c
            .get(s.url("/v1/models"))
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{site}");
    }

    // `NAME.localhost` pages need the key; the app's own web view does not.
    let origin = |o: &'static str| {
        let rb = c.get(s.url("/v1/models")).header("origin", o);
        async move { rb.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(origin("http://evil.localhost:8000").await, 403);
    assert_eq!(origin("http://tauri.localhost").await, 200);
    assert_eq!(origin("tauri://localhost").await, 200);
    assert_eq!(origin("http://localhost:5173").await, 200);
    s.stop().await;

    let s = start(|c| {
        c.models.truncate(1);
        c.api_key = Some("0123456789abcdef-key".to_owned());
    })
    .await;
    let r = c
        .get(s.url("/v1/models"))
        .header("origin", "http://evil.localhost:8000")
        .bearer_auth("0123456789abcdef-key".to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "with the key, the key is the gate");
    s.stop().await;
}

/// Whether the server closes the socket within `limit`.
async fn closed_within(sock: &mut TcpStream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_socket_is_closed() {
    let s = start(|c| c.models.truncate(1)).await;
    let sock = TcpStream::connect(s.server.addr()).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    // One header line a second, never the blank line that ends the head.
    let writer = tokio::spawn(async move {
        let _ = wr
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await;
        for i in 0..60 {
            if wr
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let t0 = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    writer.abort();
    assert!(
        closed.is_ok(),
        "a trickling request head still held its socket after {:?}",
        t0.elapsed()
    );

    // A body that trickles gets 408 at the body deadline.
    s.stop().await;
    let s = start(|c| {
        c.models.truncate(1);
        c.body_timeout = Duration::from_secs(2);
    })
    .await;
    let mut sock = TcpStream::connect(s.server.addr()).await.unwrap();
    sock.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mo",
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer))
        .await
        .expect("the server neither answered nor closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_do_not_lock_out_a_client() {
    let s = start(|c| {
        c.models.truncate(1);
        c.max_connections = 64;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(s.server.addr()).await.unwrap());
    }
    let t0 = Instant::now();
    let r = client().get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "served after {:?}",
        t0.elapsed()
    );
    // The oldest idle sockets were closed to make room; the cap holds.
    let mut closed = 0;
    for sock in &mut idle {
        if closed_within(sock, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 500 - 64,
        "only {closed} of 500 idle sockets closed"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_server_off_stops_a_running_stream() {
    for drop_it in [false, true] {
        let s = start(|c| c.models.truncate(1)).await;
        let url = s.url("/v1/chat/completions");
        let long = ask(
            SMOL,
            "Count from 1 to 1000, separated by commas.",
            json!({"stream": true, "max_tokens": 1800}),
        );
        let mut res = client().post(&url).json(&long).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.chunk().await.unwrap().expect("the answer starts");
        let reader = tokio::spawn(async move {
            loop {
                match res.chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Instant::now(),
                }
            }
        });
        let t0 = Instant::now();
        let Server { server, app, _dir } = s;
        if drop_it {
            drop(server);
        } else {
            server.shutdown().await.unwrap();
        }
        let ended = tokio::time::timeout(Duration::from_secs(15), reader)
            .await
            .expect("the stream went on after the server was switched off")
            .unwrap();
        assert!(
            ended.duration_since(t0) < Duration::from_secs(6),
            "drop={drop_it}"
        );

        // The generation was cancelled: the model answers a new request at once (1800
        // tokens of counting would keep it busy far longer).
        let model = app
            .load(
                &model(SMOLLM2),
                conclave_core::engine::LoadOptions {
                    n_ctx: 2048,
                    threads: Some(1),
                    ..Default::default()
                },
                |_| {},
            )
            .await
            .unwrap();
        let t1 = Instant::now();
        let stream = model
            .chat(conclave_core::engine::ChatRequest {
                messages: vec![conclave_core::Message::new(
                    conclave_core::Role::User,
                    "Say hello.",
                )],
                params: conclave_core::SamplingParams {
                    max_tokens: 4,
                    ..Default::default()
                },
                template: None,
                think: Default::default(),
                think_budget: None,
                keep_thoughts: false,
                threads: Some(1),
                grammar: None,
                ..Default::default()
            })
            .await
            .unwrap();
        let answer = conclave_tests::collect(stream).await;
        assert!(answer.error.is_none(), "{answer:?}");
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "drop={drop_it}: the model was busy for {:?}",
            t1.elapsed()
        );
        for m in app.loaded().await {
            app.unload(&m.path).await;
        }
    }
}

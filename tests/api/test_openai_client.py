"""The official `openai` Python client against `conclave serve`.

Usage: test_openai_client.py BASE_URL API_KEY   (BASE_URL ends in /v1)
Plain asserts; exits non-zero on the first failure. Run by tests/tests/api_openai_client.rs.
"""

import json
import sys
import time

import openai

BASE, KEY = sys.argv[1], sys.argv[2]
MODEL = "SmolLM2-135M-Instruct.Q4_1"
# SmolLM2-135M answers in English at temperature 0 only with a system line.
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}

# No retries: a 429 or 5xx must show up as a failure here, not be papered over.
client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=180)


def ask(question):
    return [SYSTEM, {"role": "user", "content": question}]


def check(name, fn):
    t0 = time.monotonic()
    fn()
    print(f"ok   {name} ({time.monotonic() - t0:.1f}s)", flush=True)


def models():
    listed = client.models.list().data
    assert listed and all(m.object == "model" for m in listed), listed
    # Ids are the library's (content hashes); `file_name` is an extension field.
    ours = [m for m in listed if getattr(m, "file_name", None) == f"{MODEL}.gguf"]
    assert ours, [m.model_dump() for m in listed]
    assert client.models.retrieve(ours[0].id).id == ours[0].id
    r = client.chat.completions.create(model=ours[0].id, messages=ask("Hi"), max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length"), r


def whole():
    r = client.chat.completions.create(
        model=MODEL, messages=ask("What is the capital of France?"), temperature=0, max_tokens=32
    )
    assert r.object == "chat.completion", r
    assert r.id.startswith("chatcmpl-"), r.id
    assert r.created > 0 and r.model == MODEL and r.system_fingerprint.startswith("fp_"), r
    c = r.choices[0]
    assert c.message.role == "assistant", c
    assert "Paris" in c.message.content, c.message.content
    assert c.finish_reason == "stop", c.finish_reason
    u = r.usage
    assert u is not None and u.prompt_tokens > 10 and u.completion_tokens > 0, u
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens, u
    assert u.completion_tokens_details.reasoning_tokens == 0, u
    assert u.prompt_tokens_details.cached_tokens >= 0, u


def streaming():
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=ask("What is the capital of France?"),
            temperature=0,
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
    with_choices = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert "Paris" in text, text
    finishes = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
    assert finishes == ["stop"], finishes
    assert with_choices[-1].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None, last
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def seeded():
    def run():
        r = client.chat.completions.create(
            model=MODEL,
            messages=ask("Tell me a short story about a cat."),
            temperature=0.9,
            seed=1234,
            max_tokens=40,
        )
        return r.choices[0].message.content

    a, b = run(), run()
    assert a and a == b, (a, b)


def json_object():
    r = client.chat.completions.create(
        model=MODEL,
        messages=ask("Give a JSON object with the name and age of Alice, 30."),
        temperature=0,
        max_tokens=100,
        response_format={"type": "json_object"},
    )
    v = json.loads(r.choices[0].message.content)
    assert isinstance(v, dict), v


def json_schema():
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}, "country": {"type": "string", "maxLength": 30}},
        "required": ["city", "country"],
    }
    r = client.chat.completions.create(
        model=MODEL,
        messages=ask("What is the capital of France? Answer as JSON."),
        temperature=0,
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}},
    )
    v = json.loads(r.choices[0].message.content)
    assert isinstance(v["city"], str) and isinstance(v["country"], str), v


def bad_request():
    try:
        client.chat.completions.create(model=MODEL, messages=ask("hi"), temperature=7)
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body["param"] == "temperature", e.body
    else:
        raise AssertionError("temperature=7 was accepted")
    try:
        client.chat.completions.create(model=MODEL, messages=[])
    except openai.BadRequestError as e:
        assert e.body["type"] == "invalid_request_error", e.body
    else:
        raise AssertionError("empty messages were accepted")


def not_found():
    try:
        client.chat.completions.create(model="no-such-model", messages=ask("hi"))
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.code == "model_not_found", e.body
    else:
        raise AssertionError("an unknown model was accepted")


def wrong_key():
    bad = openai.OpenAI(base_url=BASE, api_key=KEY + "-wrong", max_retries=0, timeout=30)
    try:
        bad.models.list()
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e
    else:
        raise AssertionError("a wrong key was accepted")
    try:
        bad.chat.completions.create(model=MODEL, messages=ask("hi"))
    except openai.AuthenticationError:
        pass
    else:
        raise AssertionError("a wrong key was accepted for chat")


def closed_stream_frees_the_model():
    # Counting to 1000 runs to the token limit: tens of seconds on SmolLM2 if not cancelled.
    stream = client.chat.completions.create(
        model=MODEL,
        messages=ask("Count from 1 to 1000, separated by commas."),
        temperature=0,
        max_tokens=1800,
        stream=True,
    )
    n = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            n += 1
        if n >= 20:
            break
    stream.close()
    assert n >= 20, n
    t0 = time.monotonic()
    r = client.chat.completions.create(model=MODEL, messages=ask("Say hello."), temperature=0, max_tokens=6)
    waited = time.monotonic() - t0
    assert r.choices[0].message.content, r
    assert waited < 10, f"the next request waited {waited:.1f}s: the closed stream kept generating"


def reasoning_effort_streams_thoughts_apart():
    # SmolLM2's template has no thinking markers: an effort opens the engine's generic
    # <think> block and forces the answer at the effort's budget (low: 512 tokens).
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=ask("Why is the sky blue?"),
            temperature=0,
            max_tokens=600,
            reasoning_effort="low",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert reasoning.strip(), "no delta.reasoning_content"
    # SmolLM2 may end inside the block before the budget forces an answer; the engine
    # test thinking_budget_forces_an_answer covers the forced close.
    assert "<think>" not in content and "</think>" not in content + reasoning, (reasoning, content)
    # Deltas carry one kind each: thoughts never arrive in `content`.
    assert not any(getattr(d, "reasoning_content", None) and d.content for d in deltas)
    u = chunks[-1].usage
    r = u.completion_tokens_details.reasoning_tokens
    assert 0 < r <= 512 and r <= u.completion_tokens, u
    assert (r < u.completion_tokens) == bool(content), (u, content)


def template_kwargs_turn_thinking_off():
    base = dict(model=MODEL, messages=ask("What is the capital of France?"), temperature=0, max_tokens=32)
    on = client.chat.completions.create(
        **base, extra_body={"chat_template_kwargs": {"enable_thinking": True}}
    )
    assert getattr(on.choices[0].message, "reasoning_content", None), on
    assert on.usage.completion_tokens_details.reasoning_tokens > 0, on.usage
    off = client.chat.completions.create(
        **base, extra_body={"chat_template_kwargs": {"enable_thinking": False, "unused_var": [1, 2]}}
    )
    assert not getattr(off.choices[0].message, "reasoning_content", None), off
    assert "Paris" in off.choices[0].message.content, off
    assert off.usage.completion_tokens_details.reasoning_tokens == 0, off.usage
    try:
        client.chat.completions.create(**base, extra_body={"chat_template_kwargs": {"enable_thinking": "yes"}})
    except openai.BadRequestError as e:
        assert e.body["param"] == "chat_template_kwargs.enable_thinking", e.body
    else:
        raise AssertionError("a string enable_thinking was accepted")


for name, fn in [
    ("models.list", models),
    ("non-streaming completion", whole),
    ("streaming completion with usage", streaming),
    ("seed reproduces", seeded),
    ("json_object parses", json_object),
    ("json_schema parses", json_schema),
    ("bad request -> BadRequestError", bad_request),
    ("unknown model -> NotFoundError", not_found),
    ("wrong key -> AuthenticationError", wrong_key),
    ("closed stream frees the model", closed_stream_frees_the_model),
    ("reasoning_effort streams thoughts apart", reasoning_effort_streams_thoughts_apart),
    ("chat_template_kwargs turn thinking off", template_kwargs_turn_thinking_off),
]:
    check(name, fn)
print("openai client: all checks passed", flush=True)

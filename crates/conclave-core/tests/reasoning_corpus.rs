//! Realistic outputs of every reasoning format, each split whole, cut in two at every
//! char boundary, and fed one char per push; all three must give the expected result.
//!
//! Sources: "test-chat.cpp" is llama.cpp's tests/test-chat.cpp and "chat-parser.cpp"
//! its common/chat-parser.cpp (ggml-org/llama.cpp); model cards are named per case.
#![allow(clippy::unwrap_used)]

use conclave_core::reasoning::{split_batch, ReasoningFormat, Segment, Splitter};

struct Case {
    name: &'static str,
    format: &'static str,
    prefilled: bool,
    output: &'static str,
    reasoning: &'static str,
    answer: &'static str,
    cut_off: bool,
    detected: &'static str,
}

const fn case(
    name: &'static str,
    format: &'static str,
    prefilled: bool,
    output: &'static str,
    expect: (&'static str, &'static str, bool, &'static str),
) -> Case {
    Case {
        name,
        format,
        prefilled,
        output,
        reasoning: expect.0,
        answer: expect.1,
        cut_off: expect.2,
        detected: expect.3,
    }
}

const HELLO: &str = "Hello, world!\nWhat's up?";

const CORPUS: &[Case] = &[
    // --- <think> family ---------------------------------------------------------------
    // test-chat.cpp message_assist_thoughts_unparsed_deepseek, DeepSeek-R1 format.
    case(
        "deepseek-r1 open and close",
        "deepseek-r1",
        false,
        "<think>I'm\nthinking</think>Hello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "deepseek-r1"),
    ),
    // test-chat.cpp message_assist_thoughts_unopened_unparsed with thinking_forced_open:
    // the R1 template ends the prompt with "<think>\n".
    case(
        "deepseek-r1 prefilled",
        "deepseek-r1",
        true,
        "I'm\nthinking</think>Hello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "deepseek-r1"),
    ),
    // DeepSeek-R1-Distill model card: "enforce the model to initiate its response with
    // <think>\n"; a max_tokens stop inside the thoughts.
    case(
        "deepseek-r1 cut off",
        "deepseek-r1",
        true,
        "Okay, so I need to find 17 × 23. Let me break it down: 17 × 20 = 340, and",
        (
            "Okay, so I need to find 17 × 23. Let me break it down: 17 × 20 = 340, and",
            "",
            true,
            "deepseek-r1",
        ),
    ),
    // QwQ-32B card: the template prefills "<think>\n"; answer after "</think>\n\n".
    case(
        "qwq prefilled",
        "qwq",
        true,
        "Okay, the user asks for 2+2.\nThat's 4.\n</think>\n\nThe answer is **4**.",
        ("Okay, the user asks for 2+2.\nThat's 4.", "The answer is **4**.", false, "qwq"),
    ),
    // Qwen3 card, "/no_think": the model still writes an empty block
    // "<think>\n\n</think>\n\n" before answering.
    case(
        "qwen3 thinking off",
        "qwen3",
        false,
        "<think>\n\n</think>\n\nHello! How can I help you today?",
        ("", "Hello! How can I help you today?", false, "qwen3"),
    ),
    // Qwen3 card: thinking on, <think> written by the model.
    case(
        "qwen3 thinking on",
        "qwen3",
        false,
        "<think>\nThe user greets me. I should greet back.\n</think>\n\nHi there! 👋",
        ("The user greets me. I should greet back.", "Hi there! 👋", false, "qwen3"),
    ),
    // Phi-4-reasoning card: "<think> {Thought section} </think> {Solution section}".
    case(
        "phi-4-reasoning",
        "phi-4-reasoning",
        false,
        "<think>\nLet me compute the derivative of x^2: 2x.\n</think>\n\nThe derivative is $2x$.",
        ("Let me compute the derivative of x^2: 2x.", "The derivative is $2x$.", false, "phi-4-reasoning"),
    ),
    // test-chat.cpp GLM-4.5 case: "<think>I'm\nthinking</think>Hello, world!\nWhat's up?".
    case(
        "glm-4.5",
        "glm",
        false,
        "\n<think>I'm\nthinking</think>Hello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "glm"),
    ),
    // GLM-4.5 documents interleaved thinking between tool calls (chat-parser.cpp
    // common_chat_parse_glm_4_5 reads <think> around its <tool_call> XML).
    case(
        "glm interleaved after a tool call",
        "glm",
        false,
        "<think>Need the weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>\n<think>Got it, 18°C.</think>\nIt is 18°C in Paris.",
        (
            "Need the weather.\nGot it, 18°C.",
            "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>\n\nIt is 18°C in Paris.",
            false,
            "glm",
        ),
    ),
    // test-chat.cpp Nemotron Nano v2: "<think>I'm\nthinking</think>Hello, world!…".
    case(
        "nemotron v2",
        "nemotron",
        false,
        "<think>I'm\nthinking\n</think>\nHello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "nemotron"),
    ),
    // chat-parser.cpp common_chat_parse_minimax_m2: <think> then <minimax:tool_call>.
    case(
        "minimax-m2",
        "minimax-m2",
        false,
        "<think>I'm\nthinking</think>\n\nHello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "minimax-m2"),
    ),
    // MiniMax-M2 card: interleaved thinking, a second block on its own line.
    case(
        "minimax-m2 interleaved",
        "minimax-m2",
        false,
        "<think>plan</think>\nStep one done.\n<think>check step one</think>\nAll good.",
        ("plan\ncheck step one", "Step one done.\n\nAll good.", false, "minimax-m2"),
    ),
    // --- GPT-OSS harmony -------------------------------------------------------------
    // test-chat.cpp gpt-oss: analysis then final.
    case(
        "gpt-oss analysis then final",
        "gpt-oss",
        false,
        "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "gpt-oss"),
    ),
    // test-chat.cpp gpt-oss partial: "<|channel|>analysis<|message|>I'm\nthink".
    case(
        "gpt-oss cut off",
        "gpt-oss",
        false,
        "<|channel|>analysis<|message|>I'm\nthink",
        ("I'm\nthink", "", true, "gpt-oss"),
    ),
    // OpenAI harmony guide: several analysis messages, a commentary preamble (shown to the
    // user), a final message ended by <|return|>.
    case(
        "gpt-oss several analysis and a preamble",
        "gpt-oss",
        false,
        "<|channel|>analysis<|message|>First thought.<|end|><|start|>assistant<|channel|>analysis<|message|>Second thought.<|end|><|start|>assistant<|channel|>commentary<|message|>Let me work this out.<|end|><|start|>assistant<|channel|>final<|message|>It is 42.<|return|>",
        ("First thought.\nSecond thought.", "Let me work this out.\nIt is 42.", false, "gpt-oss"),
    ),
    // test-chat.cpp gpt-oss tool call: a recipient makes the body tool arguments, dropped.
    case(
        "gpt-oss tool call dropped",
        "gpt-oss",
        false,
        "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>commentary to=functions.special_function <|constrain|>json<|message|>{\"arg1\": 1}<|call|>",
        ("I'm\nthinking", "", false, "gpt-oss"),
    ),
    // vLLM harmony test_truncated_output: a cut-off final message.
    case(
        "gpt-oss truncated final",
        "gpt-oss",
        false,
        "<|channel|>analysis<|message|>I'm thinking.<|end|><|start|>assistant<|channel|>final<|message|>I'm in the middle of answering",
        ("I'm thinking.", "I'm in the middle of answering", false, "gpt-oss"),
    ),
    // --- other markers -----------------------------------------------------------------
    // test-chat.cpp message_assist_thoughts_unparsed_magistral.
    case(
        "magistral",
        "magistral",
        false,
        "[THINK]raisonnement[/THINK]Réponse",
        ("raisonnement", "Réponse", false, "magistral"),
    ),
    // test-chat.cpp Seed-OSS: "<seed:think>I'm thinking about the answer</seed:think>\n…";
    // budget notes (Seed-OSS card) stay in the thoughts.
    case(
        "seed-oss with budget reflection",
        "seed-oss",
        false,
        "<seed:think>I'm thinking about the answer\n<seed:cot_budget_reflect>I have used 129 tokens, and there are 383 tokens remaining for use.</seed:cot_budget_reflect>\nDone.</seed:think>\nHello, world!",
        (
            "I'm thinking about the answer\n<seed:cot_budget_reflect>I have used 129 tokens, and there are 383 tokens remaining for use.</seed:cot_budget_reflect>\nDone.",
            "Hello, world!",
            false,
            "seed-oss",
        ),
    ),
    // EXAONE Deep card: the template prefills "<thought>\n".
    case(
        "exaone deep prefilled",
        "exaone",
        true,
        "Let me check: 3 squared is 9.\n</thought>\n\n**Answer:** 9",
        ("Let me check: 3 squared is 9.", "**Answer:** 9", false, "exaone"),
    ),
    // Kimi-VL-A3B-Thinking card: ◁think▷…◁/think▷ then the answer.
    case(
        "kimi triangle markers",
        "kimi",
        false,
        "◁think▷step 1, then step 2◁/think▷The final answer is 42.",
        ("step 1, then step 2", "The final answer is 42.", false, "kimi"),
    ),
    // test-chat.cpp Command R7B: thinking then a wrapped response.
    case(
        "command-r7b",
        "command-r7b",
        false,
        "<|START_THINKING|>I'm\nthinking<|END_THINKING|><|START_RESPONSE|>Hello, world!\nWhat's up?<|END_RESPONSE|>",
        ("I'm\nthinking", HELLO, false, "command-r7b"),
    ),
    // test-chat.cpp Command R7B without thinking.
    case(
        "command-r7b response only",
        "command-r7b",
        false,
        "<|START_RESPONSE|>Hello, world!\nWhat's up?<|END_RESPONSE|>",
        ("", HELLO, false, "command-r7b"),
    ),
    // test-chat.cpp Granite 3.3: "<think>I'm\nthinking</think><response>…</response>".
    case(
        "granite 3.3",
        "granite",
        false,
        "<think>I'm\nthinking</think><response>Hello, world!\nWhat's up?</response>",
        ("I'm\nthinking", HELLO, false, "granite"),
    ),
    // Granite 3.2 card / vLLM GraniteReasoningParser: plain-text headings.
    case(
        "granite 3.2 plain text",
        "granite",
        false,
        "Here is my thought process:\nThe user wants a haiku about rain.\n\nHere is my response:\nSoft rain on the roof",
        ("The user wants a haiku about rain.", "Soft rain on the roof", false, "granite"),
    ),
    // Apriel 1.5/1.6 Thinker: template ends the prompt with "Here are my reasoning
    // steps:\n" (llama.cpp test of Apriel-1.6-15b-Thinker-fixed.jinja generation prompt).
    case(
        "apriel prefilled",
        "apriel",
        true,
        "1. The capital of France is Paris.\n[BEGIN FINAL RESPONSE]\nParis.\n[END FINAL RESPONSE]",
        ("1. The capital of France is Paris.", "Paris.", false, "apriel"),
    ),
    case(
        "apriel writes its own heading",
        "apriel",
        false,
        "Here are my reasoning steps:\nThe user wants recent news.\n[BEGIN FINAL RESPONSE]\nHere is the news.\n[END FINAL RESPONSE]",
        ("The user wants recent news.", "Here is the news.", false, "apriel"),
    ),
    // Gemma 4 chat template: thoughts in "<|channel>thought\n…<channel|>".
    case(
        "gemma thought channel",
        "gemma",
        false,
        "<|channel>thought\nThe user says hi.<channel|>Hi! How can I help?",
        ("The user says hi.", "Hi! How can I help?", false, "gemma"),
    ),
    // --- auto ------------------------------------------------------------------------
    case(
        "auto think",
        "auto",
        false,
        "  \n<think>I'm\nthinking</think>Hello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "deepseek-r1"),
    ),
    case(
        "auto harmony",
        "auto",
        false,
        "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "gpt-oss"),
    ),
    case(
        "auto magistral",
        "auto",
        false,
        "[THINK]raisonnement[/THINK]Réponse",
        ("raisonnement", "Réponse", false, "magistral"),
    ),
    case(
        "auto prefilled closes seed",
        "auto",
        true,
        "budget fine</seed:think>Answer",
        ("budget fine", "Answer", false, "seed-oss"),
    ),
    case("auto plain answer", "auto", false, "Just an answer.", ("", "Just an answer.", false, "none")),
    case(
        "auto lookalike thinking tag is text",
        "auto",
        false,
        "<thinking>not a marker</thinking>",
        ("", "<thinking>not a marker</thinking>", false, "none"),
    ),
    // --- edge cases --------------------------------------------------------------------
    case(
        "literal think in a code block stays answer",
        "qwen3",
        false,
        "<think>Explain the tag.</think>\nUse it like this:\n```html\n<think>\nreasoning\n</think>\n```",
        (
            "Explain the tag.",
            "Use it like this:\n```html\n<think>\nreasoning\n</think>\n```",
            false,
            "qwen3",
        ),
    ),
    case(
        "interleaved format keeps a fenced think",
        "minimax-m2",
        false,
        "<think>a</think>\nExample:\n```\n<think>\n```\n",
        ("a", "Example:\n```\n<think>\n```", false, "minimax-m2"),
    ),
    case(
        "lookalike close inside thinking",
        "deepseek-r1",
        false,
        "<think>is </ think> a tag? no. <thinking> neither.</think>Right.",
        ("is </ think> a tag? no. <thinking> neither.", "Right.", false, "deepseek-r1"),
    ),
    case(
        "cjk and emoji next to markers",
        "qwen3",
        false,
        "<think>思考中🤔</think>答案是42😀",
        ("思考中🤔", "答案是42😀", false, "qwen3"),
    ),
    case(
        "several blocks",
        "deepseek-r1",
        false,
        "<think>one</think>\n\n<think>two</think>\n Answer <think>three</think>",
        ("one\ntwo", "Answer <think>three</think>", false, "deepseek-r1"),
    ),
    case(
        "cut off in a second block",
        "qwq",
        true,
        "first</think>\n<think>second",
        ("first\nsecond", "", true, "qwq"),
    ),
    case(
        "partial close at the end is dropped",
        "qwen3",
        false,
        "<think>almost</thi",
        ("almost", "", true, "qwen3"),
    ),
    // --- 1. the model re-opens the block the prompt opened ------------------------------
    // test-chat.cpp DeepSeek-R1 with thinking_forced_open: "<think>I'm\nthinking</think>…"
    // parses to the same message as without the tag.
    case(
        "deepseek-r1 prefilled, model writes <think> again",
        "deepseek-r1",
        true,
        "<think>I'm\nthinking</think>Hello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "deepseek-r1"),
    ),
    // QwQ's template prefills "<think>\n"; whitespace before the repeated tag is fine.
    case(
        "qwq prefilled, repeated tag after a newline",
        "qwq",
        true,
        "\n<think>\nThe user asks for 2+2.\n</think>\n\n4",
        ("The user asks for 2+2.", "4", false, "qwq"),
    ),
    // Qwen3-Thinking / Qwen3.5 templates prefill "<think>\n" when thinking is on.
    case(
        "qwen3 prefilled, repeated tag",
        "qwen3",
        true,
        "<think>\nplan the greeting\n</think>\n\nHi!",
        ("plan the greeting", "Hi!", false, "qwen3"),
    ),
    // MiniMax-M2's template ends the prompt with "]~b]ai\n<think>\n".
    case(
        "minimax-m2 prefilled, repeated tag",
        "minimax-m2",
        true,
        "<think>\nI'm\nthinking\n</think>\n\nHello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "minimax-m2"),
    ),
    // Nemotron Nano v2's template ends with "<SPECIAL_11>Assistant\n<think>\n\n".
    case(
        "nemotron prefilled, repeated tag",
        "nemotron",
        true,
        "<think>I'm\nthinking\n</think>\nHello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "nemotron"),
    ),
    // EXAONE Deep prefills "<thought>\n".
    case(
        "exaone prefilled, repeated tag",
        "exaone",
        true,
        "<thought>\n3 squared is 9.\n</thought>\n\n**Answer:** 9",
        ("3 squared is 9.", "**Answer:** 9", false, "exaone"),
    ),
    // Apriel 1.6's template ends with "Here are my reasoning steps:\n"; the model may say
    // it again.
    case(
        "apriel prefilled, heading repeated",
        "apriel",
        true,
        "Here are my reasoning steps:\n1. Paris.\n[BEGIN FINAL RESPONSE]\nParis.\n[END FINAL RESPONSE]",
        ("1. Paris.", "Paris.", false, "apriel"),
    ),
    case(
        "auto prefilled, repeated tag tells the family",
        "auto",
        true,
        "<seed:think>budget fine</seed:think>Answer",
        ("budget fine", "Answer", false, "seed-oss"),
    ),
    case(
        "gpt-oss prefilled analysis, header repeated",
        "gpt-oss",
        true,
        "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "gpt-oss"),
    ),
    // Only at the very start of the block: after real thought it is text.
    case(
        "prefilled block keeps a later open tag as thought",
        "deepseek-r1",
        true,
        "The tag <think> opens a block.</think>Right.",
        ("The tag <think> opens a block.", "Right.", false, "deepseek-r1"),
    ),
    // --- 2. a tool call starts inside the thinking -----------------------------------------
    // Qwen3.5 (Qwen3-Coder XML calls); vLLM test_qwen3_tool_call_recovery.py.
    case(
        "qwen3.5 tool call ends the thinking",
        "qwen3",
        false,
        "<think>\nI need the weather in Paris.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
        (
            "I need the weather in Paris.",
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
            false,
            "qwen3",
        ),
    ),
    case(
        "qwen3.5 prefilled, tool call ends the thinking",
        "qwen3",
        true,
        "verify result\n<tool_call>\n<function=Finish>\n<parameter=answer>\n204\n</parameter>\n</function>\n</tool_call>",
        (
            "verify result",
            "<tool_call>\n<function=Finish>\n<parameter=answer>\n204\n</parameter>\n</function>\n</tool_call>",
            false,
            "qwen3",
        ),
    ),
    // The same test's late "</think>": structure, not answer text.
    case(
        "qwen3.5 tool call, late close dropped",
        "qwen3",
        false,
        "<think>verify result\n<tool_call>\n<function=Finish>\n<parameter=answer>\n204\n</parameter>\n</function>\n</tool_call></think>Here is the answer.",
        (
            "verify result",
            "<tool_call>\n<function=Finish>\n<parameter=answer>\n204\n</parameter>\n</function>\n</tool_call>Here is the answer.",
            false,
            "qwen3",
        ),
    ),
    case(
        "qwen3 thought that mentions <tool_call> stays thought",
        "qwen3",
        false,
        "<think>I could answer with <tool_call> but no tool fits.</think>\n\nNo tool needed.",
        ("I could answer with <tool_call> but no tool fits.", "No tool needed.", false, "qwen3"),
    ),
    // vLLM test_kimi_k2_reasoning_parser.py: the section marker ends the reasoning.
    case(
        "kimi-k2 tool section ends the thinking",
        "kimi",
        false,
        "<think>some reasoning<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>",
        (
            "some reasoning",
            "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>",
            false,
            "kimi",
        ),
    ),
    case(
        "kimi-k2 bare tool call ends the thinking",
        "kimi",
        false,
        "<think>Look it up.\n<|tool_call_begin|>functions.search:0<|tool_call_argument_begin|>{}<|tool_call_end|>",
        (
            "Look it up.",
            "<|tool_call_begin|>functions.search:0<|tool_call_argument_begin|>{}<|tool_call_end|>",
            false,
            "kimi",
        ),
    ),
    case(
        "auto prefilled, kimi tool call tells the family",
        "auto",
        true,
        "thinking<|tool_calls_section_begin|>call",
        ("thinking", "<|tool_calls_section_begin|>call", false, "kimi"),
    ),
    // --- 3. gpt-oss with several segments --------------------------------------------------
    // OpenAI harmony guide: analysis, a preamble, analysis after the tool result, final.
    case(
        "gpt-oss analysis and preambles interleaved",
        "gpt-oss",
        false,
        "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary<|message|>Let me check the weather.<|end|><|start|>assistant<|channel|>analysis<|message|>Got it: 18°C.<|end|><|start|>assistant<|channel|>commentary<|message|>One more check.<|end|><|start|>assistant<|channel|>analysis<|message|>Confirmed.<|end|><|start|>assistant<|channel|>final<|message|>It is 18°C in Paris.<|return|>",
        (
            "Need the weather.\nGot it: 18°C.\nConfirmed.",
            "Let me check the weather.\nOne more check.\nIt is 18°C in Paris.",
            false,
            "gpt-oss",
        ),
    ),
    // test-chat.cpp gpt-oss: a stray "<|channel|>commentary to=assistant" first.
    case(
        "gpt-oss stray commentary header ignored",
        "gpt-oss",
        false,
        "<|channel|>commentary to=assistant<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?",
        ("I'm\nthinking", HELLO, false, "gpt-oss"),
    ),
    // vLLM #58825's input: the stray header inside a started message.
    case(
        "gpt-oss stray header after start ignored",
        "gpt-oss",
        false,
        "<|start|>assistant<|channel|>commentary to=assistant<|channel|>final<|message|>secret",
        ("", "secret", false, "gpt-oss"),
    ),
    case(
        "auto harmony with several segments",
        "auto",
        false,
        "<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>commentary<|message|>b<|end|><|start|>assistant<|channel|>analysis<|message|>c<|end|><|start|>assistant<|channel|>final<|message|>d<|return|>",
        ("a\nc", "b\nd", false, "gpt-oss"),
    ),
    // --- 4. the output ends part way through an end marker -----------------------------
    case(
        "apriel cut in the final-response marker",
        "apriel",
        true,
        "1. The capital of France is Paris.\n[BEGIN FIN",
        ("1. The capital of France is Paris.", "", true, "apriel"),
    ),
    case(
        "deepseek-r1 cut in the close tag",
        "deepseek-r1",
        true,
        "17 × 23 = 391.</",
        ("17 × 23 = 391.", "", true, "deepseek-r1"),
    ),
    case(
        "seed-oss cut in the close tag",
        "seed-oss",
        false,
        "<seed:think>Almost done.</seed:th",
        ("Almost done.", "", true, "seed-oss"),
    ),
    case(
        "granite 3.2 cut in the response heading",
        "granite",
        false,
        "Here is my thought process:\nA haiku about rain.\nHere is my resp",
        ("A haiku about rain.", "", true, "granite"),
    ),
    case(
        "magistral cut in the close tag",
        "magistral",
        false,
        "[THINK]raisonnement[/THI",
        ("raisonnement", "", true, "magistral"),
    ),
    case(
        "command-r7b cut in the close tag",
        "command-r7b",
        false,
        "<|START_THINKING|>I'm\nthinking<|END_THINK",
        ("I'm\nthinking", "", true, "command-r7b"),
    ),
    case(
        "gemma cut in the close marker",
        "gemma",
        false,
        "<|channel>thought\nThe user says hi.<chann",
        ("The user says hi.", "", true, "gemma"),
    ),
    case(
        "gpt-oss cut in the end marker",
        "gpt-oss",
        false,
        "<|channel|>analysis<|message|>I'm\nthinking<|en",
        ("I'm\nthinking", "", true, "gpt-oss"),
    ),
    // On the answer side a partial marker is ordinary text.
    case(
        "partial marker in the answer is text",
        "command-r7b",
        false,
        "<|START_THINKING|>a<|END_THINKING|><|START_RESPONSE|>b <|END_RESP",
        ("a", "b <|END_RESP", false, "command-r7b"),
    ),
    case("none keeps markers", "none", false, "<think>x</think>y", ("", "<think>x</think>y", false, "none")),
    case("empty output", "qwen3", false, "", ("", "", false, "qwen3")),
];

fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect()
}

fn check(case: &Case, chunks: &[&str], how: &str) {
    let format: ReasoningFormat = case.format.parse().unwrap();
    let got = split_batch(format, case.prefilled, chunks);
    assert_eq!(
        got.reasoning, case.reasoning,
        "{} ({how}): reasoning",
        case.name
    );
    assert_eq!(got.answer, case.answer, "{} ({how}): answer", case.name);
    assert_eq!(got.cut_off, case.cut_off, "{} ({how}): cut_off", case.name);
    assert_eq!(got.format, case.detected, "{} ({how}): format", case.name);
}

/// Untrimmed streamed text per kind, so chunkings can be compared char for char.
fn raw(case: &Case, chunks: &[&str]) -> (String, String) {
    let mut s = Splitter::new(case.format.parse().unwrap(), case.prefilled);
    let (mut r, mut a) = (String::new(), String::new());
    let mut take = |segs: Vec<Segment>| {
        for seg in segs {
            match seg {
                Segment::Reasoning(t) => r.push_str(&t),
                Segment::Answer(t) => a.push_str(&t),
            }
        }
    };
    for c in chunks {
        take(s.push(c));
    }
    take(s.finish().segments);
    (r, a)
}

#[test]
fn corpus_whole() {
    for case in CORPUS {
        check(case, &[case.output], "whole");
    }
}

#[test]
fn corpus_cut_at_every_char_boundary() {
    for case in CORPUS {
        let whole = raw(case, &[case.output]);
        for cut in boundaries(case.output) {
            let (a, b) = case.output.split_at(cut);
            check(case, &[a, b], &format!("cut at {cut}"));
            assert_eq!(raw(case, &[a, b]), whole, "{} raw, cut at {cut}", case.name);
        }
    }
}

#[test]
fn corpus_one_char_per_push() {
    for case in CORPUS {
        let b = boundaries(case.output);
        let chars: Vec<&str> = b.windows(2).map(|w| &case.output[w[0]..w[1]]).collect();
        check(case, &chars, "char by char");
        assert_eq!(
            raw(case, &chars),
            raw(case, &[case.output]),
            "{} raw, char by char",
            case.name
        );
    }
}

#[test]
fn corpus_covers_every_format() {
    for f in ReasoningFormat::ALL {
        assert!(
            CORPUS.iter().any(|c| c.format == f.name()),
            "no corpus case for {}",
            f.name()
        );
    }
}

#[test]
fn thinking_arrives_live() {
    // One char at a time, the thought must come out long before the block closes: only
    // a possible marker start is held back.
    let mut s = Splitter::new(ReasoningFormat::Qwen3, false);
    let mut seen = String::new();
    for c in "<think>abcdefgh".chars() {
        for seg in s.push(&c.to_string()) {
            if let Segment::Reasoning(t) = seg {
                seen.push_str(&t);
            }
        }
    }
    assert_eq!(seen, "abcdefgh");
}

//! `conclave chat`: one prompt, one streamed answer.

use std::io::{IsTerminal, Write};

use conclave_core::engine::LoadOptions;
use conclave_core::session::{ChatSettings, Conclave, SendRequest};
use conclave_core::{ChatEvent, ContextOverflow, SamplingParams, SpeculativeMode, ThinkMode};

#[derive(clap::Args)]
pub struct ChatArgs {
    /// A GGUF path, or a model's file name in the model folders.
    #[arg(long)]
    pub model: String,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Start from a saved preset (`conclave presets list`); other options override it.
    #[arg(long)]
    pub preset: Option<String>,
    /// Most tokens to generate (default 512, or the preset's).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Temperature; 0 is greedy.
    #[arg(long)]
    pub temp: Option<f32>,
    #[arg(long)]
    pub top_k: Option<i32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub min_p: Option<f32>,
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    /// Seed for sampling; random (and reported) when absent.
    #[arg(long)]
    pub seed: Option<u32>,
    #[arg(long)]
    pub threads: Option<u32>,
    /// Context length in tokens (default: min(4096, the model's)).
    #[arg(long)]
    pub ctx: Option<u32>,
    /// Chat template: model, chatml, gemma, llama3, mistral, phi3, deepseek-r1, raw.
    #[arg(long)]
    pub template: Option<String>,
    /// Thinking: on, off or auto (default auto, or the preset's).
    #[arg(long)]
    pub think: Option<ThinkMode>,
    /// Force the answer after this many thinking tokens.
    #[arg(long)]
    pub think_budget: Option<u32>,
    /// Send earlier turns' thinking back to the model (with --conversation); by default
    /// it is dropped, and the cost line reports the tokens that saved.
    #[arg(long)]
    pub keep_thoughts: bool,
    /// Speculative decoding: off, auto (prompt lookup, or the draft model when one is
    /// given, for greedy answers only; paused while it does not pay), lookup or draft.
    /// Greedy text is the same in every mode; a seeded sampled answer is reproducible in
    /// every mode, and the same as off in auto.
    #[arg(long)]
    pub speculative: Option<SpeculativeMode>,
    /// A smaller model with the same vocabulary that drafts tokens for --model.
    #[arg(long)]
    pub draft_model: Option<String>,
    /// When the conversation no longer fits the context: stop (an error, nothing is left
    /// out), drop-oldest (the oldest turns go; the default) or truncate-middle (the first
    /// exchange and the latest turns stay). Saved with the conversation.
    #[arg(long, value_name = "POLICY")]
    pub context_overflow: Option<ContextOverflow>,
    #[command(flatten)]
    pub sampling: crate::sampling_flags::SamplingFlags,
    /// Stop strings (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Do not save this exchange to the history.
    #[arg(long)]
    pub no_save: bool,
    /// Continue a saved conversation.
    #[arg(long)]
    pub conversation: Option<String>,
    /// One JSON event per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub placement: crate::PlacementArgs,
    /// The prompt.
    pub prompt: String,
}

impl ChatArgs {
    /// The settings of this run: `base` (a preset's, or the defaults) with every option
    /// given on the command line put over it.
    pub fn settings(&self, base: ChatSettings) -> anyhow::Result<ChatSettings> {
        let d = base.sampling;
        let mut settings = ChatSettings {
            system_prompt: self.system.clone().unwrap_or(base.system_prompt),
            sampling: SamplingParams {
                temperature: self.temp.unwrap_or(d.temperature),
                top_k: self.top_k.unwrap_or(d.top_k),
                top_p: self.top_p.unwrap_or(d.top_p),
                min_p: self.min_p.unwrap_or(d.min_p),
                repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
                seed: self.seed.or(d.seed),
                max_tokens: self.max_tokens.unwrap_or(d.max_tokens),
                stop: if self.stop.is_empty() {
                    d.stop
                } else {
                    self.stop.clone()
                },
                ..d
            },
            think: self.think.unwrap_or(base.think),
            think_budget: self.think_budget.or(base.think_budget),
            keep_thoughts: self.keep_thoughts || base.keep_thoughts,
            n_ctx: self.ctx.unwrap_or(base.n_ctx),
            threads: self.threads.or(base.threads),
            template: self.template.clone().or(base.template),
            context_overflow: self.context_overflow.unwrap_or(base.context_overflow),
            speculative: self.speculative.unwrap_or(base.speculative),
            draft_model: match &self.draft_model {
                Some(draft) => Some(crate::resolve_model(draft)?),
                None => base.draft_model,
            },
        };
        self.sampling.apply(&mut settings.sampling)?;
        Ok(settings)
    }
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let path = crate::resolve_model(&args.model)?;
    let app = Conclave::open_default().await?;
    let base = match &args.preset {
        Some(name) => app.history.get_preset(name).await?.settings,
        None => ChatSettings::default(),
    };
    let settings = args.settings(base)?;
    let model = app
        .load(
            &path,
            args.placement.apply(LoadOptions {
                n_ctx: settings.n_ctx,
                threads: settings.threads,
                draft_model: settings.draft_model.clone(),
                ..LoadOptions::default()
            }),
            |_| {},
        )
        .await?;
    let req = SendRequest {
        conversation_id: args.conversation.clone(),
        content: args.prompt.clone(),
        settings,
        no_save: args.no_save,
        ..SendRequest::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = app
        .send(&model, req, move |ev| {
            let _ = tx.send(ev);
        })
        .await?;
    let mut printer = Printer::new(args.json);
    let mut failed = None;
    while let Some(ev) = rx.recv().await {
        printer.event(&ev)?;
        if let ChatEvent::Error { code, message } = &ev {
            failed = Some(format!("{message} ({code})"));
        }
    }
    model.unload().await;
    app.history.close().await;
    if !args.no_save && !args.json && std::io::stderr().is_terminal() {
        eprintln!(
            "\x1b[2m[saved in conversation {}]\x1b[0m",
            handle.conversation_id
        );
    }
    match failed {
        Some(e) => anyhow::bail!(e),
        None => Ok(()),
    }
}

/// Prints events: JSON lines, or the answer on stdout with the thinking dimmed (on a
/// terminal) or on stderr (when stdout is piped, so scripts get only the answer).
pub struct Printer {
    json: bool,
    tty: bool,
    in_reasoning: bool,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            tty: std::io::stdout().is_terminal(),
            in_reasoning: false,
        }
    }

    pub fn event(&mut self, ev: &ChatEvent) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, ev)?;
            out.write_all(b"\n")?;
            out.flush()?;
            return Ok(());
        }
        match ev {
            ChatEvent::Reasoning { text, .. } if self.tty => {
                write!(out, "\x1b[2m{text}\x1b[0m")?;
                self.in_reasoning = true;
            }
            ChatEvent::Reasoning { text, .. } => {
                let mut err = std::io::stderr().lock();
                err.write_all(text.as_bytes())?;
                self.in_reasoning = true;
            }
            ChatEvent::Token { text, .. } => {
                if self.in_reasoning {
                    self.in_reasoning = false;
                    if self.tty {
                        out.write_all(b"\n\n")?;
                    } else {
                        std::io::stderr().lock().write_all(b"\n")?;
                    }
                }
                out.write_all(text.as_bytes())?;
            }
            ChatEvent::Done {
                usage,
                metrics,
                stop_reason,
            } => {
                out.write_all(b"\n")?;
                if std::io::stderr().is_terminal() {
                    // Earlier thoughts left out of the prompt (no --keep-thoughts).
                    let saved = match metrics.thoughts_dropped_tokens {
                        0 => String::new(),
                        n => format!(" · {n} tokens saved"),
                    };
                    let speculative = match metrics.drafted_tokens {
                        0 => String::new(),
                        d => format!(
                            " · speculative: {} of {d} drafted accepted",
                            metrics.accepted_tokens
                        ),
                    };
                    let dropped = context_note(metrics)
                        .map(|n| format!(" · {n}"))
                        .unwrap_or_default();
                    let devices = match metrics.devices.as_str() {
                        "" => String::new(),
                        d => format!(" · {d}"),
                    };
                    eprintln!(
                        "\x1b[2m[{} tokens · {:.1} t/s · TTFT {:.0} ms · thinking {} · seed {} · {}{saved}{dropped}{devices}{speculative}]\x1b[0m",
                        usage.completion_tokens,
                        metrics.gen_tps,
                        metrics.ttft_ms,
                        usage.reasoning_tokens,
                        metrics.seed,
                        stop_reason.as_str()
                    );
                }
            }
            ChatEvent::Started { .. } | ChatEvent::Error { .. } => {}
        }
        out.flush()?;
        Ok(())
    }
}

/// What the cost line says when turns were left out to fit the context.
pub fn context_note(m: &conclave_core::Metrics) -> Option<String> {
    let n = m.dropped_messages;
    if n == 0 {
        return None;
    }
    let which = match m.context_overflow {
        ContextOverflow::TruncateMiddle => "middle",
        ContextOverflow::DropOldest | ContextOverflow::Stop => "oldest",
    };
    let s = if n == 1 { "" } else { "s" };
    Some(format!("context full: dropped {n} {which} message{s}"))
}
